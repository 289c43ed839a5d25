/* Check suite for the CPU backend's ops (core/cpu/).
 *
 * Every op is compared with a plain reference written here in double
 * precision, as directly as the definition reads (triple-loop gemm, 7-loop
 * convolution, per-window pooling, two-pass batch norm, finite differences
 * for derivatives), on random inputs of several shapes, including sizes large
 * enough to take the OpenMP and multi-chunk paths. Every *_bwd op is started
 * from a non-zero gradient buffer to check that it accumulates (+=). The CPU
 * backend's memory is host memory, so plain malloc'd arrays are passed. */
#include <cblas.h>
#include <check.h>
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/backend.h"
#include "core/rng.h"
#include "tests/unit/testutil.h"

static dlt_backend *be;

static void setup(void) { ck_assert_int_eq(dlt_backend_cpu_create(&be), DLT_OK); }
static void teardown(void) { be->destroy(be); }

static float *rnd(size_t n, uint64_t seed)
{
    float *p = malloc((n ? n : 1) * sizeof *p);
    ck_assert(p != NULL);
    tu_fill_uniform(p, n, seed, -1.0f, 1.0f);
    return p;
}

static double *zd(size_t n)
{
    double *p = calloc(n ? n : 1, sizeof *p);
    ck_assert(p != NULL);
    return p;
}

static float *dup(const float *a, size_t n)
{
    float *p = malloc((n ? n : 1) * sizeof *p);
    ck_assert(p != NULL);
    memcpy(p, a, n * sizeof *p);
    return p;
}

/* Asserts max |got - (base + ref)| / max(1, |base + ref|) <= tol; base may be NULL.
 * Tolerances allow for float32 rounding of long sums (up to ~1e-7 per term), far
 * below the O(0.1) errors of an indexing bug. */
static void expect(const float *got, const float *base, const double *ref, size_t n, double tol,
                   const char *what)
{
    double m = 0;
    size_t at = 0;
    for (size_t i = 0; i < n; i++) {
        double want = ref[i] + (base ? base[i] : 0.0);
        double e = fabs(got[i] - want) / fmax(1.0, fabs(want));
        if (!(e <= m)) m = e, at = i;
    }
    ck_assert_msg(m <= tol, "%s: max error %g at %zu exceeds %g", what, m, at, tol);
}

/* ---------------- memory and table ---------------- */

START_TEST(test_memory)
{
    static const size_t sizes[] = { 0, 1, 3, 64, 1000, 1 << 20 };
    for (size_t t = 0; t < sizeof sizes / sizeof sizes[0]; t++) {
        unsigned char *p = NULL;
        ck_assert_int_eq(be->alloc(be, sizes[t], (void **)&p), DLT_OK);
        ck_assert(p != NULL);
        ck_assert_int_eq((uintptr_t)p % 64, 0);
        for (size_t i = 0; i < sizes[t]; i++) ck_assert_int_eq(p[i], 0);
        memset(p, 0xAB, sizes[t]);
        be->free(be, p);
    }
    float h[100], back[100], *d1, *d2;
    for (int i = 0; i < 100; i++) h[i] = (float)i * 0.5f;
    ck_assert_int_eq(be->alloc(be, sizeof h, (void **)&d1), DLT_OK);
    ck_assert_int_eq(be->alloc(be, sizeof h, (void **)&d2), DLT_OK);
    ck_assert_int_eq(be->upload(be, d1, h, sizeof h), DLT_OK);
    ck_assert_int_eq(be->copy(be, d2, d1, sizeof h), DLT_OK);
    ck_assert_int_eq(be->fill(be, d1, 100, -2.0f), DLT_OK);
    ck_assert_int_eq(be->download(be, back, d2, sizeof h), DLT_OK);
    ck_assert_int_eq(be->sync(be), DLT_OK);
    ck_assert(memcmp(back, h, sizeof h) == 0);
    for (int i = 0; i < 100; i++) ck_assert(d1[i] == -2.0f);
    be->free(be, d1);
    be->free(be, d2);
    ck_assert_str_eq(be->name, "cpu");
    ck_assert_int_eq(be->abi, DLT_BACKEND_ABI);
    static const char *const all[] = {
        "gemm", "axpy", "scale", "sumsq", "bias_add", "bias_grad", "add", "conv2d_workspace",
        "conv2d_fwd", "conv2d_bwd_data", "conv2d_bwd_filter", "pool2d_fwd", "pool2d_bwd",
        "bnorm_fwd_train", "bnorm_fwd_eval", "bnorm_bwd", "act_fwd", "act_bwd", "dropout_fwd",
        "mul_acc", "softmax_xent_fwd", "softmax_xent_bwd", "mse_fwd", "mse_bwd", "onehot",
        "opt_update", NULL
    };
    ck_assert_ptr_null(dlt_backend_missing_op(be, all));
}
END_TEST

/* ---------------- BLAS-like ---------------- */

