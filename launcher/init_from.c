/* `dltrain init-from CONFIG CKPT [key=value ...]`: fine-tuning.
 *
 * Trains CONFIG starting from the layers CKPT (a checkpoint of any config)
 * shares with it: parameters of the same name and shape are loaded, the
 * others keep their fresh initialisation, and a per-parameter summary is
 * printed first. It is `dltrain train CONFIG model.init_from=CKPT`; the
 * loading itself is dlt_ckpt_load_weights (checkpoint.c), called by the
 * trainer's start-up (ckpt_run.c) so a config can also name model.init_from
 * itself. A resumed run (checkpoint.resume) ignores init_from: its own
 * checkpoint already holds the fine-tuned weights. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "launcher/commands.h"
#include "launcher/config.h"

int dlt_cmd_init_from(int argc, char **argv)
{
    if (argc < 2 || strchr(argv[1], '=')) {
        fprintf(stderr, "dltrain: error: usage: dltrain init-from CONFIG CHECKPOINT [key=value ...]\n");
        return 2;
    }
    static char opt[DLT_PATH_LEN + 32];
    if ((size_t)snprintf(opt, sizeof opt, "model.init_from=%s", argv[1]) >= sizeof opt) {
        fprintf(stderr, "dltrain: error: %s: path too long\n", argv[1]);
        return 2;
    }
    char **args = malloc((size_t)(argc + 1) * sizeof *args);
    if (!args) return 1;
    args[0] = argv[0];
    args[1] = opt;
    for (int i = 2; i < argc; i++) args[i] = argv[i];
    args[argc] = NULL;
    int rc = dlt_cmd_train(argc, args);
    free(args);
    return rc;
}
