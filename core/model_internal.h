/* Internal to core/model.c and core/model_blocks.c: the model's private
 * state and the build steps the macro blocks (resblock, bottleneck) reuse.
 * Not for layers or the launcher: they see core/model.h only. */
#ifndef DLT_MODEL_INTERNAL_H
#define DLT_MODEL_INTERNAL_H

#include "core/model.h"

#define RESBLOCK_MAX 12   /* layers one resblock (9) or bottleneck (12) expands into */

/* Every arena of a set of layers; sizes in floats except the workspace. */
typedef struct {
    float *params, *grads, *state, *bufs, *acts, *act_grads;
    void *ws;
    size_t n_params, n_state, n_bufs, n_acts, ws_bytes;
} dlt_arenas;

typedef struct {
    int src[DLT_MAX_INPUTS];     /* producing layer, -1: the model input */
    char alias[DLT_NAME_LEN];    /* the resblock this layer ends, or "" */
    int first_writer;            /* the first layer in backward order to write this
                                    output's gradient (its last reader); -1: none */
} dlt_node;

struct dlt_model {
    dlt_backend *be;
    int max_batch;
    dlt_shape in_shape;          /* (max_batch, input...) */
    float *input;                /* (max_batch, input...) copy of the step's input */
    dlt_layer *layers;
    dlt_layer_spec *specs;       /* one per layer, expanded; layers point here */
    dlt_node *nodes;
    int n_layers, cap;
    const dlt_param **order;     /* parameters in arena order */
    int n_order;
    dlt_arenas a;
    dlt_grad_ready_fn hook;      /* grad-ready callback, or NULL */
    void *hook_user;
};

/* Index of the layer called name (or ending the resblock name), -1 for the
 * model input, -2 if unknown. */
int dlt_model_find_name(const dlt_model *m, const char *name);
/* Output shape of layer src, or the model input's for src < 0. */
const dlt_shape *dlt_model_src_shape(const dlt_model *m, int src);
/* Appends a layer for spec s (copied), resolving its inputs and running its
 * setup; alias names the resblock it ends, or NULL. */
dlt_status dlt_model_add_layer(dlt_model *m, const dlt_layer_spec *s, const char *alias);
/* Expands a resblock or bottleneck spec into plain layers (model_blocks.c). */
dlt_status dlt_model_expand_block(dlt_model *m, const dlt_layer_spec *b);

#endif