START_TEST(test_gemm)
{
    static const int shapes[][3] = { { 1, 1, 1 }, { 7, 5, 3 }, { 33, 17, 29 }, { 64, 130, 75 } };
    for (int sh = 0; sh < 4; sh++)
        for (int ta = 0; ta < 2; ta++)
            for (int tb = 0; tb < 2; tb++)
                for (int bz = 0; bz < 2; bz++) {
                    const int m = shapes[sh][0], n = shapes[sh][1], k = shapes[sh][2];
                    const int lda = (ta ? m : k) + 3, ldb = (tb ? k : n) + 2, ldc = n + 5;
                    const float alpha = 0.7f, beta = bz ? 0.0f : -0.3f;
                    float *a = rnd((size_t)(ta ? k : m) * lda, 1 + sh);
                    float *b = rnd((size_t)(tb ? n : k) * ldb, 11 + sh);
                    float *c = rnd((size_t)m * ldc, 21 + sh);
                    if (bz)
                        for (int i = 0; i < m * ldc; i++) c[i] = NAN; /* beta 0 must overwrite */
                    float *c0 = dup(c, (size_t)m * ldc);
                    double *ref = zd((size_t)m * ldc);
                    for (int i = 0; i < m; i++)
                        for (int j = 0; j < ldc; j++) {
                            if (j >= n) { /* padding columns must stay untouched */
                                ref[i * ldc + j] = c0[i * ldc + j];
                                continue;
                            }
                            double s = 0;
                            for (int p = 0; p < k; p++)
                                s += (double)(ta ? a[p * lda + i] : a[i * lda + p]) *
                                     (tb ? b[j * ldb + p] : b[p * ldb + j]);
                            ref[i * ldc + j] = alpha * s + (bz ? 0.0 : beta * c0[i * ldc + j]);
                        }
                    ck_assert_int_eq(be->gemm(be, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta,
                                              c, ldc), DLT_OK);
                    for (int i = 0; i < m; i++)
                        for (int j = n; j < ldc; j++)
                            ck_assert(memcmp(&c[i * ldc + j], &c0[i * ldc + j], 4) == 0);
                    for (int i = 0; i < m; i++) expect(c + i * ldc, NULL, ref + i * ldc, n, 2e-5, "gemm");
                    free(a), free(b), free(c), free(c0), free(ref);
                }
    float a[4] = { 1, 2, 3, 4 }, c[4] = { 1, 1, 1, 1 };
    ck_assert_int_eq(be->gemm(be, 0, 0, 2, 2, 2, 1, a, 1, a, 2, 0, c, 2), DLT_ERR_INVALID);
    ck_assert_int_eq(be->gemm(be, 1, 0, 2, 2, 2, 1, a, 2, a, 2, 0, c, 1), DLT_ERR_INVALID);
    ck_assert_int_eq(be->gemm(be, 0, 0, 2, 2, 0, 1, a, 1, a, 2, 2.0f, c, 2), DLT_OK); /* k = 0 */
    for (int i = 0; i < 4; i++) ck_assert(c[i] == 2.0f);
}
END_TEST

START_TEST(test_elementwise)
{
    static const size_t sizes[] = { 1, 17, 1000, 100003 };
    for (int t = 0; t < 4; t++) {
        const size_t n = sizes[t];
        float *x = rnd(n, 5 + t), *y = rnd(n, 50 + t), *y0 = dup(y, n), *o = rnd(n, 9);
        double *ref = zd(n);
        for (size_t i = 0; i < n; i++) ref[i] = 0.25 * x[i];
        ck_assert_int_eq(be->axpy(be, n, 0.25f, x, y), DLT_OK);
        expect(y, y0, ref, n, 1e-6, "axpy");
        memcpy(y, y0, n * 4);
        for (size_t i = 0; i < n; i++) ref[i] = -3.0 * y0[i];
        ck_assert_int_eq(be->scale(be, n, -3.0f, y), DLT_OK);
        expect(y, NULL, ref, n, 1e-6, "scale");
        for (size_t i = 0; i < n; i++) ref[i] = (double)x[i] + y0[i];
        ck_assert_int_eq(be->add(be, n, x, y0, o), DLT_OK);
        expect(o, NULL, ref, n, 1e-6, "add");
        memcpy(y, y0, n * 4);
        for (size_t i = 0; i < n; i++) ref[i] = (double)x[i] * o[i];
        ck_assert_int_eq(be->mul_acc(be, n, x, o, y), DLT_OK);
        expect(y, y0, ref, n, 1e-6, "mul_acc");
        ck_assert_int_eq(be->fill(be, y, n, 0.5f), DLT_OK);
        for (size_t i = 0; i < n; i++) ck_assert(y[i] == 0.5f);
        double s = 0, got = -1;
        for (size_t i = 0; i < n; i++) s += (double)x[i] * x[i];
        ck_assert_int_eq(be->sumsq(be, n, x, &got), DLT_OK);
        ck_assert_msg(fabs(got - s) <= 1e-12 * s, "sumsq %.17g vs %.17g", got, s);
        x[n / 2] = INFINITY;
        ck_assert_int_eq(be->sumsq(be, n, x, &got), DLT_OK);
        ck_assert(!isfinite(got));
        free(x), free(y), free(y0), free(o), free(ref);
    }
}
END_TEST

START_TEST(test_bias)
{
    static const int shapes[][3] = { { 1, 1, 1 }, { 3, 5, 7 }, { 64, 16, 196 } };
    for (int t = 0; t < 3; t++) {
        const int n = shapes[t][0], c = shapes[t][1], hw = shapes[t][2];
        const size_t tot = (size_t)n * c * hw;
        float *y = rnd(tot, 3), *y0 = dup(y, tot), *b = rnd(c, 4), *db = rnd(c, 6),
              *db0 = dup(db, c);
        double *ref = zd(tot), *rb = zd(c);
        for (int i = 0; i < n; i++)
            for (int ch = 0; ch < c; ch++)
                for (int p = 0; p < hw; p++) {
                    ref[((size_t)i * c + ch) * hw + p] = b[ch];
                    rb[ch] += y0[((size_t)i * c + ch) * hw + p];
                }
        ck_assert_int_eq(be->bias_add(be, n, c, hw, b, y), DLT_OK);
        expect(y, y0, ref, tot, 1e-6, "bias_add");
        ck_assert_int_eq(be->bias_grad(be, n, c, hw, y0, db), DLT_OK);
        expect(db, db0, rb, c, 1e-5, "bias_grad");
        free(y), free(y0), free(b), free(db), free(db0), free(ref), free(rb);
    }
}
END_TEST

