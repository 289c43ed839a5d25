/* CPU 2-D max and average pooling, forward and backward, NCHW.
 *
 * Each (sample, channel) plane is independent, so the loops run over planes
 * (in parallel when the tensor is large) and every window is clipped to the
 * input once, outside the innermost loops, instead of testing each tap.
 *
 * Semantics follow torch.nn.MaxPool2d / AvgPool2d with ceil_mode=False:
 *  - max ignores padding, takes the first maximum in row-major window order
 *    and propagates NaN (a NaN tap wins, as in PyTorch); backward finds that
 *    tap again as the first one equal to the saved output y, so no index
 *    buffer is needed (with a NaN maximum, dy goes to the first NaN tap,
 *    where PyTorch picks the last). Comparisons are branch-free selects, and
 *    2x2/stride-2 windows, the common case, have their own vectorised loops;
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

/* 1 if window value v replaces the running maximum m: larger, or NaN
 * (PyTorch's rule; a NaN maximum then stays unless another NaN follows).
 * Bitwise | keeps it branch-free: on random data a branch per tap would be
 * mispredicted half the time, which used to cost more than the pooling. */
static inline int takes(float v, float m) { return (v > m) | (v != v); }

/* Offset (within the plane) of the maximum of a clipped, non-empty window,
 * the first one in row-major order (PyTorch's choice among ties). */
static inline ptrdiff_t argmax_window(const float *xp, int W, int h0, int h1, int w0, int w1)
{
    ptrdiff_t best = (ptrdiff_t)h0 * W + w0;
    float m = xp[best];
    for (int ih = h0; ih < h1; ih++)
        for (int iw = w0; iw < w1; iw++) {
            const ptrdiff_t i = (ptrdiff_t)ih * W + iw;
            const float v = xp[i];
            const int t = takes(v, m);
            m = t ? v : m;
            best = t ? i : best;
        }
    return best;
}

/* Maximum of the 2x2 window (a b / c d) with the semantics of a row-major
 * scan by takes(): a tree of strict comparisons keeps the first maximum, and
 * any NaN makes the result NaN (the sum is then NaN). Written as selects
 * without branches so that the loops below vectorise. */
static inline float max4(float a, float b, float c, float d)
{
    const float m1 = b > a ? b : a, m2 = d > c ? d : c;
    const float m = m2 > m1 ? m2 : m1;
    const int nan = (a != a) | (b != b) | (c != c) | (d != d);
    return nan ? a + b + c + d : m;
}

/* y(i) = max of the 2x2 window at r0 + 2i, r1 + 2i, for i < 8: a fixed
 * trip count, which the compiler turns into a few vector instructions. */
static inline void max2x2_block8(const float *restrict r0, const float *restrict r1,
                                 float *restrict y)
{
    for (int i = 0; i < 8; i++) y[i] = max4(r0[2 * i], r0[2 * i + 1], r1[2 * i], r1[2 * i + 1]);
}

/* y (oh, ow) = max over 2x2 windows with stride 2 and no padding of one
 * plane x (h, w): LeNet's and most CNNs' pooling. Rows are short (14 outputs
 * for 28x28), so they go in blocks of 8 with an overlapping last block
 * (recomputing a few outputs) instead of a scalar tail. */
static void maxpool_2x2(const float *xp, int W, int OH, int OW, float *yp)
{
    for (int oh = 0; oh < OH; oh++) {
        const float *r0 = xp + (size_t)2 * oh * W, *r1 = r0 + W;
        float *yr = yp + (size_t)oh * OW;
        int ow = 0;
        for (; ow + 8 <= OW; ow += 8) max2x2_block8(r0 + 2 * ow, r1 + 2 * ow, yr + ow);
        if (ow == OW) continue;
        if (OW >= 8) {
            max2x2_block8(r0 + 2 * (OW - 8), r1 + 2 * (OW - 8), yr + OW - 8);
            continue;
        }
        for (; ow < OW; ow++) yr[ow] = max4(r0[2 * ow], r0[2 * ow + 1], r1[2 * ow], r1[2 * ow + 1]);
    }
}

/* 1 if tap v is the window maximum m computed by the forward pass (a NaN
 * maximum is hit by any NaN tap). */
static inline int hits(float v, float m) { return (v == m) | ((v != v) & (m != m)); }

/* Offset of the first tap of a clipped, non-empty window that hits m, or -1. */
static inline ptrdiff_t first_hit(const float *xp, int W, int h0, int h1, int w0, int w1,
                                  float m)
{
    for (int ih = h0; ih < h1; ih++)
        for (int iw = w0; iw < w1; iw++)
            if (hits(xp[(ptrdiff_t)ih * W + iw], m)) return (ptrdiff_t)ih * W + iw;
    return -1;
}

/* dx += dy routed to the first maximum of n consecutive 2x2 windows (taps
 * at r0/r1 + 2i, forward output m, gradient dy). Windows do not overlap, so
 * each tap gets dy or 0 by a select. Called with constant n (8 or 1): a
 * fixed trip count vectorises completely, where a loop over a short row (14
 * windows for 28x28) would run mostly in its scalar tail. */
static inline void maxpool_bwd_windows(const float *restrict r0, const float *restrict r1,
                                       const float *restrict m, const float *restrict dy,
                                       float *restrict d0, float *restrict d1, int n)
{
    for (int i = 0; i < n; i++) {
        const float a = r0[2 * i], b = r0[2 * i + 1], c = r1[2 * i], d = r1[2 * i + 1];
        const float mi = m[i], g = dy[i];
        const int ea = hits(a, mi), eb = hits(b, mi) & !ea, ec = hits(c, mi) & !(ea | eb),
                  ed = hits(d, mi) & !(ea | eb | ec);
        d0[2 * i] += ea ? g : 0.0f;
        d0[2 * i + 1] += eb ? g : 0.0f;
        d1[2 * i] += ec ? g : 0.0f;
        d1[2 * i + 1] += ed ? g : 0.0f;
    }
}

