/* "flatten": (n, d1, d2, ...) -> (n, d1 * d2 * ...), as torch.nn.Flatten.
 *
 * Row-major memory is already flat, so the values are only copied (a layer
 * owns its output buffer; aliasing the input would save one copy but would
 * complicate the activation plan for a negligible gain). */
#include "core/layers/layers_internal.h"

static const dlt_key_spec flatten_keys[] = {
    { NULL, 0, NULL, NULL },
};

static dlt_status flatten_setup(dlt_layer *l)
{
    const dlt_shape *xs = &l->x[0].shape;
    if (xs->ndim < 1)
        return DLT_LAYER_ERR(l, DLT_ERR_SHAPE, "input has no batch dimension");
    l->y.shape = (dlt_shape){ 2, { xs->d[0], dlt_shape_sample_numel(xs) } };
    return DLT_OK;
}

static dlt_status flatten_forward(dlt_layer *l, const dlt_step_ctx *ctx, int n)
{
    size_t len = (size_t)n * (size_t)dlt_shape_sample_numel(&l->x[0].shape);
    return l->be->copy(l->be, l->y.data, l->x[0].data, len * sizeof(float));
}

static dlt_status flatten_backward(dlt_layer *l, const dlt_step_ctx *ctx, int n)
{
    if (!l->dx[0].data) return DLT_OK;
    size_t len = (size_t)n * (size_t)dlt_shape_sample_numel(&l->x[0].shape);
    return l->be->axpy(l->be, len, 1.0f, l->dy.data, l->dx[0].data);
}

const dlt_layer_ops dlt_layer_flatten = {
    .type = "flatten",
    .keys = flatten_keys,
    .n_inputs = 1,
    .is_loss = 0,
    .setup = flatten_setup,
    .init = NULL,
    .forward = flatten_forward,
    .backward = flatten_backward,
    .free = NULL,
};