/* linear_fwd / linear_bwd_w against a double reference and against the
 * gemm + bias_add they replace; with and without a bias (y starts NaN: the
 * forward must overwrite), gradients accumulating over two calls. Shapes
 * cover one row, in = 0, more than one column block (out > 256) and more
 * than one row chunk (rows > 64) of the column sum. */
START_TEST(test_linear)
{
    static const int shapes[][3] = { { 1, 1, 1 },    { 7, 5, 3 },   { 33, 17, 29 },
                                     { 130, 64, 300 }, { 5, 0, 4 }, { 200, 3, 513 } };
    for (int sh = 0; sh < 6; sh++)
        for (int bias = 0; bias < 2; bias++) {
            const int rows = shapes[sh][0], in = shapes[sh][1], out = shapes[sh][2];
            const size_t nx = (size_t)rows * in, nw = (size_t)out * in, ny = (size_t)rows * out;
            float *x = rnd(nx, 31 + sh), *w = rnd(nw, 41 + sh), *b = rnd(out, 51 + sh);
            float *dy = rnd(ny, 61 + sh), *dw = rnd(nw, 71 + sh), *db = rnd(out, 81 + sh);
            float *dw0 = dup(dw, nw), *db0 = dup(db, out), *y = malloc(ny * sizeof *y);
            float *y2 = malloc(ny * sizeof *y2);
            ck_assert(y && y2);
            for (size_t i = 0; i < ny; i++) y[i] = NAN;
            double *ry = zd(ny), *rw = zd(nw), *rb = zd(out);
            for (int r = 0; r < rows; r++)
                for (int o = 0; o < out; o++) {
                    double s = bias ? b[o] : 0.0;
                    for (int i = 0; i < in; i++)
                        s += (double)x[(size_t)r * in + i] * w[(size_t)o * in + i];
                    ry[(size_t)r * out + o] = s;
                    const double g = dy[(size_t)r * out + o];
                    rb[o] += 2.0 * g; /* two calls */
                    for (int i = 0; i < in; i++)
                        rw[(size_t)o * in + i] += 2.0 * g * x[(size_t)r * in + i];
                }
            ck_assert_int_eq(be->linear_fwd(be, rows, in, out, x, w, bias ? b : NULL, y), DLT_OK);
            expect(y, NULL, ry, ny, 2e-5, "linear_fwd");
            /* the two-op path it replaces */
            ck_assert_int_eq(be->gemm(be, 0, 1, rows, out, in, 1.0f, x, in > 0 ? in : 1, w,
                                      in > 0 ? in : 1, 0.0f, y2, out), DLT_OK);
            if (bias) ck_assert_int_eq(be->bias_add(be, rows, out, 1, b, y2), DLT_OK);
            ck_assert_float_le(tu_max_rel_err(y, y2, ny), 1e-6f);
            for (int rep = 0; rep < 2; rep++)
                ck_assert_int_eq(be->linear_bwd_w(be, rows, in, out, x, dy, dw,
                                                  bias ? db : NULL), DLT_OK);
            expect(dw, dw0, rw, nw, 2e-5, "linear_bwd_w dw");
            if (bias) expect(db, db0, rb, out, 2e-5, "linear_bwd_w db");
            else ck_assert(memcmp(db, db0, (size_t)out * sizeof *db) == 0);
            free(x), free(w), free(b), free(dy), free(dw), free(db), free(dw0), free(db0);
            free(y), free(y2), free(ry), free(rw), free(rb);
        }
    float t[4] = { 0 };
    ck_assert_int_eq(be->linear_fwd(be, -1, 2, 2, t, t, NULL, t), DLT_ERR_INVALID);
    ck_assert_int_eq(be->linear_bwd_w(be, 2, -2, 2, t, t, t, t), DLT_ERR_INVALID);
    ck_assert_int_eq(be->linear_fwd(be, 0, 2, 2, t, t, t, t), DLT_OK); /* no rows: nothing */
}
END_TEST

/* ---------------- convolution ---------------- */

#define X4(g, i0, i1, i2, i3) ((((size_t)(i0) * (g)->c + (i1)) * (g)->h + (i2)) * (g)->w + (i3))
#define W4(g, i0, i1, i2, i3) ((((size_t)(i0) * (g)->c + (i1)) * (g)->r + (i2)) * (g)->s + (i3))
#define Y4(g, i0, i1, i2, i3) ((((size_t)(i0) * (g)->k + (i1)) * (g)->oh + (i2)) * (g)->ow + (i3))

