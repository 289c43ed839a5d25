/* "dense": a fully connected layer, y = x W^T + b, as torch.nn.Linear.
 *
 * An input of any rank is read as (n, in_features) with in_features the
 * product of the non-batch dimensions, so a dense layer may follow a conv
 * stack without an explicit flatten (the memory is already row-major).
 * W is (units, in_features) like torch, so the layer is the backend's
 * linear ops: linear_fwd (product and bias in one call; on CUDA the bias is
 * the gemm's epilogue), linear_bwd_w (weight and bias gradients) and one
 * gemm for the input gradient. */
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
    /* y (n, units) = x (n, in) . W^T + b */
    return be->linear_fwd(be, n, p->in, p->units, l->x[0].data, l->params[p->w].w,
                          p->b >= 0 ? l->params[p->b].w : NULL, l->y.data);
}

static dlt_status dense_backward(dlt_layer *l, const dlt_step_ctx *ctx, int n)
{
    dense_priv *p = l->priv;
    dlt_backend *be = l->be;
    /* dW (units, in) += dy^T (units, n) . x (n, in), db += sum dy */
    DLT_CHECK(be->linear_bwd_w(be, n, p->in, p->units, l->x[0].data, l->dy.data,
                               l->params[p->w].g, p->b >= 0 ? l->params[p->b].g : NULL));
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
