/* "layernorm": layer normalisation over the last dimension, as
 * torch.nn.LayerNorm(dim, eps) with elementwise affine (weight 1, bias 0 at
 * start). Any input of rank >= 2 is read as (rows, dim); the per-row mean and
 * 1/sqrt(var + eps) are per-step buffers kept for backward. Unlike batch
 * normalisation there are no running statistics: train and eval agree. */
#include <stdlib.h>

#include "core/layers/seq_internal.h"

static const dlt_key_spec layernorm_keys[] = {
    { "eps", DLT_KEY_FLOAT, "1e-5", "added to the variance (BERT uses 1e-12)" },
    { NULL, 0, NULL, NULL },
};

typedef struct {
    int dim;
    int64_t rows_per_sample;
    float eps;
    float *mean, *rstd;   /* (n, rows_per_sample) */
} ln_priv;

static dlt_status layernorm_setup(dlt_layer *l)
{
    const dlt_shape *xs = &l->x[0].shape;
    if (xs->ndim < 2)
        return DLT_LAYER_ERR(l, DLT_ERR_SHAPE, "input needs a batch and a feature dimension");
    double eps = dlt_spec_float(l->spec, layernorm_keys, "eps");
    if (!(eps > 0.0)) return DLT_LAYER_ERR(l, DLT_ERR_CONFIG, "eps must be > 0 (got %g)", eps);
    ln_priv *p = calloc(1, sizeof *p);
    if (!p) return DLT_LAYER_ERR(l, DLT_ERR_NOMEM, "out of memory");
    l->priv = p;
    p->dim = (int)xs->d[xs->ndim - 1];
    p->rows_per_sample = dlt_shape_sample_numel(xs) / p->dim;
    p->eps = (float)eps;
    l->y.shape = *xs;
    dlt_layer_add_param(l, "weight", (dlt_shape){ 1, { p->dim } }, DLT_INIT_ONE, p->dim);
    dlt_layer_add_param(l, "bias", (dlt_shape){ 1, { p->dim } }, DLT_INIT_ZERO, p->dim);
    dlt_layer_add_buffer(l, &p->mean, xs->d[0] * p->rows_per_sample);
    dlt_layer_add_buffer(l, &p->rstd, xs->d[0] * p->rows_per_sample);
    l->flops = 8.0 * (double)dlt_shape_sample_numel(xs);
    return DLT_OK;
}

static dlt_status layernorm_forward(dlt_layer *l, const dlt_step_ctx *ctx, int n)
{
    ln_priv *p = l->priv;
    return l->be->layernorm_fwd(l->be, (int)(n * p->rows_per_sample), p->dim, p->eps,
                                l->x[0].data, l->params[0].w, l->params[1].w, l->y.data, p->mean,
                                p->rstd);
}

static dlt_status layernorm_backward(dlt_layer *l, const dlt_step_ctx *ctx, int n)
{
    ln_priv *p = l->priv;
    return l->be->layernorm_bwd(l->be, (int)(n * p->rows_per_sample), p->dim, l->x[0].data,
                                l->dy.data, l->params[0].w, p->mean, p->rstd, l->dx[0].data,
                                l->params[0].g, l->params[1].g);
}

const dlt_layer_ops dlt_layer_layernorm = {
    .type = "layernorm",
    .keys = layernorm_keys,
    .n_inputs = 1,
    .is_loss = 0,
    .setup = layernorm_setup,
    .init = NULL,
    .forward = layernorm_forward,
    .backward = layernorm_backward,
    .free = NULL,
};
