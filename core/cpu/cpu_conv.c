/* CPU 2-D convolution: batched im2col / col2im around one large sgemm.
 *
 * A convolution is a matrix product once the input patches are unrolled:
 * with P = oh*ow output pixels and CRS = c*r*s weights per filter,
 *   forward      Y   (K, nb*P)   = W (K, CRS)   x col (CRS, nb*P)
 *   bwd data     dcol (CRS, nb*P) = W^T          x dY  (K, nb*P)   -> col2im
 *   bwd filter   dW  (K, CRS)   += dY (K, nb*P) x col^T
 * where col holds the patches of nb samples side by side. Unrolling several
 * samples into one matrix, rather than one small gemm per sample, gives
 * OpenBLAS a long n (or k) dimension to block and thread over; for small
 * layers (LeNet: K = 16..32, P = 100..800) a per-sample gemm is too small to
 * run near peak. The price is that the gemm's (K, nb, P) result order differs
 * from NCHW's (nb, K, P), so Y is scattered (and dY gathered) through a
 * second workspace buffer: a cheap copy of one activation-sized block.
 *
 * nb is chosen so that col stays within COL_BUDGET bytes: large enough for
 * an efficient gemm, small enough to stay mostly in the last-level cache
 * between im2col and gemm, and bounded for big images where a whole batch's
 * patches would need gigabytes. The workspace size depends only on the
 * geometry (with g->n the largest batch), and a call with a smaller n uses a
 * smaller or equal nb, so the planned workspace always suffices.
 *
 * Threading: the gemm threads itself (OpenBLAS); im2col/col2im are
 * parallelised with OpenMP over weight rows / input channels, which write
 * disjoint memory, so results do not depend on the thread count. */
#include <cblas.h>
#include <stddef.h>
#include <string.h>

#include "core/backend.h"
#include "core/cpu/cpu_ops.h"
#include "core/status.h"

/* Upper bound on the bytes of the unrolled patch matrix of one chunk. */
#ifndef COL_BUDGET
#define COL_BUDGET ((size_t)4 << 20)
#endif

static dlt_status check_geom(const dlt_conv_geom *g, const char *op)
{
    if (!g) return DLT_ERR(DLT_ERR_INVALID, "%s: NULL geometry", op);
    if (g->n < 0 || g->c <= 0 || g->h <= 0 || g->w <= 0 || g->k <= 0 || g->r <= 0 ||
        g->s <= 0 || g->stride <= 0 || g->pad < 0)
        return DLT_ERR(DLT_ERR_SHAPE,
                       "%s: bad geometry n=%d c=%d h=%d w=%d k=%d r=%d s=%d stride=%d pad=%d", op,
                       g->n, g->c, g->h, g->w, g->k, g->r, g->s, g->stride, g->pad);
    int oh = (g->h + 2 * g->pad - g->r) / g->stride + 1;
    int ow = (g->w + 2 * g->pad - g->s) / g->stride + 1;
    if (g->h + 2 * g->pad < g->r || g->w + 2 * g->pad < g->s || oh != g->oh || ow != g->ow)
        return DLT_ERR(DLT_ERR_SHAPE,
                       "%s: output %dx%d does not match input %dx%d, kernel %dx%d, stride %d, "
                       "pad %d (call dlt_conv_geom_finish)",
                       op, g->oh, g->ow, g->h, g->w, g->r, g->s, g->stride, g->pad);
    return DLT_OK;
}

/* Samples per chunk for a batch of n (>= 1 when n >= 1). */
static int chunk_samples(const dlt_conv_geom *g, int n)
{
    size_t per = (size_t)g->c * g->r * g->s * g->oh * g->ow * sizeof(float);
    size_t nb = per ? COL_BUDGET / per : (size_t)n;
    if (nb < 1) nb = 1;
    if (nb > (size_t)n) nb = (size_t)n;
    return (int)nb;
}

/* Range [*lo, *hi) of output columns ow whose input column
 * ow*stride - pad + off lies in [0, w). */
static void valid_range(int off, int w, int stride, int ow, int *lo, int *hi)
{
    int a = off < 0 ? (-off + stride - 1) / stride : 0;
    int b = w - 1 - off < 0 ? 0 : (w - 1 - off) / stride + 1;
    if (b > ow) b = ow;
    if (a > b) a = b;
    *lo = a;
    *hi = b;
}

/* col (c*r*s, nb*P) = patches of x (nb, c, h, w). Zero where the window
 * reads padding. */
