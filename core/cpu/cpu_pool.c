/* CPU 2-D max and average pooling, forward and backward, NCHW.
 *
 * Each (sample, channel) plane is independent, so the loops run over planes
 * (in parallel when the tensor is large) and every window is clipped to the
 * input once, outside the innermost loops, instead of testing each tap.
 *
 * Semantics follow torch.nn.MaxPool2d / AvgPool2d with ceil_mode=False:
 *  - max ignores padding, takes the first maximum in row-major window order
 *    and propagates NaN (a NaN tap wins, as in PyTorch); backward recomputes
 *    that same argmax from x, so no index buffer is needed, and routes dy to
 *    it;
 *  - average counts padded zeros (count_include_pad): the divisor is always
 *    r*s, since without ceil_mode a window never leaves the padded input. */
#include <math.h>
#include <stddef.h>

#include "core/backend.h"
#include "core/cpu/cpu_ops.h"
#include "core/status.h"

static dlt_status check_pool(dlt_pool_mode mode, const dlt_conv_geom *g, const char *op)
{
    if (!g) return DLT_ERR(DLT_ERR_INVALID, "%s: NULL geometry", op);
    if (mode != DLT_POOL_MAX && mode != DLT_POOL_AVG)
        return DLT_ERR(DLT_ERR_INVALID, "%s: unknown pooling mode %d", op, (int)mode);
    if (g->n < 0 || g->c <= 0 || g->h <= 0 || g->w <= 0 || g->r <= 0 || g->s <= 0 ||
        g->stride <= 0 || g->pad < 0 || g->h + 2 * g->pad < g->r || g->w + 2 * g->pad < g->s)
        return DLT_ERR(DLT_ERR_SHAPE,
                       "%s: bad geometry n=%d c=%d h=%d w=%d window %dx%d stride %d pad %d", op,
                       g->n, g->c, g->h, g->w, g->r, g->s, g->stride, g->pad);
    if (g->oh != (g->h + 2 * g->pad - g->r) / g->stride + 1 ||
        g->ow != (g->w + 2 * g->pad - g->s) / g->stride + 1)
        return DLT_ERR(DLT_ERR_SHAPE, "%s: output %dx%d does not match the geometry", op, g->oh,
                       g->ow);
    return DLT_OK;
}

/* Clipped window [*lo, *hi) along one axis for output index o. */
static inline void window(int o, int stride, int pad, int k, int len, int *lo, int *hi)
{
    int a = o * stride - pad, b = a + k;
    *lo = a < 0 ? 0 : a;
    *hi = b > len ? len : b;
}

/* Offset (within the plane) of the first maximum of a clipped window, or -1
 * if the window is empty. NaN beats every number, and the first NaN wins. */
static inline ptrdiff_t argmax_window(const float *xp, int W, int h0, int h1, int w0, int w1)
{
    ptrdiff_t best = -1;
    float m = -INFINITY;
    for (int ih = h0; ih < h1; ih++)
        for (int iw = w0; iw < w1; iw++) {
            float v = xp[(ptrdiff_t)ih * W + iw];
            if (best < 0 || v > m || (isnan(v) && !isnan(m))) {
                m = v;
                best = (ptrdiff_t)ih * W + iw;
            }
        }
    return best;
}

/* y (n, c, oh, ow) = pool(x (n, c, h, w)) over r x s windows. */
dlt_status dlt_cpu_pool2d_fwd(dlt_backend *be, dlt_pool_mode mode, const dlt_conv_geom *g,
                              const float *x, float *y)
{
    DLT_CHECK(check_pool(mode, g, "pool2d_fwd"));
    const int H = g->h, W = g->w, OH = g->oh, OW = g->ow;
    const long planes = (long)g->n * g->c;
    const float div = (float)(g->r * g->s);
#pragma omp parallel for if (dlt_cpu_par(planes * H * W)) schedule(static)
    for (long p = 0; p < planes; p++) {
        const float *xp = x + (size_t)p * H * W;
        float *yp = y + (size_t)p * OH * OW;
        for (int oh = 0; oh < OH; oh++) {
            int h0, h1;
            window(oh, g->stride, g->pad, g->r, H, &h0, &h1);
            for (int ow = 0; ow < OW; ow++) {
                int w0, w1;
                window(ow, g->stride, g->pad, g->s, W, &w0, &w1);
                float out;
                if (mode == DLT_POOL_MAX) {
                    ptrdiff_t i = argmax_window(xp, W, h0, h1, w0, w1);
                    out = i < 0 ? -INFINITY : xp[i];
                } else {
                    float s = 0.0f;
                    for (int ih = h0; ih < h1; ih++)
                        for (int iw = w0; iw < w1; iw++) s += xp[(ptrdiff_t)ih * W + iw];
                    out = s / div;
                }
                yp[oh * OW + ow] = out;
            }
        }
    }
    return DLT_OK;
}

/* dx (n, c, h, w) += the gradient of pool2d_fwd given dy (n, c, oh, ow);
 * y is not needed on the CPU (the argmax is recomputed from x). */
dlt_status dlt_cpu_pool2d_bwd(dlt_backend *be, dlt_pool_mode mode, const dlt_conv_geom *g,
                              const float *x, const float *y, const float *dy, float *dx)
{
    DLT_CHECK(check_pool(mode, g, "pool2d_bwd"));
    const int H = g->h, W = g->w, OH = g->oh, OW = g->ow;
    const long planes = (long)g->n * g->c;
    const float div = (float)(g->r * g->s);
#pragma omp parallel for if (dlt_cpu_par(planes * H * W)) schedule(static)
    for (long p = 0; p < planes; p++) {
        const float *xp = x + (size_t)p * H * W;
        const float *dyp = dy + (size_t)p * OH * OW;
        float *dxp = dx + (size_t)p * H * W;
        for (int oh = 0; oh < OH; oh++) {
            int h0, h1;
            window(oh, g->stride, g->pad, g->r, H, &h0, &h1);
            for (int ow = 0; ow < OW; ow++) {
                int w0, w1;
                window(ow, g->stride, g->pad, g->s, W, &w0, &w1);
                const float d = dyp[oh * OW + ow];
                if (mode == DLT_POOL_MAX) {
                    ptrdiff_t i = argmax_window(xp, W, h0, h1, w0, w1);
                    if (i >= 0) dxp[i] += d;
                } else {
                    const float dv = d / div;
                    for (int ih = h0; ih < h1; ih++)
                        for (int iw = w0; iw < w1; iw++) dxp[(ptrdiff_t)ih * W + iw] += dv;
                }
            }
        }
    }
    return DLT_OK;
}