/* Direct convolution: y = conv(x, w), dx = dL/dx, dw = dL/dw for dL/dy = dy. */
static void ref_conv(const dlt_conv_geom *g, const float *x, const float *w, const float *dy,
                     double *y, double *dx, double *dw)
{
    for (int n = 0; n < g->n; n++)
        for (int k = 0; k < g->k; k++)
            for (int oh = 0; oh < g->oh; oh++)
                for (int ow = 0; ow < g->ow; ow++)
                    for (int c = 0; c < g->c; c++)
                        for (int r = 0; r < g->r; r++)
                            for (int s = 0; s < g->s; s++) {
                                int ih = oh * g->stride - g->pad + r;
                                int iw = ow * g->stride - g->pad + s;
                                if (ih < 0 || ih >= g->h || iw < 0 || iw >= g->w) continue;
                                size_t xi = X4(g, n, c, ih, iw), wi = W4(g, k, c, r, s),
                                       yi = Y4(g, n, k, oh, ow);
                                y[yi] += (double)x[xi] * w[wi];
                                dx[xi] += (double)dy[yi] * w[wi];
                                dw[wi] += (double)dy[yi] * x[xi];
                            }
}

START_TEST(test_conv)
{
    /* n c h w k r s stride pad; the last two take several im2col chunks */
    static const int geo[][9] = {
        { 2, 3, 7, 9, 4, 3, 3, 1, 1 },   { 3, 2, 9, 8, 5, 3, 5, 2, 2 },
        { 5, 1, 12, 10, 3, 5, 5, 1, 0 }, { 1, 4, 6, 6, 2, 1, 1, 1, 0 },
        { 2, 3, 11, 7, 4, 4, 2, 3, 1 },  { 2, 2, 5, 3, 3, 3, 3, 1, 1 },
        { 1, 2, 6, 16, 3, 3, 3, 1, 1 },  { 13, 3, 10, 10, 4, 3, 3, 1, 1 },
        { 7, 16, 28, 28, 8, 5, 5, 1, 2 },
    };
    for (int t = 0; t < 9; t++) {
        dlt_conv_geom g = { .n = geo[t][0], .c = geo[t][1], .h = geo[t][2], .w = geo[t][3],
                            .k = geo[t][4], .r = geo[t][5], .s = geo[t][6],
                            .stride = geo[t][7], .pad = geo[t][8] };
        dlt_conv_geom_finish(&g);
        const size_t nx = (size_t)g.n * g.c * g.h * g.w, nw = (size_t)g.k * g.c * g.r * g.s,
                     ny = (size_t)g.n * g.k * g.oh * g.ow;
        float *x = rnd(nx, 100 + t), *w = rnd(nw, 200 + t), *dy = rnd(ny, 300 + t);
        float *y = rnd(ny, 1), *dx = rnd(nx, 2), *dx0 = dup(dx, nx), *dw = rnd(nw, 3),
              *dw0 = dup(dw, nw);
        double *ry = zd(ny), *rdx = zd(nx), *rdw = zd(nw);
        ref_conv(&g, x, w, dy, ry, rdx, rdw);
        size_t wsb = be->conv2d_workspace(be, &g);
        void *ws = NULL;
        ck_assert_int_eq(be->alloc(be, wsb, &ws), DLT_OK);
        ck_assert_int_eq(be->conv2d_fwd(be, &g, x, w, y, ws), DLT_OK);
        expect(y, NULL, ry, ny, 5e-5, "conv2d_fwd");
        ck_assert_int_eq(be->conv2d_bwd_data(be, &g, dy, w, dx, ws), DLT_OK);
        expect(dx, dx0, rdx, nx, 5e-5, "conv2d_bwd_data");
        ck_assert_int_eq(be->conv2d_bwd_filter(be, &g, x, dy, dw, ws), DLT_OK);
        expect(dw, dw0, rdw, nw, 2e-4, "conv2d_bwd_filter");
        /* a smaller batch than planned must fit the same workspace */
        dlt_conv_geom g1 = g;
        g1.n = g.n - 1;
        ck_assert_int_eq(be->conv2d_fwd(be, &g1, x, w, y, ws), DLT_OK);
        expect(y, NULL, ry, ny / g.n * g1.n, 5e-5, "conv2d_fwd smaller n");
        be->free(be, ws);
        free(x), free(w), free(dy), free(y), free(dx), free(dx0), free(dw), free(dw0);
        free(ry), free(rdx), free(rdw);
    }
    dlt_conv_geom bad = { .n = 1, .c = 1, .h = 4, .w = 4, .k = 1, .r = 3, .s = 3, .stride = 1,
                          .pad = 0, .oh = 3, .ow = 2 };
    float buf[64] = { 0 };
    ck_assert_int_eq(be->conv2d_fwd(be, &bad, buf, buf, buf, buf), DLT_ERR_SHAPE);
}
END_TEST

/* ---------------- pooling ---------------- */

