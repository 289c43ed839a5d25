/* CPU BLAS-like ops: gemm through OpenBLAS, the rest as plain loops.
 *
 * gemm is the only op here worth a library: it is compute bound and
 * OpenBLAS's kernels are tuned per micro-architecture. The others are memory
 * bound one-pass loops; written as simple counted loops over restrict
 * pointers they vectorise, and for large n OpenMP splits them (an
 * `if` clause keeps small ones serial). Reductions use `omp simd
 * reduction` so the compiler may reorder the sum into vector lanes without
 * -ffast-math.
 *
 * sumsq must be reproducible run to run whatever the thread count (it
 * decides gradient clipping), so it sums fixed-size blocks in double and
 * adds the block sums in index order: the result depends on n only. */
#include <cblas.h>
#include <stdlib.h>

#include "core/backend.h"
#include "core/cpu/cpu_ops.h"
#include "core/status.h"

/* Elements per block of the deterministic sumsq reduction. */
#define SUMSQ_BLOCK 8192

/* x(n) = v */
dlt_status dlt_cpu_fill(dlt_backend *be, float *x, size_t n, float v)
{
#pragma omp parallel for simd if (dlt_cpu_par(n)) schedule(static)
    for (size_t i = 0; i < n; i++) x[i] = v;
    return DLT_OK;
}

static int imax1(int a) { return a > 1 ? a : 1; }

/* C(m,n) = alpha op(A) op(B) + beta C, row-major, via cblas_sgemm. Leading
 * dimensions are checked here so a bad call returns DLT_ERR_INVALID instead of
 * OpenBLAS printing and ignoring it. beta == 0 overwrites C (NaN in C does not
 * survive), as in BLAS. */
dlt_status dlt_cpu_gemm(dlt_backend *be, int ta, int tb, int m, int n, int k, float alpha,
                        const float *a, int lda, const float *b, int ldb, float beta, float *c,
                        int ldc)
{
    if (m < 0 || n < 0 || k < 0)
        return DLT_ERR(DLT_ERR_INVALID, "gemm: negative size m=%d n=%d k=%d", m, n, k);
    if (lda < imax1(ta ? m : k) || ldb < imax1(tb ? k : n) || ldc < imax1(n))
        return DLT_ERR(DLT_ERR_INVALID,
                       "gemm: leading dimension too small (ta=%d tb=%d m=%d n=%d k=%d lda=%d "
                       "ldb=%d ldc=%d)",
                       ta, tb, m, n, k, lda, ldb, ldc);
    if (m == 0 || n == 0) return DLT_OK;
    if (k == 0) {
        /* Nothing to multiply: C = beta C, done here since not every BLAS
         * handles k == 0 the same way. */
        for (int i = 0; i < m; i++) {
            float *restrict ci = c + (size_t)i * ldc;
            if (beta == 0.0f)
                for (int j = 0; j < n; j++) ci[j] = 0.0f;
            else
                for (int j = 0; j < n; j++) ci[j] *= beta;
        }
        return DLT_OK;
    }
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, m,
                n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    return DLT_OK;
}

/* y(n) += alpha x(n) */
dlt_status dlt_cpu_axpy(dlt_backend *be, size_t n, float alpha, const float *x, float *y)
{
    const float *restrict xs = x;
    float *restrict ys = y;
#pragma omp parallel for simd if (dlt_cpu_par(n)) schedule(static)
    for (size_t i = 0; i < n; i++) ys[i] += alpha * xs[i];
    return DLT_OK;
}

/* x(n) *= alpha */
dlt_status dlt_cpu_scale(dlt_backend *be, size_t n, float alpha, float *x)
{
#pragma omp parallel for simd if (dlt_cpu_par(n)) schedule(static)
    for (size_t i = 0; i < n; i++) x[i] *= alpha;
    return DLT_OK;
}

/* Sum of x[i]^2 over one block, in double. */
static double block_sumsq(const float *restrict x, size_t n)
{
    double s = 0.0;
#pragma omp simd reduction(+ : s)
    for (size_t i = 0; i < n; i++) s += (double)x[i] * (double)x[i];
    return s;
}

/* *out_host = sum x(n)^2 in double; bit-identical for any thread count.
 * A NaN or Inf in x makes the result NaN or Inf, which callers use as the
 * non-finite check. */
