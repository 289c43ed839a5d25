/* CPU 2-D convolution: im2col / col2im around sgemm, a few samples at a time.
 *
 * A convolution is a matrix product once the input patches are unrolled:
 * with P = oh*ow output pixels and CRS = c*r*s weights per filter,
 *   forward      Y    (K, nb*P)   = W (K, CRS)   x col (CRS, nb*P)
 *   bwd data     dcol (CRS, nb*P) = W^T          x dY  (K, nb*P)  -> col2im
 *   bwd filter   dW   (K, CRS)   += dY (K, nb*P) x col^T
 * where col holds the patches of a chunk of nb samples side by side.
 *
 * Chunk size: OpenBLAS needs a gemm n (or k) dimension of a few hundred to
 * run near peak, and one sample's P can be small (LeNet conv2: 196, ResNet's
 * last stage: 49), so nb = ceil(GEMM_MIN_COLS / P) samples are unrolled
 * together. Larger chunks measured slower, not faster: col then no longer
 * stays in L2 between im2col and the gemm (LeNet conv1: 0.36 ms per batch of
 * 64 at nb = 1..3, 0.53 ms at nb = 6). With several OpenBLAS threads the
 * target grows (gemm_cols) so that each thread gets enough columns.
 * COL_BUDGET caps col for large images.
 * With nb > 1 the gemm's (K, nb, P) result order differs from NCHW's
 * (nb, K, P), so Y is scattered (and dY gathered) through a second
 * workspace buffer, a cheap copy; with nb == 1 the gemm reads and writes the
 * tensors in place. The workspace is sized for the largest batch (g->n at
 * planning) and the widest target, so any later call fits.
 *
 * im2col/col2im dominate the non-gemm time on small images (rows of 10..28
 * floats), so they copy whole zero-padded planes once and then move short
 * rows with explicit vector blocks and no bounds tests (see copy_row).
 *
 * Threading: the gemm threads itself (OpenBLAS); im2col/col2im may use
 * OpenMP over (sample, channel) planes, which write disjoint memory, so
 * results never depend on the thread count (cpu_ops.h). */
#include <cblas.h>
#include <stddef.h>
#include <string.h>

#include "core/backend.h"
#include "core/cpu/cpu_ops.h"
#include "core/status.h"

/* GCC would turn the short row copies below back into memmove calls, which
 * cost more than the copy for a 14-float row. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("no-tree-loop-distribute-patterns")
#endif

/* Target gemm width (columns of col) of a chunk on one thread; with T
 * OpenBLAS threads WIDE_COLS * min(T, MAX_THREADS) (each thread needs its
 * own share of columns). COL_BUDGET caps the bytes of one chunk's col. */
#define GEMM_MIN_COLS 512
#define WIDE_COLS 1024
#define MAX_THREADS 4
#define COL_BUDGET ((size_t)8 << 20)

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

/* Target chunk width for `threads` OpenBLAS threads (measured: LeNet conv2
 * at 2 threads ran 84 GF/s with 512 columns, 101 GF/s with 2048). */
static size_t gemm_cols(int threads)
{
    if (threads <= 1) return GEMM_MIN_COLS;
    return (size_t)WIDE_COLS * (size_t)(threads < MAX_THREADS ? threads : MAX_THREADS);
}

/* Samples per chunk for a batch of n (>= 1 when n >= 1) and a target
 * width of `cols` columns. Monotone in n and cols, so the workspace planned
 * for the largest batch and the widest target always suffices. */
static int chunk_samples(const dlt_conv_geom *g, int n, size_t cols)
{
    const size_t P = (size_t)g->oh * g->ow;
    const size_t per = (size_t)g->c * g->r * g->s * P * sizeof(float);
    size_t nb = (cols + P - 1) / P;
    if (nb * per > COL_BUDGET) nb = COL_BUDGET / per;
    if (nb < 1) nb = 1;
    if (nb > (size_t)n) nb = (size_t)n;
    return (int)nb;
}

/* Chunk size for a call now, from the current OpenBLAS thread count. */
static int call_chunk(const dlt_conv_geom *g)
{
    return chunk_samples(g, g->n, gemm_cols(openblas_get_num_threads()));
}

/* Unaligned 8- and 4-float vectors (GCC/Clang vector extension; plain SSE/
 * AVX/NEON moves, no intrinsics), may_alias because they access float
 * arrays. Patch rows of small images are short (LeNet: 10..28 floats):
 * compiler-vectorised loops of unknown length spend most of their time in
 * scalar tails and loop set-up there, so the row helpers below move explicit
 * vector blocks instead. */
typedef float v8f __attribute__((vector_size(32), aligned(4), may_alias));
typedef float v4f __attribute__((vector_size(16), aligned(4), may_alias));

/* d(n) = s(n); the last 8-block may overlap the previous one (rewriting a
 * few floats with the same values). */
