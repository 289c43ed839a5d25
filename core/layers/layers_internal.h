/* Internal to core/layers/ and core/model.c: the layer tables, what backend
 * ops each layer type needs, error helpers that name the layer and its config
 * line, and the two hooks the model uses on the loss layer.
 *
 * Nothing outside core/ includes this header; the public view of a layer is
 * core/layer.h, of the model core/model.h. */
#ifndef DLT_LAYERS_INTERNAL_H
#define DLT_LAYERS_INTERNAL_H

#include "core/layer.h"

/* ---- layer tables, one per type (core/layers/<family>.c) ---- */
extern const dlt_layer_ops dlt_layer_dense;
extern const dlt_layer_ops dlt_layer_conv2d;
extern const dlt_layer_ops dlt_layer_maxpool;
extern const dlt_layer_ops dlt_layer_avgpool;
extern const dlt_layer_ops dlt_layer_global_avgpool;
extern const dlt_layer_ops dlt_layer_batchnorm;
extern const dlt_layer_ops dlt_layer_relu;
extern const dlt_layer_ops dlt_layer_sigmoid;
extern const dlt_layer_ops dlt_layer_tanh;
extern const dlt_layer_ops dlt_layer_gelu;
extern const dlt_layer_ops dlt_layer_dropout;
extern const dlt_layer_ops dlt_layer_flatten;
extern const dlt_layer_ops dlt_layer_add;
extern const dlt_layer_ops dlt_layer_softmax_xent;
extern const dlt_layer_ops dlt_layer_mse;
/* sequence models (core/layers/embedding.c, layernorm.c, attention.c,
 * transformer.c, lstm.c, heads.c, linear.c) */
extern const dlt_layer_ops dlt_layer_embedding;
extern const dlt_layer_ops dlt_layer_position_embedding;
extern const dlt_layer_ops dlt_layer_token_type_embedding;
extern const dlt_layer_ops dlt_layer_layernorm;
extern const dlt_layer_ops dlt_layer_self_attention;
extern const dlt_layer_ops dlt_layer_transformer;
extern const dlt_layer_ops dlt_layer_lstm;
extern const dlt_layer_ops dlt_layer_mlm_head;
extern const dlt_layer_ops dlt_layer_pooler;
extern const dlt_layer_ops dlt_layer_linear;
/* A macro layer: the model expands it (core/model.c); its setup() refuses. */
extern const dlt_layer_ops dlt_layer_resblock;
extern const dlt_layer_ops dlt_layer_bottleneck;

/* NULL-terminated backend op names (backend.h field names) that a layer of
 * this type calls, for dlt_backend_missing_op() at build time. */
const char *const *dlt_layer_backend_ops(const dlt_layer_ops *ops);

/* ---- errors ---- */

/* Records "layer 'NAME' (FILE:LINE): <message>" as the last error and
 * returns st; the location is left out when the spec has none. */
dlt_status dlt_layer_error(const dlt_layer *l, dlt_status st, const char *file, int line,
                           const char *fmt, ...) __attribute__((format(printf, 5, 6)));
#define DLT_LAYER_ERR(l, st, ...) dlt_layer_error((l), (st), __FILE__, __LINE__, __VA_ARGS__)

/* "layer 'NAME' (FILE:LINE)" of a spec into buf; returns buf. */
const char *dlt_spec_where(const dlt_layer_spec *s, char *buf, size_t len);

/* 1 if the spec sets key explicitly. */
int dlt_spec_has(const dlt_layer_spec *s, const char *key);

/* Reads integer key into *out and checks lo <= value; an error naming the
 * layer and key otherwise (a missing required key reads as 0). */
dlt_status dlt_spec_int_min(const dlt_layer *l, const char *key, long lo, long *out);

/* ---- loss layers (core/layers/loss.c) ---- */

/* Scale applied to d(loss)/d(logits) by the next backward(): 1 / global
 * batch for a mean. Standalone loss layers start at 1 (gradient of the sum). */
void dlt_loss_set_scale(dlt_layer *l, float scale);
/* (n) 1/0 per sample after forward(), or NULL for regression losses. */
const float *dlt_loss_correct(const dlt_layer *l);
/* (n) counted tokens per sample after forward() of a per-token loss, else NULL. */
const float *dlt_loss_count(const dlt_layer *l);

/* ---- hooks of sequence layers, called by core/model.c ---- */

/* After the arenas are allocated and parameters initialised: resolves
 * references between layers (an mlm_head's `tie` to an embedding's weight).
 * Returns DLT_ERR_CONFIG naming the layer when a reference is bad. */
dlt_status dlt_layers_link(dlt_layer *layers, int n);
/* Clears carried state of l (stateful LSTM); a no-op for other types. */
void dlt_layer_reset_state(dlt_layer *l);

#endif