START_TEST(test_pool)
{
    /* n c h w r s stride pad */
    static const int geo[][8] = { { 2, 3, 8, 8, 2, 2, 2, 0 },  { 2, 2, 7, 9, 3, 3, 2, 1 },
                                  { 1, 3, 10, 6, 3, 2, 1, 1 }, { 64, 16, 28, 28, 2, 2, 2, 0 },
                                  { 2, 2, 9, 35, 2, 2, 2, 0 } };
    for (int t = 0; t < 5; t++)
        for (int mode = 0; mode < 2; mode++) {
            dlt_conv_geom g = { .n = geo[t][0], .c = geo[t][1], .h = geo[t][2], .w = geo[t][3],
                                .k = geo[t][1], .r = geo[t][4], .s = geo[t][5],
                                .stride = geo[t][6], .pad = geo[t][7] };
            dlt_conv_geom_finish(&g);
            const size_t nx = (size_t)g.n * g.c * g.h * g.w, ny = (size_t)g.n * g.c * g.oh * g.ow;
            float *x = rnd(nx, 7 + t), *dy = rnd(ny, 8), *y = rnd(ny, 9), *dx = rnd(nx, 10),
                  *dx0 = dup(dx, nx);
            for (size_t i = 0; i < nx; i++) x[i] = floorf(x[i] * 3.0f); /* many ties */
            double *ry = zd(ny), *rdx = zd(nx);
            for (size_t p = 0; p < (size_t)g.n * g.c; p++)
                for (int oh = 0; oh < g.oh; oh++)
                    for (int ow = 0; ow < g.ow; ow++) {
                        double best = -INFINITY, sum = 0;
                        long at = -1;
                        for (int r = 0; r < g.r; r++)
                            for (int s = 0; s < g.s; s++) {
                                int ih = oh * g.stride - g.pad + r, iw = ow * g.stride - g.pad + s;
                                if (ih < 0 || ih >= g.h || iw < 0 || iw >= g.w) continue;
                                long xi = (long)(p * g.h + ih) * g.w + iw;
                                sum += x[xi];
                                if (at < 0 || x[xi] > best) best = x[xi], at = xi;
                            }
                        size_t yi = (p * g.oh + oh) * g.ow + ow;
                        ry[yi] = mode == DLT_POOL_MAX ? best : sum / (g.r * g.s);
                        for (int r = 0; r < g.r; r++)
                            for (int s = 0; s < g.s; s++) {
                                int ih = oh * g.stride - g.pad + r, iw = ow * g.stride - g.pad + s;
                                if (ih < 0 || ih >= g.h || iw < 0 || iw >= g.w) continue;
                                long xi = (long)(p * g.h + ih) * g.w + iw;
                                if (mode == DLT_POOL_AVG) rdx[xi] += dy[yi] / (g.r * g.s);
                                else if (xi == at) rdx[xi] += dy[yi];
                            }
                    }
            ck_assert_int_eq(be->pool2d_fwd(be, mode, &g, x, y), DLT_OK);
            expect(y, NULL, ry, ny, 1e-6, mode ? "avgpool fwd" : "maxpool fwd");
            ck_assert_int_eq(be->pool2d_bwd(be, mode, &g, x, y, dy, dx), DLT_OK);
            expect(dx, dx0, rdx, nx, 1e-6, mode ? "avgpool bwd" : "maxpool bwd");
            free(x), free(dy), free(y), free(dx), free(dx0), free(ry), free(rdx);
        }
    /* NaN wins the max and takes the gradient, on the 2x2 and the generic path */
    for (int t = 0; t < 2; t++) {
        dlt_conv_geom g = { .n = 1, .c = 1, .h = 2 + t, .w = 2 + t, .k = 1, .r = 2 + t,
                            .s = 2 + t, .stride = 2, .pad = 0 };
        dlt_conv_geom_finish(&g);
        float x[9] = { 1, NAN, 3, NAN, 5, 0, 0, 0, 0 }, y = 0, dy = 2, dx[9] = { 0 };
        ck_assert_int_eq(be->pool2d_fwd(be, DLT_POOL_MAX, &g, x, &y), DLT_OK);
        ck_assert(isnan(y));
        ck_assert_int_eq(be->pool2d_bwd(be, DLT_POOL_MAX, &g, x, &y, &dy, dx), DLT_OK);
        for (int i = 0; i < 9; i++) ck_assert(dx[i] == (i == 1 ? 2.0f : 0.0f));
        /* average pooling needs no y; max pooling refuses to run without it */
        ck_assert_int_eq(be->pool2d_bwd(be, DLT_POOL_AVG, &g, x, NULL, &dy, dx), DLT_OK);
        ck_assert_int_eq(be->pool2d_bwd(be, DLT_POOL_MAX, &g, x, NULL, &dy, dx), DLT_ERR_INVALID);
    }
}
END_TEST

/* ---------------- batch norm ---------------- */

/* Two-pass batch norm in double: y, and the batch mean and biased variance. */
static void ref_bn(int n, int c, int hw, double eps, const double *x, const double *gamma,
                   const double *beta, double *y, double *mean, double *var)
{
    const double M = (double)n * hw;
    for (int ch = 0; ch < c; ch++) {
        double s = 0, v = 0;
        for (int i = 0; i < n; i++)
            for (int p = 0; p < hw; p++) s += x[((size_t)i * c + ch) * hw + p];
        s /= M;
        for (int i = 0; i < n; i++)
            for (int p = 0; p < hw; p++) {
                double d = x[((size_t)i * c + ch) * hw + p] - s;
                v += d * d;
            }
        v /= M;
        for (int i = 0; i < n; i++)
            for (int p = 0; p < hw; p++) {
                size_t j = ((size_t)i * c + ch) * hw + p;
                y[j] = (x[j] - s) / sqrt(v + eps) * gamma[ch] + beta[ch];
            }
        mean[ch] = s;
        var[ch] = v;
    }
}