dlt_status dlt_cpu_sumsq(dlt_backend *be, size_t n, const float *x, double *out_host)
{
    if (!out_host) return DLT_ERR(DLT_ERR_INVALID, "sumsq: NULL output");
    size_t nb = (n + SUMSQ_BLOCK - 1) / SUMSQ_BLOCK;
    if (nb <= 1) {
        *out_host = block_sumsq(x, n);
        return DLT_OK;
    }
    /* blocks in groups of 64: partial sums on the stack (no allocation in
     * the step), added in block order whatever the thread count */
    enum { GROUP = 64 };
    double part[GROUP], s = 0.0;
    for (size_t g0 = 0; g0 < nb; g0 += GROUP) {
        const size_t m = nb - g0 < GROUP ? nb - g0 : GROUP;
#pragma omp parallel for if (dlt_cpu_par(m * SUMSQ_BLOCK)) schedule(static)
        for (size_t b = 0; b < m; b++) {
            size_t lo = (g0 + b) * SUMSQ_BLOCK, len = n - lo < SUMSQ_BLOCK ? n - lo : SUMSQ_BLOCK;
            part[b] = block_sumsq(x + lo, len);
        }
        for (size_t b = 0; b < m; b++) s += part[b];
    }
    *out_host = s;
    return DLT_OK;
}

/* y(n, c, hw) += b(c) */
dlt_status dlt_cpu_bias_add(dlt_backend *be, int n, int c, int hw, const float *b, float *y)
{
    if (n < 0 || c < 0 || hw < 0) return DLT_ERR(DLT_ERR_INVALID, "bias_add: negative size");
    const long rows = (long)n * c;
    if (hw == 1) { /* dense layers: add the bias row to each sample, vectorised along c */
        for (int s = 0; s < n; s++) {
            float *restrict ys = y + (size_t)s * c;
#pragma omp simd
            for (int j = 0; j < c; j++) ys[j] += b[j];
        }
        return DLT_OK;
    }
#pragma omp parallel for if (dlt_cpu_par(rows * hw)) schedule(static)
    for (long r = 0; r < rows; r++) {
        float *restrict yr = y + (size_t)r * hw;
        const float bv = b[r % c];
        for (int i = 0; i < hw; i++) yr[i] += bv;
    }
    return DLT_OK;
}

/* db(c) += sum over n, hw of dy(n, c, hw). Parallel over channels only, so
 * each channel's sum has one fixed order. */
dlt_status dlt_cpu_bias_grad(dlt_backend *be, int n, int c, int hw, const float *dy, float *db)
{
    if (n < 0 || c < 0 || hw < 0) return DLT_ERR(DLT_ERR_INVALID, "bias_grad: negative size");
    if (hw == 1) {
        /* Dense layers: walk dy row by row (contiguous) with a block of
         * double accumulators; each channel still sums its samples in order,
         * so the result is bitwise that of the general loop below. */
        enum { BLOCK = 512 };
        double acc[BLOCK];
        for (int j0 = 0; j0 < c; j0 += BLOCK) {
            const int m = c - j0 < BLOCK ? c - j0 : BLOCK;
            for (int j = 0; j < m; j++) acc[j] = 0.0;
            for (int s = 0; s < n; s++) {
                const float *restrict d = dy + (size_t)s * c + j0;
#pragma omp simd
                for (int j = 0; j < m; j++) acc[j] += d[j];
            }
            for (int j = 0; j < m; j++) db[j0 + j] += (float)acc[j];
        }
        return DLT_OK;
    }
#pragma omp parallel for if (dlt_cpu_par((long)n * c * hw) && c > 1) schedule(static)
    for (int ch = 0; ch < c; ch++) {
        double acc = 0.0;
        for (int s = 0; s < n; s++) {
            const float *restrict d = dy + ((size_t)s * c + ch) * hw;
            float part = 0.0f;
#pragma omp simd reduction(+ : part)
            for (int i = 0; i < hw; i++) part += d[i];
            acc += part;
        }
        db[ch] += (float)acc;
    }
    return DLT_OK;
}

/* y(n) = a(n) + b(n); y may alias a or b (elementwise, same index). */
dlt_status dlt_cpu_add(dlt_backend *be, size_t n, const float *a, const float *b, float *y)
{
#pragma omp parallel for simd if (dlt_cpu_par(n)) schedule(static)
    for (size_t i = 0; i < n; i++) y[i] = a[i] + b[i];
    return DLT_OK;
}

/* dx(n) += dy(n) mask(n) */
dlt_status dlt_cpu_mul_acc(dlt_backend *be, size_t n, const float *dy, const float *mask,
                           float *dx)
{
    const float *restrict d = dy, *restrict m = mask;
    float *restrict o = dx;
#pragma omp parallel for simd if (dlt_cpu_par(n)) schedule(static)
    for (size_t i = 0; i < n; i++) o[i] += d[i] * m[i];
    return DLT_OK;
}
