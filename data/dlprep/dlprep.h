/* dlprep internals: the commands (one file each) and the shard writer they
 * share. Functions return dlt_status with the one-line cause in
 * dlt_last_error(); commands print one summary line per split written, and
 * only main.c reports errors and exits. */
#ifndef DLT_DLPREP_H
#define DLT_DLPREP_H

#include <stdint.h>

#include "core/status.h"

/* Options common to every command. */
typedef struct {
    const char *outdir;
    int64_t shard_size;   /* samples per shard */
} dlt_prep_out;

/* One split (e.g. "train") of an image data set, written as shards
 * OUTDIR/<split>-00000.h5, ... Shards are produced one at a time: fill()
 * writes samples [first, first+n) of the split into images (n, C, H, W) and
 * labels (n), so a generator never needs the whole split in memory. */
typedef struct {
    const char *split;
    int64_t n;
    int c, h, w;
    const char *const *class_names;   /* (n_classes) */
    int n_classes;
    const char *source;                /* provenance text stored as attribute `source` */
    dlt_status (*fill)(void *ctx, int64_t first, int64_t n, uint8_t *images, int64_t *labels);
    void *ctx;
} dlt_prep_split;

/* Creates out->outdir if needed, writes every shard of s (each to a
 * temporary name, renamed when complete) and removes stale shards of the
 * same split left by an earlier run with more shards. *n_shards gets the
 * number written. */
dlt_status dlt_prep_write_split(const dlt_prep_out *out, const dlt_prep_split *s, int *n_shards);

/* `dlprep fashion-mnist`: reads the four IDX .gz files of srcdir. */
dlt_status dlt_prep_fashion_mnist(const dlt_prep_out *out, const char *srcdir);

typedef struct {
    int64_t n, test_n;
    int c, h, w;
    int classes;
    uint64_t seed;
} dlt_prep_synth_cfg;

/* `dlprep synthetic`: class-dependent patterns plus noise, train and test. */
dlt_status dlt_prep_synthetic(const dlt_prep_out *out, const dlt_prep_synth_cfg *cfg);

#endif
