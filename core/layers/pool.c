/* Pooling: "maxpool" and "avgpool" (torch.nn.MaxPool2d / AvgPool2d with
 * count_include_pad, floor mode) and "global_avgpool" (AdaptiveAvgPool2d(1)
 * followed by a flatten: output (n, c)).
 *
 * All three are one backend op, pool2d, with a geometry fixed at setup:
 * global average pooling is a window of the whole image with stride 1, whose
 * (n, c, 1, 1) output has the same memory as (n, c). A stride of 0 in the
 * config means "same as size", torch's default. */
#include <stdlib.h>
#include <string.h>

#include "core/layers/layers_internal.h"

static const dlt_key_spec pool_keys[] = {
    { "size", DLT_KEY_INT, NULL, "window height and width" },
    { "stride", DLT_KEY_INT, "0", "stride; 0 means the window size" },
    { "padding", DLT_KEY_INT, "0", "implicit padding on every side (at most size/2)" },
    { NULL, 0, NULL, NULL },
};

static const dlt_key_spec gap_keys[] = {
    { NULL, 0, NULL, NULL },
};

typedef struct {
    dlt_pool_mode mode;
    dlt_conv_geom g;   /* n is set per call */
} pool_priv;

static dlt_status check_4d(dlt_layer *l)
{
    if (l->x[0].shape.ndim == 4) return DLT_OK;
    char b[96];
    return DLT_LAYER_ERR(l, DLT_ERR_SHAPE, "input %s is not (n, c, h, w)",
                         dlt_shape_str(&l->x[0].shape, b, sizeof b));
}

static dlt_status pool_priv_new(dlt_layer *l, pool_priv **out)
{
    pool_priv *p = calloc(1, sizeof *p);
    if (!p) return DLT_LAYER_ERR(l, DLT_ERR_NOMEM, "out of memory");
    l->priv = p;
    *out = p;
    return DLT_OK;
}

static dlt_status pool_setup(dlt_layer *l)
{
    long size, stride, pad;
    DLT_CHECK(dlt_spec_int_min(l, "size", 1, &size));
    DLT_CHECK(dlt_spec_int_min(l, "stride", 0, &stride));
    DLT_CHECK(dlt_spec_int_min(l, "padding", 0, &pad));
    if (stride == 0) stride = size;
    if (2 * pad > size)
        return DLT_LAYER_ERR(l, DLT_ERR_CONFIG, "padding %ld is more than half the size %ld",
                             pad, size);
    DLT_CHECK(check_4d(l));
    const dlt_shape *xs = &l->x[0].shape;
    dlt_conv_geom g = { .n = (int)xs->d[0], .c = (int)xs->d[1], .h = (int)xs->d[2],
                        .w = (int)xs->d[3], .k = (int)xs->d[1], .r = (int)size, .s = (int)size,
                        .stride = (int)stride, .pad = (int)pad };
    if (g.h + 2 * g.pad < g.r || g.w + 2 * g.pad < g.s) {
        char b[96];
        return DLT_LAYER_ERR(l, DLT_ERR_SHAPE, "input %s is smaller than the window %ld",
                             dlt_shape_str(xs, b, sizeof b), size);
    }
    dlt_conv_geom_finish(&g);
    pool_priv *p = NULL;
    DLT_CHECK(pool_priv_new(l, &p));
    p->mode = strcmp(l->ops->type, "maxpool") == 0 ? DLT_POOL_MAX : DLT_POOL_AVG;
    p->g = g;
    l->y.shape = (dlt_shape){ 4, { g.n, g.c, g.oh, g.ow } };
    return DLT_OK;
}

static dlt_status gap_setup(dlt_layer *l)
{
    DLT_CHECK(check_4d(l));
    const dlt_shape *xs = &l->x[0].shape;
    dlt_conv_geom g = { .n = (int)xs->d[0], .c = (int)xs->d[1], .h = (int)xs->d[2],
                        .w = (int)xs->d[3], .k = (int)xs->d[1], .r = (int)xs->d[2],
                        .s = (int)xs->d[3], .stride = 1, .pad = 0 };
    dlt_conv_geom_finish(&g);
    pool_priv *p = NULL;
    DLT_CHECK(pool_priv_new(l, &p));
    p->mode = DLT_POOL_AVG;
    p->g = g;
    l->y.shape = (dlt_shape){ 2, { g.n, g.c } };
    return DLT_OK;
}

static dlt_status pool_forward(dlt_layer *l, const dlt_step_ctx *ctx, int n)
{
    pool_priv *p = l->priv;
    dlt_conv_geom g = p->g;
    g.n = n;
    return l->be->pool2d_fwd(l->be, p->mode, &g, l->x[0].data, l->y.data);
}

static dlt_status pool_backward(dlt_layer *l, const dlt_step_ctx *ctx, int n)
{
    pool_priv *p = l->priv;
    if (!l->dx[0].data) return DLT_OK;
    dlt_conv_geom g = p->g;
    g.n = n;
    return l->be->pool2d_bwd(l->be, p->mode, &g, l->x[0].data, l->y.data, l->dy.data,
                             l->dx[0].data);
}

const dlt_layer_ops dlt_layer_maxpool = {
    .type = "maxpool",
    .keys = pool_keys,
    .n_inputs = 1,
    .is_loss = 0,
    .setup = pool_setup,
    .init = NULL,
    .forward = pool_forward,
    .backward = pool_backward,
    .free = NULL,
};

const dlt_layer_ops dlt_layer_avgpool = {
    .type = "avgpool",
    .keys = pool_keys,
    .n_inputs = 1,
    .is_loss = 0,
    .setup = pool_setup,
    .init = NULL,
    .forward = pool_forward,
    .backward = pool_backward,
    .free = NULL,
};

const dlt_layer_ops dlt_layer_global_avgpool = {
    .type = "global_avgpool",
    .keys = gap_keys,
    .n_inputs = 1,
    .is_loss = 0,
    .setup = gap_setup,
    .init = NULL,
    .forward = pool_forward,
    .backward = pool_backward,
    .free = NULL,
};
