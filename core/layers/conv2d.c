/* "conv2d": 2-D convolution of an NCHW input, as torch.nn.Conv2d
 * (square kernel, stride and zero padding; dilation 1, groups 1).
 *
 * The arithmetic is the backend's (im2col + gemm on the CPU, cuDNN on a
 * GPU); this layer only fixes the geometry at setup, asks the backend how
 * much scratch its algorithm needs for the planned batch (the model shares one
 * workspace of the largest request among all layers), and adds the bias
 * separately. The weight is (filters, c, kernel, kernel) like torch, with
 * PyTorch's default U(-1/sqrt(fan_in), 1/sqrt(fan_in)) init for both weight
 * and bias, fan_in = c * kernel^2. */
#include <stdlib.h>

#include "core/layers/layers_internal.h"

static const dlt_key_spec conv_keys[] = {
    { "filters", DLT_KEY_INT, NULL, "number of output channels" },
    { "kernel", DLT_KEY_INT, NULL, "kernel height and width" },
    { "stride", DLT_KEY_INT, "1", "stride in both directions" },
    { "padding", DLT_KEY_INT, "0", "zero padding on every side" },
    { "bias", DLT_KEY_BOOL, "true", "add a learned per-channel bias" },
    { NULL, 0, NULL, NULL },
};

typedef struct {
    dlt_conv_geom g;   /* geometry for the planned batch; n is set per call */
    int w, b;          /* parameter indices; b = -1 without bias */
} conv_priv;

static dlt_status conv_setup(dlt_layer *l)
{
    long k, r, stride, pad;
    DLT_CHECK(dlt_spec_int_min(l, "filters", 1, &k));
    DLT_CHECK(dlt_spec_int_min(l, "kernel", 1, &r));
    DLT_CHECK(dlt_spec_int_min(l, "stride", 1, &stride));
    DLT_CHECK(dlt_spec_int_min(l, "padding", 0, &pad));
    const dlt_shape *xs = &l->x[0].shape;
    if (xs->ndim != 4) {
        char b[96];
        return DLT_LAYER_ERR(l, DLT_ERR_SHAPE, "input %s is not (n, c, h, w)",
                             dlt_shape_str(xs, b, sizeof b));
    }
    dlt_conv_geom g = { .n = (int)xs->d[0], .c = (int)xs->d[1], .h = (int)xs->d[2],
                        .w = (int)xs->d[3], .k = (int)k, .r = (int)r, .s = (int)r,
                        .stride = (int)stride, .pad = (int)pad };
    if (g.h + 2 * g.pad < g.r || g.w + 2 * g.pad < g.s) {
        char b[96];
        return DLT_LAYER_ERR(l, DLT_ERR_SHAPE, "input %s is smaller than kernel %d with padding %d",
                             dlt_shape_str(xs, b, sizeof b), g.r, g.pad);
    }
    dlt_conv_geom_finish(&g);
    conv_priv *p = calloc(1, sizeof *p);
    if (!p) return DLT_LAYER_ERR(l, DLT_ERR_NOMEM, "out of memory");
    l->priv = p;
    p->g = g;
    l->y.shape = (dlt_shape){ 4, { g.n, g.k, g.oh, g.ow } };
    int64_t fan_in = (int64_t)g.c * g.r * g.s;
    p->w = dlt_layer_add_param(l, "weight", (dlt_shape){ 4, { g.k, g.c, g.r, g.s } },
                               DLT_INIT_UNIFORM_FAN_IN, fan_in);
    p->b = -1;
    if (dlt_spec_int(l->spec, conv_keys, "bias"))
        p->b = dlt_layer_add_param(l, "bias", (dlt_shape){ 1, { g.k } }, DLT_INIT_UNIFORM_FAN_IN,
                                   fan_in);
    if (l->be->conv2d_workspace) l->workspace_bytes = l->be->conv2d_workspace(l->be, &g);
    l->flops = 2.0 * (double)fan_in * g.k * g.oh * g.ow;
    return DLT_OK;
}

static dlt_status conv_forward(dlt_layer *l, const dlt_step_ctx *ctx, int n)
{
    conv_priv *p = l->priv;
    dlt_backend *be = l->be;
    dlt_conv_geom g = p->g;
    g.n = n;
    /* y (n, k, oh, ow) */
    DLT_CHECK(be->conv2d_fwd(be, &g, l->x[0].data, l->params[p->w].w, l->y.data, l->workspace));
    if (p->b >= 0)
        DLT_CHECK(be->bias_add(be, n, g.k, g.oh * g.ow, l->params[p->b].w, l->y.data));
    return DLT_OK;
}

static dlt_status conv_backward(dlt_layer *l, const dlt_step_ctx *ctx, int n)
{
    conv_priv *p = l->priv;
    dlt_backend *be = l->be;
    dlt_conv_geom g = p->g;
    g.n = n;
    DLT_CHECK(be->conv2d_bwd_filter(be, &g, l->x[0].data, l->dy.data, l->params[p->w].g,
                                    l->workspace));
    if (p->b >= 0)
        DLT_CHECK(be->bias_grad(be, n, g.k, g.oh * g.ow, l->dy.data, l->params[p->b].g));
    if (l->dx[0].data)
        DLT_CHECK(be->conv2d_bwd_data(be, &g, l->dy.data, l->params[p->w].w, l->dx[0].data,
                                      l->workspace));
    return DLT_OK;
}

const dlt_layer_ops dlt_layer_conv2d = {
    .type = "conv2d",
    .keys = conv_keys,
    .n_inputs = 1,
    .is_loss = 0,
    .setup = conv_setup,
    .init = NULL,
    .forward = conv_forward,
    .backward = conv_backward,
    .free = NULL,
};
