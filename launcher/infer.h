/* Inference set-up shared by `dltrain eval` and `dltrain predict`: a config,
 * a backend, and the config's model with a checkpoint's weights. */
#ifndef DLT_INFER_H
#define DLT_INFER_H

#include "comm/comm.h"
#include "core/model.h"
#include "launcher/config.h"

typedef struct {
    dlt_config cfg;
    dlt_comm_t comm;
    int rank, world;
    dlt_backend *be;
    dlt_model *model;
    int input[3];          /* per-sample C, H, W */
    int classes;           /* logits per sample */
    int max_batch;
    float mean[4], std[4]; /* per channel, for uint8 pixels (as the loader) */
    float *x_dev;          /* (max_batch, C, H, W) backend memory */
    int32_t *y_dev;        /* (max_batch) */
    float *logits;         /* (max_batch, classes) host */
} dlt_infer;

/* Takes the command's "name=VALUE" options listed in names (e.g. "ckpt",
 * "input") out of argv[1..argc) into vals[i] (NULL if absent); the rest are
 * config overrides. Returns the remaining count (argv[0], CONFIG, kept). */
int dlt_infer_options(int argc, char **argv, const char *const *names, const char **vals, int n);

/* Loads the config (with overrides), opens the device, builds the model for
 * batches of max_batch and loads ckpt (strict: every parameter by name and
 * shape, or a one-line error naming the first that differs). The input
 * shape and class count come from the checkpoint, else model.input. */
dlt_status dlt_infer_open(dlt_infer *r, dlt_comm_t comm, const char *config, char **overrides, int n_over,
                          const char *ckpt, int max_batch);
void dlt_infer_close(dlt_infer *r);

/* Forward of n <= max_batch samples x (n, C, H, W) host floats, already
 * normalised; labels (n) host or NULL. Fills r->logits; *loss_sum and
 * *correct (may be NULL) get the sums over the n samples when labels given. */
dlt_status dlt_infer_run(dlt_infer *r, const float *x, const int32_t *labels, int n, double *loss_sum,
                         double *correct);

/* Softmax of r->logits row i into p (classes). */
void dlt_infer_softmax(const dlt_infer *r, int i, float *p);

#endif