/* dx += dy routed to the first maximum of each 2x2 / stride-2 window of one
 * plane x (h, w) with forward output y and gradient dy (oh, ow). */
static void maxpool_2x2_bwd(const float *xp, int W, int OH, int OW, const float *yp,
                            const float *dyp, float *dxp)
{
    for (int oh = 0; oh < OH; oh++) {
        const float *r0 = xp + (size_t)2 * oh * W, *r1 = r0 + W;
        float *d0 = dxp + (size_t)2 * oh * W, *d1 = d0 + W;
        const float *yr = yp + (size_t)oh * OW, *dr = dyp + (size_t)oh * OW;
        int ow = 0;
        for (; ow + 8 <= OW; ow += 8)
            maxpool_bwd_windows(r0 + 2 * ow, r1 + 2 * ow, yr + ow, dr + ow, d0 + 2 * ow,
                                d1 + 2 * ow, 8);
        if (ow < OW && OW >= 8) {
            /* Last block overlaps the previous one; its already-done windows
             * get a zero gradient, which leaves their taps unchanged. */
            const int o = OW - 8;
            float g[8];
            for (int i = 0; i < 8; i++) g[i] = o + i >= ow ? dr[o + i] : 0.0f;
            maxpool_bwd_windows(r0 + 2 * o, r1 + 2 * o, yr + o, g, d0 + 2 * o, d1 + 2 * o, 8);
            continue;
        }
        for (; ow < OW; ow++)
            maxpool_bwd_windows(r0 + 2 * ow, r1 + 2 * ow, yr + ow, dr + ow, d0 + 2 * ow,
                                d1 + 2 * ow, 1);
    }
}

/* y (n, c, oh, ow) = pool(x (n, c, h, w)) over r x s windows. */
dlt_status dlt_cpu_pool2d_fwd(dlt_backend *be, dlt_pool_mode mode, const dlt_conv_geom *g,
                              const float *x, float *y)
{
    DLT_CHECK(check_pool(mode, g, "pool2d_fwd"));
    const int H = g->h, W = g->w, OH = g->oh, OW = g->ow;
    const long planes = (long)g->n * g->c;
    const float div = (float)(g->r * g->s);
    const int fast2x2 = g->r == 2 && g->s == 2 && g->stride == 2 && g->pad == 0;
#pragma omp parallel for if (dlt_cpu_par(planes * H * W)) schedule(static)
    for (long p = 0; p < planes; p++) {
        const float *xp = x + (size_t)p * H * W;
        float *yp = y + (size_t)p * OH * OW;
        if (mode == DLT_POOL_MAX && fast2x2) {
            maxpool_2x2(xp, W, OH, OW, yp);
            continue;
        }
        for (int oh = 0; oh < OH; oh++) {
            int h0, h1;
            window(oh, g->stride, g->pad, g->r, H, &h0, &h1);
            for (int ow = 0; ow < OW; ow++) {
                int w0, w1;
                window(ow, g->stride, g->pad, g->s, W, &w0, &w1);
                float out;
                if (mode == DLT_POOL_MAX) {
                    out = h0 < h1 && w0 < w1 ? xp[argmax_window(xp, W, h0, h1, w0, w1)]
                                             : -INFINITY;
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

/* dx (n, c, h, w) += the gradient of pool2d_fwd given dy (n, c, oh, ow).
 * Max pooling needs x and the forward output y (n, c, oh, ow): dy goes to
 * the first tap of each window equal to y (to the first NaN tap if y is
 * NaN). Returns DLT_ERR_INVALID if y is NULL for max pooling. */
dlt_status dlt_cpu_pool2d_bwd(dlt_backend *be, dlt_pool_mode mode, const dlt_conv_geom *g,
                              const float *x, const float *y, const float *dy, float *dx)
{
    DLT_CHECK(check_pool(mode, g, "pool2d_bwd"));
    if (mode == DLT_POOL_MAX && !y)
        return DLT_ERR(DLT_ERR_INVALID, "pool2d_bwd: max pooling needs the forward output y");
    const int H = g->h, W = g->w, OH = g->oh, OW = g->ow;
    const long planes = (long)g->n * g->c;
    const float div = (float)(g->r * g->s);
    const int fast2x2 = g->r == 2 && g->s == 2 && g->stride == 2 && g->pad == 0;
#pragma omp parallel for if (dlt_cpu_par(planes * H * W)) schedule(static)
    for (long p = 0; p < planes; p++) {
        const float *xp = x + (size_t)p * H * W;
        const float *dyp = dy + (size_t)p * OH * OW;
        float *dxp = dx + (size_t)p * H * W;
        const float *yp = y ? y + (size_t)p * OH * OW : NULL; /* NULL for avg */
        if (mode == DLT_POOL_MAX && fast2x2) {
            maxpool_2x2_bwd(xp, W, OH, OW, yp, dyp, dxp);
            continue;
        }
        for (int oh = 0; oh < OH; oh++) {
            int h0, h1;
            window(oh, g->stride, g->pad, g->r, H, &h0, &h1);
            for (int ow = 0; ow < OW; ow++) {
                int w0, w1;
                window(ow, g->stride, g->pad, g->s, W, &w0, &w1);
                const float d = dyp[oh * OW + ow];
                if (mode == DLT_POOL_MAX) {
                    const ptrdiff_t i = first_hit(xp, W, h0, h1, w0, w1, yp[oh * OW + ow]);
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
