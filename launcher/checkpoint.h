/* Checkpoints: the whole training state in one HDF5 file, plus a manifest.
 *
 * File (h5py: h5py.File(path)), format "dltrain-checkpoint" version 1:
 *   /<layer>.<param>          float32, the parameter's shape ("fc1.weight")
 *   /<layer>.<state>          float32 (len), persistent buffers ("bn1.running_mean")
 *   /optimizer/s1/<param>     float32, first optimizer state (momentum, Adam m), if used
 *   /optimizer/s2/<param>     float32, second state (Adam v, ...), if used
 *   /config                   string, the resolved YAML of the run
 *   root attributes: format, version, step, epoch, epoch_step, evaluated,
 *     opt_step, optimizer, seed, world, global_batch, loss_scale, input (C,H,W),
 *     classes, best, bad_epochs, best_ckpt, skips.
 * Random streams are pure functions of (seed, epoch, step, sample index), so
 * seed and step are the whole RNG state; the sampler position is
 * (epoch, epoch_step).
 *
 * Completeness: a checkpoint counts only once its manifest
 * "<name>.manifest" (JSON: format, step, world, files with sizes and CRC32)
 * exists and matches the bytes on disk. Both files are written to a
 * temporary name, fsynced, renamed, and the directory fsynced; the manifest
 * goes last. Deleting goes manifest first. So a crash at any moment leaves
 * either a complete checkpoint or one that resume skips. */
#ifndef DLT_CHECKPOINT_H
#define DLT_CHECKPOINT_H

#include <stdint.h>

#include "core/model.h"
#include "core/optim.h"
#include "comm/comm.h"
#include "comm/zero.h"
#include "data/data.h"
#include "launcher/config.h"

#define DLT_CKPT_FORMAT "dltrain-checkpoint"
#define DLT_CKPT_VERSION 1

/* Where the training loop stands; everything a resumed run needs besides
 * the arenas. */
typedef struct {
    int64_t step;        /* loop steps done, skipped ones included */
    int64_t epoch;       /* 0-based epoch of the last step */
    int64_t epoch_step;  /* steps of that epoch done (== steps/epoch at its end) */
    int evaluated;       /* 1: the end-of-epoch evaluation of `epoch` is done */
    double best;         /* early stopping: best eval metric, NAN: none yet */
    int bad_epochs;      /* early stopping: evaluations without improvement */
    double best_ckpt;    /* checkpoint.best_metric: best value so far, NAN: none */
    int skips;           /* non-finite steps skipped in a row */
} dlt_train_pos;

/* What a checkpoint is made of. opt may be NULL (weights-only files).
 * The file always holds the optimizer state in the full arena layout, so
 * any number of ranks, with or without ZeRO, can resume it: an optimizer
 * with a shard (ZeRO-1) loads its segments of it, and is written through
 * the collective dlt_ckpt_run_* calls, which gather the shards into
 * opt_full on rank 0 first. */
typedef struct {
    dlt_model *model;
    dlt_optim *opt;
    dlt_zero *zero;            /* the plan of opt->shard (ZeRO-1), else NULL */
    const float *opt_full[2];  /* host, full layout: s1/s2 to write instead of opt's (set by ckpt_run.c) */
    const dlt_config *cfg;
    int world;
    int input[3];        /* per-sample C, H, W */
    int classes;
} dlt_ckpt_src;

/* Writes path (an .h5) through path.tmp, fsync and rename, then its
 * manifest <path without .h5>.manifest the same way. On failure nothing new
 * is left behind (no .tmp, no manifest) and existing files are untouched.
 * A sharded optimizer needs opt_full (else DLT_ERR_INVALID). */
dlt_status dlt_ckpt_save(const dlt_ckpt_src *src, const dlt_train_pos *pos, const char *path);

/* Restores parameters, state buffers, optimizer state and *pos from path.
 * Refuses, naming the field and both values, a checkpoint of another format
 * version, another model (parameter names, shapes), another optimizer, or
 * another global batch; a different world size is fine. */
dlt_status dlt_ckpt_load(const char *path, const dlt_ckpt_src *dst, dlt_train_pos *pos);

