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

/* HDF5 attributes of an open file or dataset (hid_t obj); return 1 on success.
 * dlt_prep_str_attr writes variable-length UTF-8 string(s): a scalar if n < 0. */
int dlt_prep_str_attr(int64_t obj, const char *name, const char *const *v, int n);
int dlt_prep_i64_attr(int64_t obj, const char *name, int64_t v);

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

/* `dlprep text` (text.c): vocabulary and token shards from WordNet glosses
 * or the lines of a text file. */
typedef struct {
    const char *outdir;
    const char *corpus;        /* "wordnet" or a file */
    const char *wordnet_dir;   /* where data.noun etc. live */
    int wordpiece;             /* 0: word vocabulary */
    int vocab_size, min_count, seq_len;
    const char *layout;        /* "sentences" | "stream" */
    const char *labels;        /* "lexname" | "pos" | "none" (WordNet only) */
    double test_frac;
    int64_t shard_size, max_units;
    uint64_t seed;
} dlt_prep_text_cfg;

dlt_status dlt_prep_text(const dlt_prep_text_cfg *cfg);

/* png.c: writes rgb (h, w, 3) as an 8-bit RGB PNG. */
dlt_status dlt_prep_png_write(const char *path, int w, int h, const uint8_t *rgb);

/* preview.c: `dlprep preview` (PNG grid of augmented samples) and `dlprep
 * scan` (one timed loader epoch); each parses its own options (argv after
 * the command) and returns the exit status. */
int dlt_prep_cmd_preview(int argc, char **argv);
int dlt_prep_cmd_scan(int argc, char **argv);

#endif
