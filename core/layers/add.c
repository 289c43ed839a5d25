/* "add": y = a + b for two inputs of the same shape, the join of a residual
 * connection.
 *
 * Backward adds dy to both input gradients. Because gradient ops accumulate,
 * an input that is also consumed elsewhere (the shortcut's source) simply
 * receives the sum of both paths, and add(x, x) gets 2 dy. */
#include "core/layers/layers_internal.h"

static const dlt_key_spec add_keys[] = {
    { NULL, 0, NULL, NULL },
};

static dlt_status add_setup(dlt_layer *l)
{
    const dlt_shape *a = &l->x[0].shape, *b = &l->x[1].shape;
    int same = a->ndim == b->ndim;
    for (int i = 0; same && i < a->ndim; i++) same = a->d[i] == b->d[i];
    if (!same) {
        char sa[96], sb[96];
        return DLT_LAYER_ERR(l, DLT_ERR_SHAPE, "inputs %s and %s differ in shape",
                             dlt_shape_str(a, sa, sizeof sa), dlt_shape_str(b, sb, sizeof sb));
    }
    l->y.shape = *a;
    return DLT_OK;
}

static dlt_status add_forward(dlt_layer *l, const dlt_step_ctx *ctx, int n)
{
    size_t len = (size_t)n * (size_t)dlt_shape_sample_numel(&l->x[0].shape);
    return l->be->add(l->be, len, l->x[0].data, l->x[1].data, l->y.data);
}

static dlt_status add_backward(dlt_layer *l, const dlt_step_ctx *ctx, int n)
{
    size_t len = (size_t)n * (size_t)dlt_shape_sample_numel(&l->x[0].shape);
    for (int i = 0; i < 2; i++)
        if (l->dx[i].data) DLT_CHECK(l->be->axpy(l->be, len, 1.0f, l->dy.data, l->dx[i].data));
    return DLT_OK;
}

const dlt_layer_ops dlt_layer_add = {
    .type = "add",
    .keys = add_keys,
    .n_inputs = 2,
    .is_loss = 0,
    .setup = add_setup,
    .init = NULL,
    .forward = add_forward,
    .backward = add_backward,
    .free = NULL,
};
