/* "dense": a fully connected layer, y = x W^T + b, as torch.nn.Linear.
 *
 * An input of any rank is read as (n, in_features) with in_features the
 * product of the non-batch dimensions, so a dense layer may follow a conv
 * stack without an explicit flatten (the memory is already row-major).
 * W is (units, in_features) like torch, which makes both the forward and the
 * two backward products a single gemm each; the bias is added by bias_add
 * with hw = 1. */
#include <stdlib.h>

#include "core/layers/layers_internal.h"

static const dlt_key_spec dense_keys[] = {
    { "units", DLT_KEY_INT, NULL, "number of output features" },
    { "bias", DLT_KEY_BOOL, "true", "add a learned bias" },
    { NULL, 0, NULL, NULL },
};

typedef struct {
    int in;      /* in_features */
    int units;
    int w, b;    /* parameter indices; b = -1 without bias */
} dense_priv;

static dlt_status dense_setup(dlt_layer *l)
{
    long units;
    DLT_CHECK(dlt_spec_int_min(l, "units", 1, &units));
    if (l->x[0].shape.ndim < 2)
        return DLT_LAYER_ERR(l, DLT_ERR_SHAPE, "input needs a batch and a feature dimension");
    int64_t in = dlt_shape_sample_numel(&l->x[0].shape);
    dense_priv *p = calloc(1, sizeof *p);
    if (!p) return DLT_LAYER_ERR(l, DLT_ERR_NOMEM, "out of memory");
    l->priv = p;
    p->in = (int)in;
    p->units = (int)units;
    l->y.shape = (dlt_shape){ 2, { l->x[0].shape.d[0], units } };
    p->w = dlt_layer_add_param(l, "weight", (dlt_shape){ 2, { units, in } },
                               DLT_INIT_UNIFORM_FAN_IN, in);
    p->b = -1;
    if (dlt_spec_int(l->spec, dense_keys, "bias"))
        p->b = dlt_layer_add_param(l, "bias", (dlt_shape){ 1, { units } },
                                   DLT_INIT_UNIFORM_FAN_IN, in);
    l->flops = 2.0 * (double)in * (double)units;
    return DLT_OK;
}

static dlt_status dense_forward(dlt_layer *l, const dlt_step_ctx *ctx, int n)
{
    dense_priv *p = l->priv;
    dlt_backend *be = l->be;
    /* y (n, units) = x (n, in) . W^T */
    DLT_CHECK(be->gemm(be, 0, 1, n, p->units, p->in, 1.0f, l->x[0].data, p->in,
                       l->params[p->w].w, p->in, 0.0f, l->y.data, p->units));
    if (p->b >= 0) DLT_CHECK(be->bias_add(be, n, p->units, 1, l->params[p->b].w, l->y.data));
    return DLT_OK;
}

static dlt_status dense_backward(dlt_layer *l, const dlt_step_ctx *ctx, int n)
{
    dense_priv *p = l->priv;
    dlt_backend *be = l->be;
    /* dW (units, in) += dy^T (units, n) . x (n, in) */
    DLT_CHECK(be->gemm(be, 1, 0, p->units, p->in, n, 1.0f, l->dy.data, p->units, l->x[0].data,
                       p->in, 1.0f, l->params[p->w].g, p->in));
    if (p->b >= 0) DLT_CHECK(be->bias_grad(be, n, p->units, 1, l->dy.data, l->params[p->b].g));
    /* dx (n, in) += dy (n, units) . W (units, in) */
    if (l->dx[0].data)
        DLT_CHECK(be->gemm(be, 0, 0, n, p->in, p->units, 1.0f, l->dy.data, p->units,
                           l->params[p->w].w, p->in, 1.0f, l->dx[0].data, p->in));
    return DLT_OK;
}

const dlt_layer_ops dlt_layer_dense = {
    .type = "dense",
    .keys = dense_keys,
    .n_inputs = 1,
    .is_loss = 0,
    .setup = dense_setup,
    .init = NULL,
    .forward = dense_forward,
    .backward = dense_backward,
    .free = NULL,
};