START_TEST(test_bnorm)
{
    static const int shapes[][3] = { { 4, 3, 5 }, { 2, 2, 1 }, { 64, 16, 100 } };
    const float eps = 1e-5f, mom = 0.1f;
    for (int t = 0; t < 3; t++) {
        const int n = shapes[t][0], c = shapes[t][1], hw = shapes[t][2];
        const size_t tot = (size_t)n * c * hw;
        const double M = (double)n * hw;
        float *x = rnd(tot, 31 + t), *gm = rnd(c, 32), *bt = rnd(c, 33), *y = rnd(tot, 34);
        for (size_t i = 0; i < tot; i++) x[i] = 2.0f * x[i] + (t == 2 ? 1000.0f : 0.5f);
        float *rm = rnd(c, 35), *rv = rnd(c, 36), *rm0, *rv0, sm[16], si[16];
        for (int ch = 0; ch < c; ch++) rv[ch] = fabsf(rv[ch]) + 0.5f;
        rm0 = dup(rm, c), rv0 = dup(rv, c);
        double *xd = zd(tot), *ry = zd(tot), *mean = zd(c), *var = zd(c), gd[16], bd[16];
        for (size_t i = 0; i < tot; i++) xd[i] = x[i];
        for (int ch = 0; ch < c; ch++) gd[ch] = gm[ch], bd[ch] = bt[ch];
        ref_bn(n, c, hw, eps, xd, gd, bd, ry, mean, var);
        ck_assert_int_eq(be->bnorm_fwd_train(be, n, c, hw, eps, mom, x, gm, bt, y, rm, rv, sm, si),
                         DLT_OK);
        expect(y, NULL, ry, tot, t == 2 ? 2e-3 : 1e-5, "bnorm_fwd_train y");
        for (int ch = 0; ch < c; ch++) {
            ck_assert(fabs(sm[ch] - mean[ch]) <= 1e-6 * fmax(1, fabs(mean[ch])));
            ck_assert(fabs(si[ch] - 1 / sqrt(var[ch] + eps)) <= 1e-5 / sqrt(var[ch] + eps));
            ck_assert(fabs(rm[ch] - (0.9 * rm0[ch] + 0.1 * mean[ch])) <= 1e-5 * fmax(1, fabs(rm[ch])));
            double uv = 0.9 * rv0[ch] + 0.1 * var[ch] * M / (M - 1);
            ck_assert_msg(fabs(rv[ch] - uv) <= 1e-5 * fmax(1, uv), "running_var %g vs %g", rv[ch], uv);
        }
        ck_assert_int_eq(be->bnorm_fwd_eval(be, n, c, hw, eps, x, gm, bt, rm, rv, y), DLT_OK);
        for (size_t i = 0; i < tot; i++) {
            int ch = (int)(i / hw % c);
            ry[i] = (x[i] - (double)rm[ch]) / sqrt((double)rv[ch] + eps) * gm[ch] + bt[ch];
        }
        expect(y, NULL, ry, tot, t == 2 ? 2e-3 : 1e-5, "bnorm_fwd_eval");
        if (t < 2) { /* gradients of L = sum(y * r) by central differences in double */
            float *r = rnd(tot, 40), *dx = rnd(tot, 41), *dx0 = dup(dx, tot), *dg = rnd(c, 42),
                  *dg0 = dup(dg, c), *db = rnd(c, 43), *db0 = dup(db, c);
            double *rdx = zd(tot), *rdg = zd(c), *rdb = zd(c), *yp = zd(tot);
            double gpert[16];
            const double h = 1e-5;
            for (size_t i = 0; i < tot + c; i++) {
                double lp[2];
                for (int sgn = 0; sgn < 2; sgn++) {
                    memcpy(gpert, gd, c * sizeof *gd);
                    if (i < tot) xd[i] = x[i] + (sgn ? -h : h);
                    else gpert[i - tot] = gd[i - tot] + (sgn ? -h : h);
                    ref_bn(n, c, hw, eps, xd, gpert, bd, yp, mean, var);
                    lp[sgn] = 0;
                    for (size_t j = 0; j < tot; j++) lp[sgn] += yp[j] * r[j];
                    if (i < tot) xd[i] = x[i];
                }
                double d = (lp[0] - lp[1]) / (2 * h);
                if (i < tot) rdx[i] = d;
                else rdg[i - tot] = d;
            }
            for (size_t j = 0; j < tot; j++) rdb[j / hw % c] += r[j];
            ck_assert_int_eq(be->bnorm_bwd(be, n, c, hw, x, r, gm, sm, si, dx, dg, db), DLT_OK);
            expect(dx, dx0, rdx, tot, 2e-3, "bnorm_bwd dx");
            expect(dg, dg0, rdg, c, 2e-3, "bnorm_bwd dgamma");
            expect(db, db0, rdb, c, 1e-5, "bnorm_bwd dbeta");
            free(r), free(dx), free(dx0), free(dg), free(dg0), free(db), free(db0);
            free(rdx), free(rdg), free(rdb), free(yp);
        }
        free(x), free(gm), free(bt), free(y), free(rm), free(rv), free(rm0), free(rv0);
        free(xd), free(ry), free(mean), free(var);
    }
    float one[2] = { 1, 2 }, o[2], s1[2], s2[2];
    ck_assert_int_eq(be->bnorm_fwd_train(be, 1, 2, 1, 1e-5f, 0.1f, one, NULL, NULL, o, NULL,
                                         NULL, s1, s2), DLT_ERR_SHAPE);
}
END_TEST

/* ---------------- activations and dropout ---------------- */

static double ref_act(dlt_act a, double x)
{
    switch (a) {
    case DLT_ACT_RELU: return x > 0 ? x : 0;
    case DLT_ACT_SIGMOID: return 1 / (1 + exp(-x));
    case DLT_ACT_TANH: return tanh(x);
    case DLT_ACT_GELU: return 0.5 * x * (1 + erf(x / sqrt(2.0)));
    }
    return NAN;
}

