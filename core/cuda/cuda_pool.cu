/* CUDA 2-D max and average pooling, forward and backward, NCHW.
 *
 * Written as own kernels rather than cuDNN pooling so that the semantics are
 * exactly core/cpu/cpu_pool.c's (torch.nn.MaxPool2d / AvgPool2d, ceil_mode
 * False): max ignores padding, takes the first maximum in row-major window
 * order, and lets a NaN win; average divides by r*s (count_include_pad).
 * cuDNN's tie-breaking for max pooling is not specified, and ties are common
 * after a ReLU.
 *
 * Forward: one thread per output element. Backward gathers instead of
 * scattering: one thread per input element visits the few windows that
 * cover it and, for max pooling, recomputes each window's argmax (as the CPU
 * does) to see whether it is the winner. Every dx element is written by one
 * thread, so there are no atomics and the result is deterministic even with
 * overlapping windows (stride < window). */
#include <math.h>

#include "core/cuda/cuda_internal.h"
#include "core/cuda/cuda_util.cuh"

/* Geometry passed by value to the kernels. */
typedef struct {
    int c, h, w, oh, ow, r, s, stride, pad;
} pool_geom;

/* Clipped window [*lo, *hi) along one axis for output index o. */
__device__ __forceinline__ void window(int o, int stride, int pad, int k, int len, int *lo, int *hi)
{
    int a = o * stride - pad, b = a + k;
    *lo = a < 0 ? 0 : a;
    *hi = b > len ? len : b;
}

/* Offset in the plane of the first maximum of the window, -1 if empty;
 * NaN beats every number and the first NaN wins. */
__device__ __forceinline__ int argmax_window(const float *xp, int W, int h0, int h1, int w0, int w1)
{
    int best = -1;
    float m = -INFINITY;
    for (int ih = h0; ih < h1; ih++)
        for (int iw = w0; iw < w1; iw++) {
            float v = xp[ih * W + iw];
            if (best < 0 || v > m || (isnan(v) && !isnan(m))) {
                m = v;
                best = ih * W + iw;
            }
        }
    return best;
}

__global__ void k_pool_fwd(int is_max, pool_geom g, size_t total, const float *__restrict__ x,
                           float *__restrict__ y)
{
    const float div = (float)(g.r * g.s);
    GRID_LOOP(idx, total)
    {
        const int ow = (int)(idx % (size_t)g.ow);
        const int oh = (int)((idx / (size_t)g.ow) % (size_t)g.oh);
        const size_t plane = idx / ((size_t)g.ow * g.oh);
        const float *xp = x + plane * g.h * g.w;
        int h0, h1, w0, w1;
        window(oh, g.stride, g.pad, g.r, g.h, &h0, &h1);
        window(ow, g.stride, g.pad, g.s, g.w, &w0, &w1);
        float out;
        if (is_max) {
            int i = argmax_window(xp, g.w, h0, h1, w0, w1);
            out = i < 0 ? -INFINITY : xp[i];
        } else {
            float s = 0.0f;
            for (int ih = h0; ih < h1; ih++)
                for (int iw = w0; iw < w1; iw++) s += xp[ih * g.w + iw];
            out = s / div;
        }
        y[idx] = out;
    }
}

/* First output index along one axis whose window covers input index i. */
__device__ __forceinline__ int first_cover(int i, int stride, int pad, int k)
{
    int t = i + pad - k + 1; /* smallest o with o*stride - pad + k > i */
    return t <= 0 ? 0 : (t + stride - 1) / stride;
}

__global__ void k_pool_bwd(int is_max, pool_geom g, size_t total, const float *__restrict__ x,
                           const float *__restrict__ dy, float *__restrict__ dx)
{
    const float div = (float)(g.r * g.s);
    GRID_LOOP(idx, total)
    {
        const int iw = (int)(idx % (size_t)g.w);
        const int ih = (int)((idx / (size_t)g.w) % (size_t)g.h);
        const size_t plane = idx / ((size_t)g.w * g.h);
        const float *xp = x + plane * g.h * g.w;
        const float *dyp = dy + plane * g.oh * g.ow;
        const int self = ih * g.w + iw;
        int oh_hi = (ih + g.pad) / g.stride, ow_hi = (iw + g.pad) / g.stride;
        if (oh_hi > g.oh - 1) oh_hi = g.oh - 1;
        if (ow_hi > g.ow - 1) ow_hi = g.ow - 1;
        float acc = 0.0f;
        for (int oh = first_cover(ih, g.stride, g.pad, g.r); oh <= oh_hi; oh++) {
            int h0, h1;
            window(oh, g.stride, g.pad, g.r, g.h, &h0, &h1);
            for (int ow = first_cover(iw, g.stride, g.pad, g.s); ow <= ow_hi; ow++) {
                const float d = dyp[oh * g.ow + ow];
                if (is_max) {
                    int w0, w1;
                    window(ow, g.stride, g.pad, g.s, g.w, &w0, &w1);
                    if (argmax_window(xp, g.w, h0, h1, w0, w1) == self) acc += d;
                } else {
                    acc += d / div;
                }
            }
        }
        dx[idx] += acc;
    }
}

/* The CPU backend's geometry checks, so both backends reject the same calls. */
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

static pool_geom to_pool_geom(const dlt_conv_geom *g)
{
    pool_geom p = { g->c, g->h, g->w, g->oh, g->ow, g->r, g->s, g->stride, g->pad };
    return p;
}

/* y (n, c, oh, ow) = pool(x (n, c, h, w)). */
extern "C" dlt_status dlt_cuda_pool2d_fwd(dlt_backend *be, dlt_pool_mode mode,
                                          const dlt_conv_geom *g, const float *x, float *y)
{
    DLT_CHECK(check_pool(mode, g, "pool2d_fwd"));
    const size_t total = (size_t)g->n * g->c * g->oh * g->ow;
    if (!total) return DLT_OK;
    CUDA_ENTER(be);
    k_pool_fwd<<<dlt_cuda_blocks(total), DLT_CUDA_THREADS, 0, dlt_cuda_of(be)->stream>>>(
        mode == DLT_POOL_MAX, to_pool_geom(g), total, x, y);
    KERNEL_CHECK("pool2d_fwd");
    return DLT_OK;
}

/* dx (n, c, h, w) += gradient of pool2d_fwd for dy (n, c, oh, ow); y is not
 * needed (the argmax is recomputed from x). */
extern "C" dlt_status dlt_cuda_pool2d_bwd(dlt_backend *be, dlt_pool_mode mode,
                                          const dlt_conv_geom *g, const float *x, const float *y,
                                          const float *dy, float *dx)
{
    DLT_CHECK(check_pool(mode, g, "pool2d_bwd"));
    const size_t total = (size_t)g->n * g->c * g->h * g->w;
    if (!total) return DLT_OK;
    CUDA_ENTER(be);
    k_pool_bwd<<<dlt_cuda_blocks(total), DLT_CUDA_THREADS, 0, dlt_cuda_of(be)->stream>>>(
        mode == DLT_POOL_MAX, to_pool_geom(g), total, x, dy, dx);
    KERNEL_CHECK("pool2d_bwd");
    return DLT_OK;
}