static inline void copy_row(float *restrict d, const float *restrict s, int n)
{
    int o = 0;
    for (; o + 8 <= n; o += 8) *(v8f *)(d + o) = *(const v8f *)(s + o);
    if (o == n) return;
    if (n >= 8) {
        *(v8f *)(d + n - 8) = *(const v8f *)(s + n - 8);
        return;
    }
    if (o + 4 <= n) {
        *(v4f *)(d + o) = *(const v4f *)(s + o);
        o += 4;
    }
    for (; o < n; o++) d[o] = s[o];
}

/* d(n) += s(n). For n >= 8 the last block may overlap the one before: both
 * are computed from d's old values before either is stored, so the overlap
 * gets s added once. */
static inline void add_row(float *restrict d, const float *restrict s, int n)
{
    if (n >= 8) {
        int o = 0;
        for (; o + 16 <= n; o += 8) *(v8f *)(d + o) += *(const v8f *)(s + o);
        const v8f a = *(const v8f *)(d + o) + *(const v8f *)(s + o);
        const v8f b = *(const v8f *)(d + n - 8) + *(const v8f *)(s + n - 8);
        *(v8f *)(d + o) = a;
        *(v8f *)(d + n - 8) = b;
        return;
    }
    int o = 0;
    if (n >= 4) {
        *(v4f *)d += *(const v4f *)s;
        o = 4;
    }
    for (; o < n; o++) d[o] += s[o];
}

/* Floats of the zero-padded copies of a chunk's input planes (0 without
 * padding, when im2col reads x directly). */
static size_t pad_floats(const dlt_conv_geom *g, int nb)
{
    if (g->pad == 0) return 0;
    return (size_t)nb * g->c * (size_t)(g->h + 2 * g->pad) * (size_t)(g->w + 2 * g->pad);
}

/* dst (h + 2 pad, w + 2 pad) = src (h, w) surrounded by zeros. */
static void pad_plane(const float *restrict src, int h, int w, int pad, float *restrict dst)
{
    const int wp = w + 2 * pad;
    memset(dst, 0, (size_t)pad * wp * sizeof *dst);
    for (int i = 0; i < h; i++) {
        float *restrict d = dst + (size_t)(i + pad) * wp;
        for (int o = 0; o < pad; o++) d[o] = 0.0f;
        copy_row(d + pad, src + (size_t)i * w, w);
        for (int o = pad + w; o < wp; o++) d[o] = 0.0f;
    }
    memset(dst + (size_t)(h + pad) * wp, 0, (size_t)pad * wp * sizeof *dst);
}

/* col (c*r*s, nb*P) = patches of x (nb, c, h, w). With padding, each input
 * plane is first copied into a zero-bordered plane of pbuf, so that every
 * patch row is a branch-free copy of ow floats (small images have short
 * rows, where per-element bounds tests used to cost as much as the gemm).
 * Parallel over (sample, channel) planes, which fill disjoint parts of col. */
static void im2col(const dlt_conv_geom *g, int nb, const float *x, float *col, float *pbuf)
{
    const int C = g->c, H = g->h, W = g->w, R = g->r, S = g->s, st = g->stride, pad = g->pad;
    const int OH = g->oh, OW = g->ow, Wp = W + 2 * pad, Hp = H + 2 * pad;
    const size_t P = (size_t)OH * OW, ld = (size_t)nb * P;
    const int planes = nb * C;
#pragma omp parallel for if (dlt_cpu_par((size_t)C * R * S * ld) && planes > 1) \
    schedule(static)
    for (int q = 0; q < planes; q++) {
        const int j = q / C, ci = q % C;
        const float *plane = x + (size_t)q * H * W;
        if (pad > 0) {
            float *pp = pbuf + (size_t)q * Hp * Wp;
            pad_plane(plane, H, W, pad, pp);
            plane = pp;
        }
        for (int ri = 0; ri < R; ri++)
            for (int si = 0; si < S; si++) {
                float *restrict dst = col + (size_t)((ci * R + ri) * S + si) * ld + j * P;
                const float *src = plane + (size_t)ri * Wp + si;
                for (int oh = 0; oh < OH; oh++, dst += OW) {
                    const float *restrict s = src + (size_t)oh * st * Wp;
                    if (st == 1)
                        copy_row(dst, s, OW);
                    else
                        for (int o = 0; o < OW; o++) dst[o] = s[(size_t)o * st];
                }
            }
    }
}

/* dx (nb, c, h, w) += the patches in col (c*r*s, nb*P) summed back onto the
 * input positions they were read from. With padding the sums go to a zeroed
 * padded plane of pbuf whose interior is then added to dx, so again no
 * bounds tests. Parallel over (sample, channel) planes: each plane is
 * written by one thread in one fixed order. */
