/* Layers: a constant table of functions plus a small state struct.
 *
 * Life of a layer (driven by core/model.c):
 *  1. setup(): reads its spec (already validated against ops->keys by the
 *     config loader), checks input shapes, computes its output shape, and
 *     declares what memory it needs: parameters (dlt_layer_add_param), state
 *     that persists across steps such as running statistics
 *     (dlt_layer_add_state), per-step buffers sized for the largest batch
 *     (dlt_layer_add_buffer), and shared scratch (l->workspace_bytes).
 *     setup() allocates nothing itself except its private struct l->priv.
 *  2. The model allocates all arenas once and points every declared float*
 *     into them; then init() fills parameters from a deterministic rng.
 *  3. forward()/backward() per step, for n <= the planned batch. backward()
 *     ACCUMULATES into l->dx[i] and parameter gradients (see backend.h);
 *     the model zeroes each l->dx[i] (its producer's dy) just before the
 *     first of its consumers' backward runs (ops->zero_dy).
 *
 * Shapes include the batch dimension d[0] (the planned maximum). */
#ifndef DLT_LAYER_H
#define DLT_LAYER_H

#include <stdio.h>

#include "core/backend.h"
#include "core/rng.h"
#include "core/tensor.h"

#define DLT_MAX_INPUTS 4
#define DLT_MAX_PARAMS 16   /* a transformer block has 12 */
#define DLT_MAX_BUFFERS 8
#define DLT_MAX_KV 16
#define DLT_NAME_LEN 64

/* ---- layer specs: what the config says about a layer ---- */

typedef enum { DLT_KEY_INT, DLT_KEY_FLOAT, DLT_KEY_BOOL, DLT_KEY_STR } dlt_key_type;

/* One key a layer type accepts. def == NULL means required. */
typedef struct {
    const char *name;
    dlt_key_type type;
    const char *def;
    const char *help;
} dlt_key_spec;

typedef struct {
    char key[32];
    char val[64];
    int line;                           /* config line of this key, 0 if none */
} dlt_kv;

typedef struct {
    char type[32];
    char name[DLT_NAME_LEN];            /* unique; defaults to "<type><index>" */
    char inputs[DLT_MAX_INPUTS][DLT_NAME_LEN]; /* empty: the previous layer */
    int n_inputs;
    dlt_kv kv[DLT_MAX_KV];
    int n_kv;
    const char *file;                   /* config file and line, for messages */
    int line;
} dlt_layer_spec;

/* Typed getters: the value given in the spec, else the key's default from the
 * layer type's key table. Keys are validated when the config is loaded, so
 * these cannot fail on well-formed specs. */
long dlt_spec_int(const dlt_layer_spec *s, const dlt_key_spec *keys, const char *key);
double dlt_spec_float(const dlt_layer_spec *s, const dlt_key_spec *keys, const char *key);
const char *dlt_spec_str(const dlt_layer_spec *s, const dlt_key_spec *keys, const char *key);

/* ---- layers ---- */

typedef struct dlt_layer dlt_layer;

typedef enum { DLT_INIT_ZERO, DLT_INIT_ONE, DLT_INIT_UNIFORM_FAN_IN } dlt_init;

typedef struct {
    char name[DLT_NAME_LEN];   /* "<layer>.<param>", e.g. "conv1.weight" */
    dlt_shape shape;
    dlt_init init;
    int64_t fan_in;            /* UNIFORM_FAN_IN: U(-1/sqrt(fan_in), 1/sqrt(fan_in)), PyTorch's default */
    float *w;                  /* into the parameter arena, set by the model */
    float *g;                  /* into the gradient arena, same offset */
} dlt_param;