static void im2col(const dlt_conv_geom *g, int nb, const float *x, float *col)
{
    const int C = g->c, H = g->h, W = g->w, R = g->r, S = g->s, st = g->stride, pad = g->pad;
    const int OH = g->oh, OW = g->ow;
    const size_t P = (size_t)OH * OW, ld = (size_t)nb * P;
    const int rows = C * R * S;
#pragma omp parallel for if ((size_t)rows * ld > 4 * DLT_CPU_PAR_MIN) schedule(static)
    for (int row = 0; row < rows; row++) {
        const int ci = row / (R * S), ri = (row / S) % R, si = row % S;
        int lo, hi;
        valid_range(si - pad, W, st, OW, &lo, &hi);
        for (int j = 0; j < nb; j++) {
            const float *xc = x + ((size_t)j * C + ci) * H * W;
            float *dst = col + row * ld + j * P;
            for (int oh = 0; oh < OH; oh++, dst += OW) {
                const int ih = oh * st - pad + ri;
                if (ih < 0 || ih >= H) {
                    memset(dst, 0, (size_t)OW * sizeof *dst);
                    continue;
                }
                const float *src = xc + (size_t)ih * W + (si - pad);
                for (int o = 0; o < lo; o++) dst[o] = 0.0f;
                if (st == 1)
                    for (int o = lo; o < hi; o++) dst[o] = src[o];
                else
                    for (int o = lo; o < hi; o++) dst[o] = src[(ptrdiff_t)o * st];
                for (int o = hi; o < OW; o++) dst[o] = 0.0f;
            }
        }
    }
}

/* dx (nb, c, h, w) += the patches in col (c*r*s, nb*P) summed back onto the
 * input positions they were read from. Parallel over input channels: all
 * rows of one channel write only that channel's part of dx. */
static void col2im_add(const dlt_conv_geom *g, int nb, const float *col, float *dx)
{
    const int C = g->c, H = g->h, W = g->w, R = g->r, S = g->s, st = g->stride, pad = g->pad;
    const int OH = g->oh, OW = g->ow;
    const size_t P = (size_t)OH * OW, ld = (size_t)nb * P;
#pragma omp parallel for if ((size_t)C * R * S * ld > 4 * DLT_CPU_PAR_MIN && C > 1) \
    schedule(static)
    for (int ci = 0; ci < C; ci++) {
        for (int ri = 0; ri < R; ri++) {
            for (int si = 0; si < S; si++) {
                const int row = (ci * R + ri) * S + si;
                int lo, hi;
                valid_range(si - pad, W, st, OW, &lo, &hi);
                for (int j = 0; j < nb; j++) {
                    float *xc = dx + ((size_t)j * C + ci) * H * W;
                    const float *src = col + row * ld + j * P;
                    for (int oh = 0; oh < OH; oh++, src += OW) {
                        const int ih = oh * st - pad + ri;
                        if (ih < 0 || ih >= H) continue;
                        float *dst = xc + (size_t)ih * W + (si - pad);
                        if (st == 1)
                            for (int o = lo; o < hi; o++) dst[o] += src[o];
                        else
                            for (int o = lo; o < hi; o++) dst[(ptrdiff_t)o * st] += src[o];
                    }
                }
            }
        }
    }
}

/* y (nb, K, P) = t (K, nb*P): the gemm's channel-major result into NCHW. */
static void scatter(int nb, int K, size_t P, const float *t, float *y)
{
    for (int j = 0; j < nb; j++)
        for (int k = 0; k < K; k++)
            memcpy(y + ((size_t)j * K + k) * P, t + ((size_t)k * nb + j) * P, P * sizeof *y);
}

/* t (K, nb*P) = y (nb, K, P): NCHW gradients into the gemm's order. */
static void gather(int nb, int K, size_t P, const float *y, float *t)
{
    for (int k = 0; k < K; k++)
        for (int j = 0; j < nb; j++)
            memcpy(t + ((size_t)k * nb + j) * P, y + ((size_t)j * K + k) * P, P * sizeof *t);
}

/* Workspace bytes for conv2d_fwd / bwd_data / bwd_filter with geometry g
 * (g->n the largest batch): the patch matrix plus one reorder buffer of a
 * chunk. 0 for an invalid geometry (the op calls then report it). */