START_TEST(test_act)
{
    static const size_t sizes[] = { 5, 1000, 70001 };
    for (int a = DLT_ACT_RELU; a <= DLT_ACT_GELU; a++)
        for (int t = 0; t < 3; t++) {
            const size_t n = sizes[t];
            float *x = rnd(n, 60 + t), *y = rnd(n, 61), *dy = rnd(n, 62), *dx = rnd(n, 63),
                  *dx0 = dup(dx, n);
            for (size_t i = 0; i < n; i++) x[i] *= 6.0f;
            double *ry = zd(n), *rdx = zd(n);
            const double h = 1e-6;
            for (size_t i = 0; i < n; i++) {
                ry[i] = ref_act(a, x[i]);
                rdx[i] = a == DLT_ACT_RELU ? (x[i] > 0 ? dy[i] : 0.0)
                                           : dy[i] * (ref_act(a, x[i] + h) - ref_act(a, x[i] - h)) / (2 * h);
            }
            ck_assert_int_eq(be->act_fwd(be, a, n, x, y), DLT_OK);
            expect(y, NULL, ry, n, 1e-6, "act_fwd");
            ck_assert_int_eq(be->act_bwd(be, a, n, x, y, dy, dx), DLT_OK);
            expect(dx, dx0, rdx, n, 1e-5, "act_bwd");
            free(x), free(y), free(dy), free(dx), free(dx0), free(ry), free(rdx);
        }
    float z = 0.0f, dz = 1.0f, dxz = 0.5f, yz;
    ck_assert_int_eq(be->act_fwd(be, DLT_ACT_RELU, 1, &z, &yz), DLT_OK);
    ck_assert_int_eq(be->act_bwd(be, DLT_ACT_RELU, 1, &z, &yz, &dz, &dxz), DLT_OK);
    ck_assert(dxz == 0.5f); /* relu'(0) = 0, as PyTorch */
    ck_assert_int_eq(be->act_fwd(be, (dlt_act)99, 1, &z, &yz), DLT_ERR_INVALID);
}
END_TEST

START_TEST(test_dropout)
{
    const size_t n = 200003;
    const uint64_t key = 0x1234, first = 777;
    float *x = rnd(n, 70), *y = rnd(n, 71), *mask = rnd(n, 72), *y2 = rnd(n, 73),
          *m2 = rnd(n, 74);
    const float ps[] = { 0.0f, 0.3f, 1.0f };
    for (int t = 0; t < 3; t++) {
        const float p = ps[t];
        ck_assert_int_eq(be->dropout_fwd(be, n, p, key, first, x, y, mask), DLT_OK);
        size_t kept = 0;
        for (size_t i = 0; i < n; i++) {
            int keep = dlt_rand_u01(key, first + i) >= p;
            float m = keep ? 1.0f / (1.0f - p) : 0.0f;
            kept += keep;
            ck_assert(mask[i] == m);
            ck_assert(y[i] == x[i] * m);
        }
        ck_assert(fabs((double)kept / n - (1.0 - p)) < 0.01);
    }
    /* the mask depends on the global index only: a shifted call agrees */
    ck_assert_int_eq(be->dropout_fwd(be, n, 0.5f, key, 0, x, y, mask), DLT_OK);
    ck_assert_int_eq(be->dropout_fwd(be, n - 10, 0.5f, key, 10, x + 10, y2, m2), DLT_OK);
    ck_assert(memcmp(mask + 10, m2, (n - 10) * sizeof *m2) == 0);
    ck_assert_int_eq(be->dropout_fwd(be, n, 1.5f, key, 0, x, y, mask), DLT_ERR_INVALID);
    free(x), free(y), free(mask), free(y2), free(m2);
}
END_TEST

/* ---------------- losses ---------------- */

