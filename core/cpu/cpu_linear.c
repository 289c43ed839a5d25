/* CPU fully connected ops: linear_fwd (y = x W^T + b) and linear_bwd_w
 * (dW += dy^T x, db += column sums of dy).
 *
 * Forward writes the bias into every row of y first and lets the one sgemm
 * add the product on top (beta = 1), so the bias costs a streaming write of
 * y instead of a second read-modify-write pass after the product; without a
 * bias the sgemm overwrites (beta = 0).
 *
 * The bias gradient is a column sum of a row-major (rows, out) matrix. It
 * walks dy row by row (contiguous, vectorised along the columns) in column
 * blocks that fit on the stack; each block sums ROW_CHUNK rows in float and
 * adds the chunk sums in double, so the inner loop runs at float SIMD width
 * while the total keeps double accuracy over thousands of rows. Each column
 * is summed in one fixed order whatever the thread count (column blocks are
 * split across OpenMP threads, never rows), so the result is reproducible.
 * The weight gradient is one sgemm with beta = 1 (gradients accumulate). */
#include <cblas.h>
#include <string.h>

#include "core/backend.h"
#include "core/cpu/cpu_ops.h"
#include "core/status.h"

/* Columns per block of the column sum (stack arrays of this many floats and
 * doubles) and rows summed in float before a chunk goes into the double
 * total: 64 float additions lose at most ~6 bits, far below what fp32
 * gradients carry. */
#define COL_BLOCK 256
#define ROW_CHUNK 64

/* Shared argument checks: both backends reject the same calls. */
static dlt_status check_sizes(const char *op, int rows, int in, int out)
{
    if (rows < 0 || in < 0 || out < 0)
        return DLT_ERR(DLT_ERR_INVALID, "%s: negative size rows=%d in=%d out=%d", op, rows, in,
                       out);
    return DLT_OK;
}

/* y (rows, out) = x (rows, in) w (out, in)^T + b (out), b may be NULL. */
dlt_status dlt_cpu_linear_fwd(dlt_backend *be, int rows, int in, int out, const float *x,
                              const float *w, const float *b, float *y)
{
    DLT_CHECK(check_sizes("linear_fwd", rows, in, out));
    if (rows == 0 || out == 0) return DLT_OK;
    if (b) {
        for (int r = 0; r < rows; r++) memcpy(y + (size_t)r * out, b, (size_t)out * sizeof(float));
    }
    if (in == 0) {
        if (!b) memset(y, 0, (size_t)rows * out * sizeof(float));
        return DLT_OK;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, out, in, 1.0f, x, in, w, in,
                b ? 1.0f : 0.0f, y, out);
    return DLT_OK;
}

/* db[j0 .. j0+m) += column sums of dy (rows, out) over those columns. */
static void col_sum_block(int rows, int out, int j0, int m, const float *dy, float *db)
{
    double acc[COL_BLOCK];
    float part[COL_BLOCK];
    for (int j = 0; j < m; j++) acc[j] = 0.0;
    for (int r0 = 0; r0 < rows; r0 += ROW_CHUNK) {
        const int r1 = rows - r0 < ROW_CHUNK ? rows : r0 + ROW_CHUNK;
        for (int j = 0; j < m; j++) part[j] = 0.0f;
        for (int r = r0; r < r1; r++) {
            const float *restrict d = dy + (size_t)r * out + j0;
            float *restrict p = part;
#pragma omp simd
            for (int j = 0; j < m; j++) p[j] += d[j];
        }
        for (int j = 0; j < m; j++) acc[j] += part[j];
    }
    for (int j = 0; j < m; j++) db[j0 + j] += (float)acc[j];
}

/* dw (out, in) += dy (rows, out)^T x (rows, in); db (out) += column sums of
 * dy unless db is NULL. */
dlt_status dlt_cpu_linear_bwd_w(dlt_backend *be, int rows, int in, int out, const float *x,
                                const float *dy, float *dw, float *db)
{
    DLT_CHECK(check_sizes("linear_bwd_w", rows, in, out));
    if (rows == 0 || out == 0) return DLT_OK;
    if (in > 0)
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, out, in, rows, 1.0f, dy, out, x, in,
                    1.0f, dw, in);
    if (!db) return DLT_OK;
    const int nblk = (out + COL_BLOCK - 1) / COL_BLOCK;
#pragma omp parallel for if (nblk > 1 && dlt_cpu_par((size_t)rows * out)) schedule(static)
    for (int bk = 0; bk < nblk; bk++) {
        const int j0 = bk * COL_BLOCK;
        col_sum_block(rows, out, j0, out - j0 < COL_BLOCK ? out - j0 : COL_BLOCK, dy, db);
    }
    return DLT_OK;
}