static void col2im_add(const dlt_conv_geom *g, int nb, const float *col, float *dx,
                       float *pbuf)
{
    const int C = g->c, H = g->h, W = g->w, R = g->r, S = g->s, st = g->stride, pad = g->pad;
    const int OH = g->oh, OW = g->ow, Wp = W + 2 * pad, Hp = H + 2 * pad;
    const size_t P = (size_t)OH * OW, ld = (size_t)nb * P;
    const int planes = nb * C;
#pragma omp parallel for if (dlt_cpu_par((size_t)C * R * S * ld) && planes > 1) \
    schedule(static)
    for (int q = 0; q < planes; q++) {
        const int j = q / C, ci = q % C;
        float *acc = dx + (size_t)q * H * W;
        if (pad > 0) {
            acc = pbuf + (size_t)q * Hp * Wp;
            memset(acc, 0, (size_t)Hp * Wp * sizeof *acc);
        }
        for (int ri = 0; ri < R; ri++)
            for (int si = 0; si < S; si++) {
                const float *restrict src = col + (size_t)((ci * R + ri) * S + si) * ld + j * P;
                float *dst = acc + (size_t)ri * Wp + si;
                for (int oh = 0; oh < OH; oh++, src += OW) {
                    float *restrict d = dst + (size_t)oh * st * Wp;
                    if (st == 1)
                        add_row(d, src, OW);
                    else
                        for (int o = 0; o < OW; o++) d[(size_t)o * st] += src[o];
                }
            }
        if (pad > 0) {
            float *restrict out = dx + (size_t)q * H * W;
            for (int i = 0; i < H; i++) {
                const float *restrict a = acc + (size_t)(i + pad) * Wp + pad;
                add_row(out + (size_t)i * W, a, W);
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
    const int nb = chunk_samples(g, g->n, gemm_cols(MAX_THREADS));
    const size_t P = (size_t)g->oh * g->ow, crs = (size_t)g->c * g->r * g->s;
    return ((size_t)nb * P * (crs + (size_t)g->k) + pad_floats(g, nb)) * sizeof(float);
}

/* Sizes and workspace slices shared by the three convolution ops: chunks of
 * nb samples, P output pixels, crs = c r s patch length; col (crs, nb P),
 * tmp (K, nb P) and the padding buffer are slices of ws. */
typedef struct {
    int K, crs, nb;
    size_t P, in, out;
    float *col, *tmp, *pbuf;
} conv_plan;

static dlt_status conv_plan_make(const dlt_conv_geom *g, void *ws, const char *op, conv_plan *p)
{
    DLT_CHECK(check_geom(g, op));
    if (g->n > 0 && !ws) return DLT_ERR(DLT_ERR_INVALID, "%s: NULL workspace", op);
    p->K = g->k;
    p->crs = g->c * g->r * g->s;
    p->nb = call_chunk(g);
    p->P = (size_t)g->oh * g->ow;
    p->in = (size_t)g->c * g->h * g->w;
    p->out = (size_t)p->K * p->P;
    p->col = ws;
    p->tmp = p->col ? p->col + (size_t)p->nb * p->P * p->crs : NULL;
    p->pbuf = p->tmp ? p->tmp + (size_t)p->nb * p->P * p->K : NULL;
    return DLT_OK;
}

/* y (n, k, oh, ow) = conv(x (n, c, h, w), w (k, c, r, s)); ws from
 * conv2d_workspace for a geometry with at least g->n samples. */
dlt_status dlt_cpu_conv2d_fwd(dlt_backend *be, const dlt_conv_geom *g, const float *x,
                              const float *w, float *y, void *ws)
{
    conv_plan p;
    DLT_CHECK(conv_plan_make(g, ws, "conv2d_fwd", &p));
    const int K = p.K, crs = p.crs, nb = p.nb;
    const size_t P = p.P, in = p.in, out = p.out;
    float *col = p.col, *tmp = p.tmp, *pbuf = p.pbuf;
    for (int n0 = 0; n0 < g->n; n0 += nb) {
        const int m = g->n - n0 < nb ? g->n - n0 : nb;
        const int ncol = (int)(m * P);
        im2col(g, m, x + n0 * in, col, pbuf);
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
    conv_plan p;
    DLT_CHECK(conv_plan_make(g, ws, "conv2d_bwd_data", &p));
    const int K = p.K, crs = p.crs, nb = p.nb;
    const size_t P = p.P, in = p.in, out = p.out;
    float *col = p.col, *tmp = p.tmp, *pbuf = p.pbuf;
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
        col2im_add(g, m, col, dx + n0 * in, pbuf);
    }
    return DLT_OK;
}

/* dw (k, c, r, s) += correlation of x (n, c, h, w) with dy (n, k, oh, ow). */
dlt_status dlt_cpu_conv2d_bwd_filter(dlt_backend *be, const dlt_conv_geom *g, const float *x,
                                     const float *dy, float *dw, void *ws)
{
    conv_plan p;
    DLT_CHECK(conv_plan_make(g, ws, "conv2d_bwd_filter", &p));
    const int K = p.K, crs = p.crs, nb = p.nb;
    const size_t P = p.P, in = p.in, out = p.out;
    float *col = p.col, *tmp = p.tmp, *pbuf = p.pbuf;
    for (int n0 = 0; n0 < g->n; n0 += nb) {
        const int m = g->n - n0 < nb ? g->n - n0 : nb;
        const int ncol = (int)(m * P);
        im2col(g, m, x + n0 * in, col, pbuf);
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