START_TEST(test_losses)
{
    static const int shapes[][2] = { { 1, 1 }, { 5, 10 }, { 64, 1000 } };
    for (int t = 0; t < 3; t++) {
        const int n = shapes[t][0], k = shapes[t][1];
        const size_t tot = (size_t)n * k;
        float *z = rnd(tot, 80 + t), *p = rnd(tot, 81), *loss = rnd(n, 82), *cor = rnd(n, 83),
              *d = rnd(tot, 84), *d0 = dup(d, tot), *tg = rnd(tot, 85), *oh = rnd(tot, 86);
        int32_t *lab = malloc(n * sizeof *lab);
        double *rp = zd(tot), *rl = zd(n), *rd = zd(tot);
        for (size_t i = 0; i < tot; i++) z[i] *= 20.0f + (t == 2 ? 2000.0f : 0.0f);
        for (int i = 0; i < n; i++) lab[i] = (int32_t)((i * 7 + 3) % k);
        if (n > 1) z[(size_t)1 * k + lab[1]] = 1e4f; /* sample 1 is surely correct */
        if (n > 1) z[lab[0]] = z[lab[0] - 1] = 1e4f;  /* a tie: the first argmax is not the label */
        for (int i = 0; i < n; i++) {
            const float *zi = z + (size_t)i * k;
            double mx = -INFINITY, s = 0;
            for (int j = 0; j < k; j++) mx = fmax(mx, zi[j]);
            for (int j = 0; j < k; j++) s += exp(zi[j] - mx);
            for (int j = 0; j < k; j++) {
                rp[i * k + j] = exp(zi[j] - mx) / s;
                rd[i * k + j] = 0.5 * (rp[i * k + j] - (j == lab[i]));
            }
            rl[i] = log(s) + mx - zi[lab[i]];
        }
        ck_assert_int_eq(be->softmax_xent_fwd(be, n, k, z, lab, p, loss, cor), DLT_OK);
        expect(p, NULL, rp, tot, 1e-6, "softmax probs");
        expect(loss, NULL, rl, n, 1e-5, "softmax loss");
        for (int i = 0; i < n; i++) {
            int am = 0;
            for (int j = 1; j < k; j++)
                if (z[(size_t)i * k + j] > z[(size_t)i * k + am]) am = j;
            ck_assert(cor[i] == (am == lab[i] ? 1.0f : 0.0f));
        }
        if (n > 1) ck_assert(cor[1] == 1.0f && cor[0] == 0.0f);
        ck_assert_int_eq(be->softmax_xent_bwd(be, n, k, p, lab, 0.5f, d), DLT_OK);
        expect(d, d0, rd, tot, 1e-6, "softmax_xent_bwd");
        for (int i = 0; i < n; i++) {
            double s = 0;
            for (int j = 0; j < k; j++) {
                double e = (double)p[i * k + j] - tg[i * k + j];
                s += e * e;
                rd[i * k + j] = 0.25 * 2 * e / k;
            }
            rl[i] = s / k;
        }
        ck_assert_int_eq(be->mse_fwd(be, n, k, p, tg, loss), DLT_OK);
        expect(loss, NULL, rl, n, 1e-6, "mse_fwd");
        memcpy(d, d0, tot * 4);
        ck_assert_int_eq(be->mse_bwd(be, n, k, p, tg, 0.25f, d), DLT_OK);
        expect(d, d0, rd, tot, 1e-6, "mse_bwd");
        ck_assert_int_eq(be->onehot(be, n, k, lab, oh), DLT_OK);
        for (size_t i = 0; i < tot; i++) ck_assert(oh[i] == (lab[i / k] == (int)(i % k) ? 1.0f : 0.0f));
        lab[n - 1] = k; /* out of range */
        ck_assert_int_eq(be->softmax_xent_fwd(be, n, k, z, lab, p, loss, cor), DLT_ERR_INVALID);
        ck_assert_int_eq(be->onehot(be, n, k, lab, oh), DLT_ERR_INVALID);
        free(z), free(p), free(loss), free(cor), free(d), free(d0), free(tg), free(oh), free(lab);
        free(rp), free(rl), free(rd);
    }
}
END_TEST

/* ---------------- thread-count independence ---------------- */

/* Runs reductions and scatter-adds with 1 and then 2 OpenMP threads (OpenBLAS
 * single-threaded, so the ops may use OpenMP at all) and asserts bit-equal
 * results: the ops must not depend on how work is split across threads. */
START_TEST(test_threads_deterministic)
{
    const int omp0 = omp_get_max_threads(), blas0 = openblas_get_num_threads();
    openblas_set_num_threads(1);
    dlt_conv_geom g = { .n = 8, .c = 8, .h = 24, .w = 24, .k = 8, .r = 3, .s = 3, .stride = 1,
                        .pad = 1 };
    dlt_conv_geom_finish(&g);
    const size_t nx = (size_t)g.n * g.c * g.h * g.w, big = 1000003;
    float *x = rnd(big, 90), *dy = rnd(nx, 91), *w = rnd(72 * 8, 92), *out[2];
    const size_t per = nx + 3 * 8 + nx; /* conv dx, bnorm stats + dgamma, bnorm dx */
    double ss[2];
    void *ws = NULL;
    ck_assert_int_eq(be->alloc(be, be->conv2d_workspace(be, &g), &ws), DLT_OK);
    for (int t = 0; t < 2; t++) {
        omp_set_num_threads(t + 1);
        out[t] = calloc(per, sizeof(float));
        float *o = out[t], sm[8], si[8];
        ck_assert_int_eq(be->sumsq(be, big, x, &ss[t]), DLT_OK);
        ck_assert_int_eq(be->conv2d_bwd_data(be, &g, dy, w, o, ws), DLT_OK);
        ck_assert_int_eq(be->bnorm_fwd_train(be, g.n, g.c, g.h * g.w, 1e-5f, 0.1f, x, NULL, NULL,
                                             o + nx + 24, NULL, NULL, sm, si), DLT_OK);
        memcpy(o + nx, sm, sizeof sm);
        memcpy(o + nx + 8, si, sizeof si);
        ck_assert_int_eq(be->bnorm_bwd(be, g.n, g.c, g.h * g.w, x, dy, NULL, sm, si, o + nx + 24,
                                       o + nx + 16, NULL), DLT_OK);
    }
    omp_set_num_threads(omp0);
    openblas_set_num_threads(blas0);
    ck_assert(memcmp(&ss[0], &ss[1], sizeof ss[0]) == 0);
    ck_assert(memcmp(out[0], out[1], per * sizeof(float)) == 0);
    be->free(be, ws);
    free(x), free(dy), free(w), free(out[0]), free(out[1]);
}
END_TEST

static Suite *ops_suite(void)
{
    Suite *s = suite_create("cpu_ops");
    TCase *tc = tcase_create("ops");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_memory);
    tcase_add_test(tc, test_gemm);
    tcase_add_test(tc, test_elementwise);
    tcase_add_test(tc, test_bias);
    tcase_add_test(tc, test_linear);
    tcase_add_test(tc, test_conv);
    tcase_add_test(tc, test_pool);
    tcase_add_test(tc, test_bnorm);
    tcase_add_test(tc, test_act);
    tcase_add_test(tc, test_dropout);
    tcase_add_test(tc, test_losses);
    tcase_add_test(tc, test_threads_deterministic);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(ops_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed != 0;
}
