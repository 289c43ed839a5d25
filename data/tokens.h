/* Token data sets in HDF5 shards, and their loader.
 *
 * Format (DESIGN.md): each shard holds dataset `tokens` int32 (N, L) with
 * integer attribute `vocab_size` (on the dataset or the file); optional
 * dataset `labels` int64 (N) with string-list attribute `class_names` on the
 * file (a sequence classification task); file attributes `format` =
 * "dltrain-tokens", `version` = 1, `layout` = "stream" (rows cut from one
 * running text: row i+1 continues row i) or "sentences" (one text per row,
 * [CLS] ... [SEP] then [PAD]), and `vocab` = the vocabulary file's name,
 * relative to the shard's folder. Files without the optional attributes
 * (e.g. written with h5py) are accepted.
 *
 * The loader has the image loader's contract (data/data.h): a global batch
 * of B rows is cut so rank r of W takes rows [r*B/W, (r+1)*B/W), and the
 * order depends only on (seed, epoch) (dlt_sampler_permutation), never on W.
 * It applies the task's online transform: next-token targets (lm), BERT
 * masking (mlm) or the sequence label (classify). */
#ifndef DLT_TOKENS_H
#define DLT_TOKENS_H

#include <stdint.h>

#include "core/status.h"

typedef struct dlt_tokens *dlt_tokens_t;

/* Opens every shard matching pattern (sorted by name). Errors name the file
 * and dataset: no match, unreadable, no `tokens`, wrong dtype or rank,
 * shards of different L, ids outside [0, vocab_size), labels on some shards
 * only or of the wrong length. */
dlt_status dlt_tokens_open(const char *pattern, dlt_tokens_t *out);
void dlt_tokens_close(dlt_tokens_t ds);

int64_t dlt_tokens_size(dlt_tokens_t ds);
int dlt_tokens_seq_len(dlt_tokens_t ds);
int dlt_tokens_vocab_size(dlt_tokens_t ds);
/* Number of classes (0 without `labels`) and their names (NULL if none). */
int dlt_tokens_classes(dlt_tokens_t ds);
const char *dlt_tokens_class_name(dlt_tokens_t ds, int i);
/* 1 when the layout attribute says "stream". */
int dlt_tokens_is_stream(dlt_tokens_t ds);
/* First shard's path; the vocabulary file named by its `vocab` attribute
 * (resolved against the shard's folder), or "" if none. */
const char *dlt_tokens_path(dlt_tokens_t ds);
const char *dlt_tokens_vocab_path(dlt_tokens_t ds);
/* Row i (L ids), valid while ds is open. */
const int32_t *dlt_tokens_row(dlt_tokens_t ds, int64_t i);
/* Label of row i; -1 without labels. */
int32_t dlt_tokens_label(dlt_tokens_t ds, int64_t i);

typedef enum { DLT_TEXT_TASK_LM, DLT_TEXT_TASK_MLM, DLT_TEXT_TASK_CLASSIFY } dlt_text_task;

/* shuffle: a seeded permutation per epoch; sequential: identity order;
 * streams (language models with carried state): row b of step s is sample
 * b*steps + s, so each row of the batch reads a contiguous part of the text
 * across steps; the remainder of N/B is dropped. */
typedef enum { DLT_TOKENS_SHUFFLE, DLT_TOKENS_SEQUENTIAL, DLT_TOKENS_STREAMS } dlt_tokens_order;

typedef struct {
    int global_batch;
    int rank, world;
    uint64_t seed;
    dlt_tokens_order order;
    int drop_last;            /* shuffle/sequential: skip the last partial batch */
    dlt_text_task task;
    float mask_prob;          /* mlm */
    int64_t mask_epoch;       /* < 0: mask with the loader's epoch; else this fixed epoch (evaluation) */
} dlt_tokens_loader_cfg;

typedef struct dlt_tokens_loader *dlt_tokens_loader_t;

dlt_status dlt_tokens_loader_init(dlt_tokens_t ds, const dlt_tokens_loader_cfg *cfg, dlt_tokens_loader_t *out);
void dlt_tokens_loader_free(dlt_tokens_loader_t l);

int64_t dlt_tokens_loader_steps(dlt_tokens_loader_t l);
int dlt_tokens_loader_max_local(dlt_tokens_loader_t l);
/* Labels per sample: L (lm, mlm) or 1 (classify). */
int dlt_tokens_loader_label_numel(dlt_tokens_loader_t l);
dlt_status dlt_tokens_loader_start_epoch(dlt_tokens_loader_t l, int64_t epoch);

/* Skips the next k global batches of the epoch (resuming mid-epoch). */
void dlt_tokens_loader_skip(dlt_tokens_loader_t l, int64_t k);

/* Next batch of this rank: x (n, L) token ids as floats, y (n, label_numel)
 * int32 targets (< 0: ignored), *count = targets >= 0 in this rank's rows.
 * Other outputs as dlt_loader_next; *global_n == 0 at the end of the epoch. */
dlt_status dlt_tokens_loader_next(dlt_tokens_loader_t l, float *x, int32_t *y, int *n_local, int64_t *sample0,
                                  int *global_n, int64_t *count);

#endif
