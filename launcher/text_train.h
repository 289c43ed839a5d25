/* The token-data path of the trainer, and layer freezing.
 *
 * train.c keeps one training loop for every model; where images and tokens
 * differ (opening the data, the model's input shape, the batches, the
 * per-epoch reset of carried LSTM state) it calls these functions when the
 * run's data are token shards. Batches follow the image loader's contract
 * (x (n, L) token ids as floats, y int32 targets, counted targets per batch),
 * so the loop itself only learns that a sample may count several targets. */
#ifndef DLT_TEXT_TRAIN_H
#define DLT_TEXT_TRAIN_H

#include <stdint.h>
#include <stdio.h>

#include "core/model.h"
#include "core/status.h"
#include "launcher/config.h"

typedef struct dlt_text_data dlt_text_data;

/* 1 when the config's data are token shards: data.format = tokens, or auto
 * and the first training shard holds a dataset 'tokens'. */
int dlt_text_wanted(const dlt_config *c);

/* Opens data.train (and data.test) as token shards with loaders for this
 * rank; errors name the file and the config key. */
dlt_status dlt_text_open(const dlt_config *c, int rank, int world, dlt_text_data **out);
void dlt_text_free(dlt_text_data *d);

/* Model set-up: input (L) per sample; classes = vocabulary size (lm, mlm)
 * or the shards' class count (classify). */
dlt_shape dlt_text_input(const dlt_text_data *d);
int dlt_text_classes(const dlt_text_data *d);
int dlt_text_max_local(const dlt_text_data *d);
int64_t dlt_text_sample_numel(const dlt_text_data *d);
int dlt_text_label_numel(const dlt_text_data *d);
int dlt_text_has_test(const dlt_text_data *d);

/* test: 0 the training set, 1 the evaluation set. */
int64_t dlt_text_steps(const dlt_text_data *d, int test);
/* Starts an epoch and clears the model's carried state (stateful LSTMs). */
dlt_status dlt_text_start_epoch(dlt_text_data *d, int test, int64_t epoch, dlt_model *m);
/* Skips k batches of the current epoch (resume). */
void dlt_text_skip(dlt_text_data *d, int test, int64_t k);
/* As dlt_loader_next; *count = this rank's counted targets. */
dlt_status dlt_text_next(dlt_text_data *d, int test, float *x, int32_t *y, int *n, int64_t *sample0,
                         int *global_n, int64_t *count);

/* Rank 0, after an evaluation: a line with perplexity (lm, mlm) and the
 * baselines computed from the training data (unigram perplexity or entropy,
 * most-frequent-token or majority-class accuracy). */
void dlt_text_report_eval(const dlt_text_data *d, double loss, double acc, FILE *f);

/* ---- freezing (freeze.layers) ---- */

typedef struct dlt_freeze dlt_freeze;

/* Resolves freeze.layers against the model's layer names; *out is NULL when
 * nothing is frozen. A name that matches no layer is an error naming it. */
dlt_status dlt_freeze_init(const dlt_config *c, dlt_model *m, dlt_freeze **out);
/* Around every optimizer step: before() keeps the frozen parameters' values
 * (taken at the first call, so after init_from or a resume), after()
 * restores them, so no update, weight decay or momentum moves them. */
dlt_status dlt_freeze_before(dlt_freeze *f);
dlt_status dlt_freeze_after(dlt_freeze *f);
void dlt_freeze_free(dlt_freeze *f);

#endif
