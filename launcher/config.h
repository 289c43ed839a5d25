/* The run configuration: YAML file + key=value overrides.
 *
 * One table (config.c) lists every known key with its type, default, bounds
 * and help text (redis style); `dltrain config --help` prints it. Keys are
 * dotted paths ("optimizer.lr"). The model's layers are a YAML sequence under
 * model.layers, each a mapping with `type`, optional `name` and `inputs`,
 * and the keys that layer type accepts (its dlt_key_spec table).
 *
 * Errors are one line naming the file:line and the key: unknown keys (with
 * the nearest known key suggested), wrong types, out-of-range values,
 * missing required keys. */
#ifndef DLT_CONFIG_H
#define DLT_CONFIG_H

#include <stdint.h>
#include <stdio.h>

#include "core/layer.h"
#include "core/status.h"
#include "data/augment.h"

#define DLT_CFG_MAX_LAYERS 256
#define DLT_PATH_LEN 512

typedef struct {
    char path[DLT_PATH_LEN];       /* the YAML file */
    char name[128];                /* "name", default: file name without .yaml */

    /* data */
    char train_data[DLT_PATH_LEN]; /* data.train: glob of shards */
    char test_data[DLT_PATH_LEN];  /* data.test: glob; empty: no evaluation */
    float mean[4], std[4];         /* data.mean / data.std, per channel */
    int n_mean, n_std;
    int64_t shuffle_block;         /* data.shuffle_block: locality shuffle; 0: full shuffle */
    char last_batch[16];           /* data.last_batch: drop | pad | partial */
    int prefetch, data_threads;    /* data.prefetch (batches ahead; 0: none), data.threads */
    dlt_augment_cfg augment;       /* data.augment.*: training-set augmentation (data/augment.h) */
    float aug_scale[2], aug_ratio[2]; /* data.augment.resized_crop, data.augment.ratio */
    int n_aug_scale, n_aug_ratio;

    /* model */
    dlt_layer_spec layers[DLT_CFG_MAX_LAYERS];
    int n_layers;
    char loss[64];                 /* model.loss */
    int input[4];                  /* model.input: per-sample shape, e.g. [1, 28, 28]; */
    int n_input;                   /*   empty (0) = taken from the training data */

    /* train */
    int epochs;
    int batch_size;                /* global batch */
    int64_t max_steps;             /* 0: no limit */
    uint64_t seed;
    char device[16];               /* auto | cpu | cuda */
    char precision[8];             /* train.precision: auto | fp32 | bf16 | fp16 */
    int threads;                   /* 0: OpenMP/OpenBLAS default */
    int accum_steps;               /* train.accum_steps: micro-batches per optimizer step */

    /* optimizer */
    char optimizer[32];
    float lr, momentum, weight_decay, beta1, beta2, eps, alpha, clip_norm;
    int nesterov;

    /* schedule */
    char schedule[32];
    float lr_min, gamma;
    int64_t step_size, warmup_steps;

    /* evaluation and early stopping */
    int eval_every_epochs;
    char early_metric[32];         /* "" (off), "loss", "accuracy" */
    int early_patience;
    float early_min_delta;

    /* logging */
    int log_every;                 /* steps */
    char log_progress[8];          /* log.progress: auto | bar | plain */
    char run_dir[DLT_PATH_LEN];    /* default runs/<name>-<timestamp> */

    /* comm: gradient buckets (launcher/dist.c) */
    float bucket_mb;               /* comm.bucket_mb: MiB per bucket; 0: one bucket */
    char comm_trace[DLT_PATH_LEN]; /* comm.trace: JSON-lines overlap trace of rank 0; "": off */
    float comm_timeout_s;          /* comm.timeout_s: deadline of one collective wait */
    int zero;                      /* comm.zero: 1 = ZeRO-1, optimizer state sharded over ranks */

    /* checkpoints, numerical safety, fine-tuning (launcher/checkpoint.h, numerics.h) */
    char ckpt_dir[DLT_PATH_LEN];   /* checkpoint.dir; "": <run_dir>/checkpoints */
    int64_t ckpt_every;            /* checkpoint.every_steps; 0: only at the end and on signals */
    int ckpt_keep;                 /* checkpoint.keep: newest step checkpoints kept */
    char ckpt_best[16];            /* checkpoint.best_metric: "" | loss | accuracy */
    char resume[DLT_PATH_LEN];     /* checkpoint.resume: "" | auto | PATH */
    char init_from[DLT_PATH_LEN];  /* model.init_from: checkpoint to take matching layers from */
    char nonfinite[8];             /* train.nonfinite: stop | skip */
    int max_skips;                 /* train.max_skips: skipped steps in a row that stop the run */

    /* token models, fine-tuning, text prediction (launcher/text_train.c, predict_text.c) */
    char data_format[16];          /* data.format: auto | images | tokens */
    char text_task[16];            /* data.task: lm | mlm | classify */
    float mask_prob;               /* data.mask_prob */
    char freeze[512];              /* freeze.layers: "name,prefix*,..." */
    char predict_prompt[1024];     /* predict.prompt */
    int predict_tokens;            /* predict.tokens */
    float predict_temperature;     /* predict.temperature; 0: greedy */
} dlt_config;

/* Loads path, applies overrides ("key=value", e.g. "optimizer.lr=0.1";
 * "model.layers.3.units=64" addresses a layer key), validates everything.
 * overrides may be NULL when n_over == 0. */
dlt_status dlt_config_load(const char *path, char *const *overrides, int n_over, dlt_config *cfg);

/* Writes the resolved configuration as YAML that dlt_config_load reads back. */
void dlt_config_write(const dlt_config *cfg, FILE *f);

/* Prints the key table (name, type, default, help) and the layer types. */
void dlt_config_help(FILE *f);

#endif
