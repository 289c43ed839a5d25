/* dltrain: the command-line entry point. Dispatches sub-commands; each
 * returns the process exit code. This is the only place (with the commands
 * it calls) allowed to end the process. */
#include <stdio.h>
#include <string.h>

#include "launcher/commands.h"
#include "launcher/config.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: dltrain <command> [args]\n"
            "\n"
            "commands:\n"
            "  train CONFIG [key=value ...]   train a model (run under mpirun/srun for several ranks)\n"
            "  config --help                  list every config key and layer type\n"
            "\n"
            "example: mpirun -np 2 dltrain train configs/cnn_fashion.yaml optimizer.lr=0.05\n");
}

int main(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "--version")) {
        printf("dltrain %s\n", DLT_VERSION);
        return 0;
    }
    if (!strcmp(argv[1], "train")) return dlt_cmd_train(argc - 2, argv + 2);
    if (!strcmp(argv[1], "config")) {
        dlt_config_help(stdout);
        return 0;
    }
    fprintf(stderr, "dltrain: unknown command '%s' (try: dltrain --help)\n", argv[1]);
    return 2;
}
