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
            "        [--dry-run] [--resume auto|PATH]  check and report only / continue from a checkpoint\n"
            "  eval CONFIG ckpt=PATH [data=GLOB] [out=F.json]  loss, accuracy, confusion matrix\n"
            "  predict CONFIG ckpt=PATH input=F.h5|F.npy|F.pgm [top=K]  class and probabilities\n"
            "  predict CONFIG ckpt=PATH predict.prompt=TEXT   token models: continue text (lm), fill [MASK] (mlm)\n"
            "  init-from CONFIG CKPT [key=value ...]  fine-tune: train from CKPT's matching layers\n"
            "  config --help                  list every config key and layer type\n"
            "  export CONFIG ckpt=W.h5 out=M.onnx [check=C.h5]   the model as ONNX (opset 13)\n"
            "  plot RUN_DIR [OUT.png]         loss/accuracy curves of a run (matplotlib)\n"
            "  doctor [--mib N] [--timeout S]  check MPI, GPUs, libraries and allreduce bandwidth\n"
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
    if (!strcmp(argv[1], "eval")) return dlt_cmd_eval(argc - 2, argv + 2);
    if (!strcmp(argv[1], "predict"))
        return dlt_predict_is_text(argc - 2, argv + 2) ? dlt_cmd_predict_text(argc - 2, argv + 2)
                                                      : dlt_cmd_predict(argc - 2, argv + 2);
    if (!strcmp(argv[1], "init-from")) return dlt_cmd_init_from(argc - 2, argv + 2);
    if (!strcmp(argv[1], "export")) return dlt_cmd_export(argc - 2, argv + 2);
    if (!strcmp(argv[1], "plot")) return dlt_cmd_plot(argc - 2, argv + 2);
    if (!strcmp(argv[1], "doctor")) return dlt_cmd_doctor(argc - 2, argv + 2);
    if (!strcmp(argv[1], "config")) {
        dlt_config_help(stdout);
        return 0;
    }
    fprintf(stderr, "dltrain: unknown command '%s' (try: dltrain --help)\n", argv[1]);
    return 2;
}