/* What a step knows that layers may need. */
typedef struct {
    int train;                 /* 1: training (batch stats, dropout), 0: eval */
    uint64_t seed;             /* the run's seed */
    int64_t step;              /* global optimizer step, 0-based */
    int64_t sample0;           /* global index of this rank's first sample in the step */
    const int32_t *labels;     /* (n) backend memory, for loss layers */
    const float *targets;      /* (n, k) backend memory or NULL, for regression losses */
    /* (n, tokens_len) backend memory: the model input when it is one
     * dimension per sample (token ids as floats), set by dlt_model_forward /
     * backward; attention derives its padding mask (id 0) from it. NULL: none. */
    const float *tokens;
    int64_t tokens_len;
    /* (n) or (n, len): the labels again, in host memory, or NULL. A layer
     * that needs labels on the host (the masked-LM head's list of target
     * rows) reads them here; without them it downloads ctx->labels, a host
     * sync per step on a GPU. The trainer, eval and predict fill it. */
    const int32_t *labels_host;
} dlt_step_ctx;

typedef struct {
    const char *type;                          /* config name, e.g. "conv2d" */
    const dlt_key_spec *keys;                  /* accepted keys, {NULL} terminated */
    int n_inputs;                              /* number of inputs, 1 or 2 */
    int is_loss;                               /* output is per-sample loss (n) */
    dlt_status (*setup)(dlt_layer *l);
    void (*init)(dlt_layer *l, dlt_rng *rng);  /* optional, beyond param inits */
    dlt_status (*forward)(dlt_layer *l, const dlt_step_ctx *ctx, int n);
    dlt_status (*backward)(dlt_layer *l, const dlt_step_ctx *ctx, int n);
    void (*free)(dlt_layer *l);                /* optional, frees priv extras */
    /* Optional: zeroes the part of l->dy that backward() reads for a batch
     * of n, after this step's forward and before any consumer accumulates
     * into dy (the model calls it just before the first consumer's
     * backward). NULL: the model zeroes all n samples of dy. A layer that
     * reads only some rows of its output gradient (the sparse masked-LM
     * head) saves zeroing the rest. */
    dlt_status (*zero_dy)(dlt_layer *l, int n);
} dlt_layer_ops;

struct dlt_layer {
    const dlt_layer_ops *ops;
    const dlt_layer_spec *spec;
    dlt_backend *be;
    int index;

    int n_in;
    dlt_tensor x[DLT_MAX_INPUTS];    /* inputs  (value data, shape incl. batch) */
    dlt_tensor dx[DLT_MAX_INPUTS];   /* their gradients; data NULL if not needed */
    dlt_tensor y;                    /* output; setup() sets y.shape */
    dlt_tensor dy;                   /* its gradient */

    dlt_param params[DLT_MAX_PARAMS];
    int n_params;

    /* memory requests, filled by the model after setup() */
    float **buf_ptr[DLT_MAX_BUFFERS];
    int64_t buf_len[DLT_MAX_BUFFERS];
    int buf_persistent[DLT_MAX_BUFFERS];  /* state (saved in checkpoints) vs scratch */
    char buf_name[DLT_MAX_BUFFERS][DLT_NAME_LEN];
    int n_bufs;
    size_t workspace_bytes;          /* shared scratch, valid during one fwd/bwd call */
    void *workspace;

    double flops;                    /* forward multiply-adds x2 per sample, set by setup() */
    void *priv;                      /* layer-private struct, malloc'd by setup() */
};

/* Declares a parameter of the layer; returns its index. */
int dlt_layer_add_param(dlt_layer *l, const char *suffix, dlt_shape shape, dlt_init init,
                        int64_t fan_in);
/* Declares a persistent state buffer (e.g. running mean) of len floats,
 * zero-initialised unless init() sets it; *ptr is set when allocated. */
void dlt_layer_add_state(dlt_layer *l, const char *suffix, float **ptr, int64_t len);
/* Declares a per-step scratch buffer of len floats that lives across
 * forward and backward of one step (e.g. a dropout mask). */
void dlt_layer_add_buffer(dlt_layer *l, float **ptr, int64_t len);

/* Layer type registry (core/layers/registry.c). NULL if unknown. */
const dlt_layer_ops *dlt_layer_find(const char *type);
/* NULL-terminated list of all registered types, for help and suggestions. */
const dlt_layer_ops *const *dlt_layer_all(void);

#endif
