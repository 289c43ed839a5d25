/* The model: a static DAG of layers built once from a list of specs.
 *
 * Building resolves inputs by name (default: the previous layer), expands
 * macro layers (resblock), runs every layer's setup() in order, then
 * allocates, once and for all:
 *   - the parameter arena and the gradient arena, same layout, parameters
 *     laid out in *backward* order (last layer first) so that a gradient
 *     bucket is a contiguous slice that is complete early in backward;
 *   - the state arena (running statistics);
 *   - activations and their gradients for the planned batch, and scratch.
 * Nothing is allocated by forward/backward. The model's last layer is its loss
 * layer (is_loss), appended from the config's loss name. */
#ifndef DLT_MODEL_H
#define DLT_MODEL_H

#include <stdio.h>

#include "core/backend.h"
#include "core/layer.h"

typedef struct dlt_model dlt_model;

typedef struct {
    const dlt_layer_spec *layers;   /* the config's layers, loss not included */
    int n_layers;
    const char *loss;               /* "softmax_cross_entropy" or "mse" */
    dlt_shape input;                /* one sample, ndim >= 1, without the batch: e.g. {3, {1,28,28}} */
    int n_classes;                  /* label range, for one-hot targets of mse */
    int max_batch;                  /* largest local batch */
    uint64_t seed;                  /* parameter initialisation */
} dlt_model_cfg;

dlt_status dlt_model_build(const dlt_model_cfg *cfg, dlt_backend *be, dlt_model **out);
void dlt_model_free(dlt_model *m);

/* Per-step results, backend memory of n floats each (valid until next forward). */
typedef struct {
    const float *loss;       /* (n) per-sample loss */
    const float *correct;    /* (n) 1/0 per sample; NULL for regression losses; for
                                per-token losses the number of correct counted tokens */
    /* (n) counted tokens per sample for per-token losses (softmax
     * cross-entropy on (n, len, k) logits: labels < 0 are not counted, loss
     * is the sample's sum over counted tokens); NULL otherwise, meaning 1
     * per sample. */
    const float *count;
} dlt_model_out;

/* x: (n, input...) backend memory, n <= max_batch; ctx->labels set. */
dlt_status dlt_model_forward(dlt_model *m, const float *x, int n, const dlt_step_ctx *ctx,
                             dlt_model_out *out);
/* Backpropagates d(sum of per-sample losses * loss_scale) into the gradient
 * arena, which it zeroes first. loss_scale is 1 / global batch for a mean. */
dlt_status dlt_model_backward(dlt_model *m, int n, const dlt_step_ctx *ctx, float loss_scale);

/* Clears state carried from batch to batch (stateful LSTM layers' final h
 * and c); the trainer calls it at the start of every epoch and evaluation. */
void dlt_model_reset_state(dlt_model *m);

/* As dlt_model_backward, but adds this batch's gradient to what the arena
 * already holds (gradient accumulation over micro-batches): the gradient
 * arena is not zeroed first. */
dlt_status dlt_model_backward_accumulate(dlt_model *m, int n, const dlt_step_ctx *ctx,
                                         float loss_scale);

/* Grad-ready hook: called by both backward functions after each layer's
 * backward (layer: its index, counting down from the last) with n_ready, the
 * number of leading gradient-arena floats that are now final (queued, on an
 * asynchronous backend). n_ready never decreases within one backward and is
 * the whole arena after layer 0. A status other than DLT_OK stops backward
 * and is returned. fn NULL removes the hook. */
typedef dlt_status (*dlt_grad_ready_fn)(void *user, int layer, size_t n_ready);
void dlt_model_set_grad_hook(dlt_model *m, dlt_grad_ready_fn fn, void *user);

/* Arenas: parameters, gradients (same layout), persistent state. */
float *dlt_model_params(dlt_model *m, size_t *n);
float *dlt_model_grads(dlt_model *m, size_t *n);
float *dlt_model_state(dlt_model *m, size_t *n);

/* Parameters in arena order, for checkpoints, tests and export. */
int dlt_model_n_params(const dlt_model *m);
const dlt_param *dlt_model_param(const dlt_model *m, int i);
int dlt_model_n_layers(const dlt_model *m);
dlt_layer *dlt_model_layer(dlt_model *m, int i);
/* Output of the last non-loss layer (logits), (n, k) backend memory. */
const dlt_tensor *dlt_model_logits(const dlt_model *m);

/* Forward FLOPs per sample (backward counted as 2x forward by callers). */
double dlt_model_flops(const dlt_model *m);

/* Prints one line per layer (name, type, output shape, parameters) and the
 * memory of every arena in MiB. */
void dlt_model_describe(const dlt_model *m, FILE *f);

/* A single layer with arenas of its own, for tests and tools: inputs of the
 * given shapes (batch included) are allocated, as are their gradients, the
 * output, parameters (initialised from seed) and buffers. Layer inputs
 * l->x[i].data may be filled through the backend's upload. */
dlt_status dlt_layer_create_standalone(const dlt_layer_spec *spec, const dlt_shape *in, int n_in,
                                       dlt_backend *be, uint64_t seed, dlt_layer **out);
void dlt_layer_free_standalone(dlt_layer *l);

/* Zeroes the gradients of a standalone layer (inputs' and parameters'). */
void dlt_layer_zero_grads(dlt_layer *l);

#endif