size_t dlt_cpu_conv2d_workspace(dlt_backend *be, const dlt_conv_geom *g)
{
    if (check_geom(g, "conv2d_workspace") != DLT_OK) return 0;
    const int nb = chunk_samples(g, g->n);
    const size_t P = (size_t)g->oh * g->ow, crs = (size_t)g->c * g->r * g->s;
    return (size_t)nb * P * (crs + (size_t)g->k) * sizeof(float);
}

/* y (n, k, oh, ow) = conv(x (n, c, h, w), w (k, c, r, s)); ws from
 * conv2d_workspace for a geometry with at least g->n samples. */
dlt_status dlt_cpu_conv2d_fwd(dlt_backend *be, const dlt_conv_geom *g, const float *x,
                              const float *w, float *y, void *ws)
{
    DLT_CHECK(check_geom(g, "conv2d_fwd"));
    if (g->n == 0) return DLT_OK;
    if (!ws) return DLT_ERR(DLT_ERR_INVALID, "conv2d_fwd: NULL workspace");
    const int K = g->k, crs = g->c * g->r * g->s, nb = chunk_samples(g, g->n);
    const size_t P = (size_t)g->oh * g->ow, in = (size_t)g->c * g->h * g->w, out = K * P;
    float *col = ws, *tmp = col + (size_t)nb * P * crs;
    for (int n0 = 0; n0 < g->n; n0 += nb) {
        const int m = g->n - n0 < nb ? g->n - n0 : nb;
        const int ncol = (int)(m * P);
        im2col(g, m, x + n0 * in, col);
        /* One sample's (K, P) result already is NCHW: write it in place. */
        float *dst = m == 1 ? y + n0 * out : tmp;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, K, ncol, crs, 1.0f, w, crs, col,
                    ncol, 0.0f, dst, ncol);
        if (m > 1) scatter(m, K, P, tmp, y + n0 * out);
    }
    return DLT_OK;
}

/* dx (n, c, h, w) += conv_transpose(dy (n, k, oh, ow), w (k, c, r, s)). */
dlt_status dlt_cpu_conv2d_bwd_data(dlt_backend *be, const dlt_conv_geom *g, const float *dy,
                                   const float *w, float *dx, void *ws)
{
    DLT_CHECK(check_geom(g, "conv2d_bwd_data"));
    if (g->n == 0) return DLT_OK;
    if (!ws) return DLT_ERR(DLT_ERR_INVALID, "conv2d_bwd_data: NULL workspace");
    const int K = g->k, crs = g->c * g->r * g->s, nb = chunk_samples(g, g->n);
    const size_t P = (size_t)g->oh * g->ow, in = (size_t)g->c * g->h * g->w, out = K * P;
    float *col = ws, *tmp = col + (size_t)nb * P * crs;
    for (int n0 = 0; n0 < g->n; n0 += nb) {
        const int m = g->n - n0 < nb ? g->n - n0 : nb;
        const int ncol = (int)(m * P);
        const float *src = dy + n0 * out;
        if (m > 1) {
            gather(m, K, P, src, tmp);
            src = tmp;
        }
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, crs, ncol, K, 1.0f, w, crs, src,
                    ncol, 0.0f, col, ncol);
        col2im_add(g, m, col, dx + n0 * in);
    }
    return DLT_OK;
}

/* dw (k, c, r, s) += correlation of x (n, c, h, w) with dy (n, k, oh, ow). */
dlt_status dlt_cpu_conv2d_bwd_filter(dlt_backend *be, const dlt_conv_geom *g, const float *x,
                                     const float *dy, float *dw, void *ws)
{
    DLT_CHECK(check_geom(g, "conv2d_bwd_filter"));
    if (g->n == 0) return DLT_OK;
    if (!ws) return DLT_ERR(DLT_ERR_INVALID, "conv2d_bwd_filter: NULL workspace");
    const int K = g->k, crs = g->c * g->r * g->s, nb = chunk_samples(g, g->n);
    const size_t P = (size_t)g->oh * g->ow, in = (size_t)g->c * g->h * g->w, out = K * P;
    float *col = ws, *tmp = col + (size_t)nb * P * crs;
    for (int n0 = 0; n0 < g->n; n0 += nb) {
        const int m = g->n - n0 < nb ? g->n - n0 : nb;
        const int ncol = (int)(m * P);
        im2col(g, m, x + n0 * in, col);
        const float *src = dy + n0 * out;
        if (m > 1) {
            gather(m, K, P, src, tmp);
            src = tmp;
        }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, K, crs, ncol, 1.0f, src, ncol, col,
                    ncol, 1.0f, dw, crs);
    }
    return DLT_OK;
}
