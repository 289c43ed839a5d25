/* "linear": a fully connected layer on the last dimension, as
 * torch.nn.Linear: (n, ..., in) -> (n, ..., units), the same weights for
 * every position. Sequence models need it where "dense" would flatten the
 * sequence into one feature vector (the LSTM language model's projection to
 * the vocabulary, a per-token classifier). All rows of the batch are one
 * backend linear op (gemm with the bias fused on CUDA), so it is as fast as
 * dense; parameters (weight (units, in), bias) have torch's names and
 * initialisation. */
#include <stdlib.h>

#include "core/layers/seq_internal.h"

static const dlt_key_spec linear_keys[] = {
    { "units", DLT_KEY_INT, NULL, "output features per position" },
    { "bias", DLT_KEY_BOOL, "true", "add a learned bias" },
    { NULL, 0, NULL, NULL },
};

typedef struct {
    int in, units, rows_per_sample, bias;
} linear_priv;

static dlt_status linear_setup(dlt_layer *l)
{
    const dlt_shape *xs = &l->x[0].shape;
    if (xs->ndim < 2)
        return DLT_LAYER_ERR(l, DLT_ERR_SHAPE, "input needs a batch and a feature dimension");
    long units;
    DLT_CHECK(dlt_spec_int_min(l, "units", 1, &units));
    linear_priv *p = calloc(1, sizeof *p);
    if (!p) return DLT_LAYER_ERR(l, DLT_ERR_NOMEM, "out of memory");
    l->priv = p;
    p->in = (int)xs->d[xs->ndim - 1];
    p->units = (int)units;
    p->rows_per_sample = (int)(dlt_shape_sample_numel(xs) / p->in);
    p->bias = (int)dlt_spec_int(l->spec, linear_keys, "bias");
    l->y.shape = *xs;
    l->y.shape.d[xs->ndim - 1] = units;
    dlt_layer_add_param(l, "weight", (dlt_shape){ 2, { units, p->in } }, DLT_INIT_UNIFORM_FAN_IN,
                        p->in);
    if (p->bias)
        dlt_layer_add_param(l, "bias", (dlt_shape){ 1, { units } }, DLT_INIT_UNIFORM_FAN_IN, p->in);
    l->flops = 2.0 * p->rows_per_sample * (double)p->in * (double)units;
    return DLT_OK;
}

static dlt_status linear_forward(dlt_layer *l, const dlt_step_ctx *ctx, int n)
{
    linear_priv *p = l->priv;
    dlt_backend *be = l->be;
    const int rows = n * p->rows_per_sample;
    return be->linear_fwd(be, rows, p->in, p->units, l->x[0].data, l->params[0].w,
                          p->bias ? l->params[1].w : NULL, l->y.data);
}

static dlt_status linear_backward(dlt_layer *l, const dlt_step_ctx *ctx, int n)
{
    linear_priv *p = l->priv;
    dlt_backend *be = l->be;
    const int rows = n * p->rows_per_sample;
    DLT_CHECK(be->linear_bwd_w(be, rows, p->in, p->units, l->x[0].data, l->dy.data,
                               l->params[0].g, p->bias ? l->params[1].g : NULL));
    if (l->dx[0].data)
        DLT_CHECK(be->gemm(be, 0, 0, rows, p->in, p->units, 1.0f, l->dy.data, p->units,
                           l->params[0].w, p->in, 1.0f, l->dx[0].data, p->in));
    return DLT_OK;
}

const dlt_layer_ops dlt_layer_linear = {
    .type = "linear",
    .keys = linear_keys,
    .n_inputs = 1,
    .is_loss = 0,
    .setup = linear_setup,
    .init = NULL,
    .forward = linear_forward,
    .backward = linear_backward,
    .free = NULL,
};