/* Loads only parameters and state buffers (eval, predict). strict: every
 * model parameter must be present with its shape. Not strict (init-from):
 * matching names and shapes are loaded, the rest keep their initial values;
 * *loaded / *kept count parameters, and a one-line-per-parameter summary is
 * written to summary (may be NULL). */
dlt_status dlt_ckpt_load_weights(const char *path, dlt_model *m, int strict, int *loaded, int *kept,
                                 FILE *summary);

/* Reads the per-sample input shape and class count stored in a checkpoint;
 * *found = 0 when the file predates them. */
dlt_status dlt_ckpt_read_meta(const char *path, int input[3], int *classes, int *found);

/* Checks the manifest of checkpoint h5_path (its sizes and CRC32). */
dlt_status dlt_ckpt_verify(const char *h5_path);

/* The newest complete checkpoint in dir (by step); corrupt or incomplete
 * ones are skipped with a warning line on stderr when warn is set.
 * *found = 0 and DLT_OK when there is none. */
dlt_status dlt_ckpt_find_latest(const char *dir, int warn, char *path, size_t len, int *found);

/* Deletes all but the newest keep step checkpoints of dir ("best" is kept). */
dlt_status dlt_ckpt_prune(const char *dir, int keep);

/* The .h5 alone, written to tmp with no rename or manifest (checkpoint.c;
 * dlt_ckpt_save in ckpt_files.c wraps it). */
dlt_status dlt_ckpt_write_h5(const dlt_ckpt_src *src, const dlt_train_pos *pos, const char *tmp);

/* CRC-32 (zlib) of a file's bytes and its size. */
dlt_status dlt_file_crc32(const char *path, uint32_t *crc, int64_t *size);

/* ---- a training run's checkpoint policy (ckpt_run.c) ---- */

typedef struct {
    dlt_ckpt_src src;
    dlt_comm_t comm;
    int rank;
    char dir[DLT_PATH_LEN + 16];   /* checkpoint.dir or <run_dir>/checkpoints */
    char resumed_from[DLT_PATH_LEN + 64];  /* "" for a fresh run */
} dlt_ckpt_run;

/* Resolves the checkpoint directory, then either resumes (checkpoint.resume:
 * "auto" = newest complete checkpoint of this run's directory, or of the
 * newest runs/<name>-* when run_dir was left to its default; a PATH = that
 * file, or the newest in that directory) filling *pos, or, for a fresh run,
 * loads model.init_from. Every rank reads the files itself; rank 0 prints
 * what it did. Errors name the file and the field. */
dlt_status dlt_ckpt_run_start(dlt_ckpt_run *r, const dlt_ckpt_src *src, dlt_comm_t comm, dlt_train_pos *pos);

/* Collective: rank 0 writes checkpoint `name` ("ckpt-<step>" when NULL) of
 * the run dir, then prunes to checkpoint.keep; every rank returns rank 0's
 * outcome. *path (may be NULL) receives the file written. */
dlt_status dlt_ckpt_run_save(dlt_ckpt_run *r, const dlt_train_pos *pos, const char *name, char *path,
                             size_t len);

/* Collective: rank 0 writes the checkpoint `file` (any path, no pruning);
 * every rank returns rank 0's outcome. The end-of-run model.h5. */
dlt_status dlt_ckpt_run_save_file(dlt_ckpt_run *r, const dlt_train_pos *pos, const char *file);

/* After each step: saves when checkpoint.every_steps says so. Collective
 * (every rank calls it at the same step). */
dlt_status dlt_ckpt_run_step(dlt_ckpt_run *r, const dlt_train_pos *pos);

/* After an evaluation: saves "best" when checkpoint.best_metric improved
 * (updates pos->best_ckpt). Collective. */
dlt_status dlt_ckpt_run_eval(dlt_ckpt_run *r, dlt_train_pos *pos, double loss, double accuracy);

/* Moves a loader that just started its epoch past k batches (the resumed
 * position), reading them into x (max_local, C, H, W) and y (max_local)
 * scratch. Replace by data's dlt_loader_seek once it exists. */
dlt_status dlt_loader_skip(dlt_loader_t l, int64_t k, float *x, int32_t *y);

/* For a resumed run: drops the records of metrics.jsonl at path that are
 * past step (the interrupted run went further than its last checkpoint). */
dlt_status dlt_jsonl_truncate(const char *path, int64_t step);

#endif
