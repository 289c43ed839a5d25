/* CPU ops for token models: embedding lookup and its scatter-add gradient,
 * layer normalisation, and the per-token softmax cross-entropy of language
 * models.
 *
 * Token ids arrive as floats (the model input is a float tensor); an id is
 * valid when it is an integer in [0, vocab), checked before any row is read
 * so that a data bug is an error, not an out-of-bounds read. The embedding
 * gradient is a scatter-add: several tokens may share an id, so it runs
 * serially over tokens (each a vectorised row add); it is memory bound and
 * small next to the model's gemms.
 *
 * Layer normalisation keeps per-row mean and 1/sqrt(var + eps) for backward;
 * statistics are summed in double so long rows of large values keep their
 * precision. Backward uses the closed form
 *   dx = rstd (dxhat - mean(dxhat) - xhat mean(dxhat xhat)), dxhat = dy gamma,
 * rows in parallel; dgamma/dbeta are column sums done serially in row order
 * (deterministic whatever the thread count).
 *
 * The cross-entropy never stores probabilities: for a vocabulary of 30k the
 * logits are already the largest tensor of the model, so backward recomputes
 * the softmax from the logits (one more exp pass, cheap next to the decoder
 * gemm that produced them). Rows with label < 0 (padding, unmasked tokens of
 * MLM) contribute nothing. Exponentials use the vectorisable dlt_cpu_expf
 * (cpu_math.h). */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "core/backend.h"
#include "core/cpu/cpu_math.h"
#include "core/cpu/cpu_ops.h"
#include "core/cpu/cpu_seq.h"
#include "core/status.h"

/* DLT_OK if every id (t) is an integer in [0, vocab). */
static dlt_status check_ids(int t, int vocab, const float *ids, const char *op)
{
    if (t < 0 || vocab <= 0) return DLT_ERR(DLT_ERR_SHAPE, "%s: bad sizes t=%d vocab=%d", op, t, vocab);
    for (int i = 0; i < t; i++) {
        const float f = ids[i];
        if (!(f >= 0.0f && f < (float)vocab) || f != floorf(f))
            return DLT_ERR(DLT_ERR_INVALID, "%s: token %d has id %g, outside [0, %d)", op, i,
                           (double)f, vocab);
    }
    return DLT_OK;
}

/* y (t, dim) = rows ids (t) of w (vocab, dim). */
dlt_status dlt_cpu_embedding_fwd(dlt_backend *be, int t, int dim, int vocab, const float *ids,
                                 const float *w, float *y)
{
    DLT_CHECK(check_ids(t, vocab, ids, "embedding_fwd"));
#pragma omp parallel for if (dlt_cpu_par((size_t)t * dim)) schedule(static)
    for (int i = 0; i < t; i++)
        memcpy(y + (size_t)i * dim, w + (size_t)ids[i] * dim, (size_t)dim * sizeof *y);
    return DLT_OK;
}

/* dw (vocab, dim) rows ids(i) += dy (t, dim) row i, except padding_idx. */
dlt_status dlt_cpu_embedding_bwd(dlt_backend *be, int t, int dim, int vocab, const float *ids,
                                 const float *dy, int padding_idx, float *dw)
{
    DLT_CHECK(check_ids(t, vocab, ids, "embedding_bwd"));
    for (int i = 0; i < t; i++) {
        const int id = (int)ids[i];
        if (id == padding_idx) continue;
        const float *restrict d = dy + (size_t)i * dim;
        float *restrict o = dw + (size_t)id * dim;
#pragma omp simd
        for (int j = 0; j < dim; j++) o[j] += d[j];
    }
    return DLT_OK;
}

/* x rows idx(i) (k) = v; the rows are checked like token ids first. */
dlt_status dlt_cpu_fill_rows(dlt_backend *be, int k, int dim, int rows, const float *idx, float v,
                             float *x)
{
    if (dim <= 0) return DLT_ERR(DLT_ERR_SHAPE, "fill_rows: bad sizes k=%d dim=%d", k, dim);
    DLT_CHECK(check_ids(k, rows, idx, "fill_rows"));
    for (int i = 0; i < k; i++) {
        float *restrict o = x + (size_t)idx[i] * dim;
#pragma omp simd
        for (int j = 0; j < dim; j++) o[j] = v;
    }
    return DLT_OK;
}

/* idx = the rows with a label >= 0, in order. */
dlt_status dlt_cpu_target_rows(dlt_backend *be, int rows, const int32_t *labels, float *idx)
{
    if (rows < 0) return DLT_ERR(DLT_ERR_SHAPE, "target_rows: bad size rows=%d", rows);
    int k = 0;
    for (int r = 0; r < rows; r++)
        if (labels[r] >= 0) idx[k++] = (float)r;
    return DLT_OK;
}

/* y (rows, dim) = (x - mean) rstd gamma + beta per row; mean, rstd (rows). */
dlt_status dlt_cpu_layernorm_fwd(dlt_backend *be, int rows, int dim, float eps, const float *x,
                                 const float *gamma, const float *beta, float *y, float *mean,
                                 float *rstd)
{
    if (rows < 0 || dim <= 0)
        return DLT_ERR(DLT_ERR_SHAPE, "layernorm_fwd: bad sizes rows=%d dim=%d", rows, dim);
#pragma omp parallel for if (dlt_cpu_par((size_t)rows * dim)) schedule(static)
    for (int r = 0; r < rows; r++) {
        const float *restrict xr = x + (size_t)r * dim;
        float *restrict yr = y + (size_t)r * dim;
        double s = 0.0;
#pragma omp simd reduction(+ : s)
        for (int j = 0; j < dim; j++) s += xr[j];
        const double mu = s / dim;
        double v = 0.0;
#pragma omp simd reduction(+ : v)
        for (int j = 0; j < dim; j++) {
            const double d = xr[j] - mu;
            v += d * d;
        }
        const float is = (float)(1.0 / sqrt(v / dim + (double)eps));
        const float m = (float)mu;
        for (int j = 0; j < dim; j++) yr[j] = (xr[j] - m) * is * gamma[j] + beta[j];
        mean[r] = m;
        rstd[r] = is;
    }
    return DLT_OK;
}

/* dx += layer-norm input gradient; dgamma += sum dy xhat; dbeta += sum dy. */
dlt_status dlt_cpu_layernorm_bwd(dlt_backend *be, int rows, int dim, const float *x,
                                 const float *dy, const float *gamma, const float *mean,
                                 const float *rstd, float *dx, float *dgamma, float *dbeta)
{
    if (rows < 0 || dim <= 0)
        return DLT_ERR(DLT_ERR_SHAPE, "layernorm_bwd: bad sizes rows=%d dim=%d", rows, dim);
    if (dx) {
#pragma omp parallel for if (dlt_cpu_par((size_t)rows * dim)) schedule(static)
        for (int r = 0; r < rows; r++) {
            const float *restrict xr = x + (size_t)r * dim, *restrict dr = dy + (size_t)r * dim;
            float *restrict o = dx + (size_t)r * dim;
            const float m = mean[r], is = rstd[r];
            float a = 0.0f, b = 0.0f;   /* sums of dxhat and dxhat xhat */
#pragma omp simd reduction(+ : a, b)
            for (int j = 0; j < dim; j++) {
                const float g = dr[j] * gamma[j];
                a += g;
                b += g * (xr[j] - m) * is;
            }
            a /= (float)dim;
            b /= (float)dim;
#pragma omp simd
            for (int j = 0; j < dim; j++)
                o[j] += is * (dr[j] * gamma[j] - a - (xr[j] - m) * is * b);
        }
    }
    for (int r = 0; r < rows; r++) {
        const float *restrict xr = x + (size_t)r * dim, *restrict dr = dy + (size_t)r * dim;
        const float m = mean[r], is = rstd[r];
#pragma omp simd
        for (int j = 0; j < dim; j++) {
            dgamma[j] += dr[j] * (xr[j] - m) * is;
            dbeta[j] += dr[j];
        }
    }
    return DLT_OK;
}

/* Row maximum (first argmax in *am) and sum of exp(z - max). Both loops
 * vectorise: the argmax is the first element equal to the maximum, and the
 * sum runs in float over blocks of 256 (a float reduction vectorises, a
 * double one does not) added up in double. */
static double row_softmax_sum(const float *restrict z, int k, int *am)
{
    float mx = z[0];
#pragma omp simd reduction(max : mx)
    for (int j = 1; j < k; j++) mx = z[j] > mx ? z[j] : mx;
    int a = 0;
    while (a < k - 1 && z[a] != mx) a++;
    double sum = 0.0;
    for (int j0 = 0; j0 < k; j0 += 256) {
        const int j1 = j0 + 256 < k ? j0 + 256 : k;
        float part = 0.0f;
#pragma omp simd reduction(+ : part)
        for (int j = j0; j < j1; j++) part += dlt_cpu_expf(z[j] - mx);
        sum += part;
    }
    *am = a;
    return sum;
}

/* Per-sample sums over counted tokens: loss, correct, count (n each). */
dlt_status dlt_cpu_softmax_xent_seq_fwd(dlt_backend *be, int n, int len, int k,
                                        const float *logits, const int32_t *labels, float *loss,
                                        float *correct, float *count)
{
    if (n < 0 || len <= 0 || k <= 0)
        return DLT_ERR(DLT_ERR_SHAPE, "softmax_xent_seq_fwd: bad sizes n=%d len=%d k=%d", n, len,
                       k);
    for (size_t i = 0; i < (size_t)n * len; i++)
        if (labels[i] >= k)
            return DLT_ERR(DLT_ERR_INVALID,
                           "softmax_xent_seq_fwd: label %d of token %zu (sample %zu) is >= %d "
                           "classes", (int)labels[i], i % (size_t)len, i / (size_t)len, k);
#pragma omp parallel for if (dlt_cpu_par((size_t)n * len * k)) schedule(static)
    for (int b = 0; b < n; b++) {
        double ls = 0.0;
        int cor = 0, cnt = 0;
        for (int t = 0; t < len; t++) {
            const size_t row = (size_t)b * len + t;
            const int32_t lab = labels[row];
            if (lab < 0) continue;
            const float *z = logits + row * k;
            int am;
            const double sum = row_softmax_sum(z, k, &am);
            ls += log(sum) - ((double)z[lab] - z[am]);
            cor += am == lab;
            cnt++;
        }
        if (loss) loss[b] = (float)ls;
        if (correct) correct[b] = (float)cor;
        if (count) count[b] = (float)cnt;
    }
    return DLT_OK;
}

/* dlogits (rows, k) += scale (softmax - onehot) for rows with label >= 0. */
dlt_status dlt_cpu_softmax_xent_seq_bwd(dlt_backend *be, int rows, int k, const float *logits,
                                        const int32_t *labels, float scale, float *dlogits)
{
    if (rows < 0 || k <= 0)
        return DLT_ERR(DLT_ERR_SHAPE, "softmax_xent_seq_bwd: bad sizes rows=%d k=%d", rows, k);
    for (int r = 0; r < rows; r++)
        if (labels[r] >= k)
            return DLT_ERR(DLT_ERR_INVALID, "softmax_xent_seq_bwd: label %d of row %d is >= %d",
                           (int)labels[r], r, k);
#pragma omp parallel for if (dlt_cpu_par((size_t)rows * k)) schedule(static)
    for (int r = 0; r < rows; r++) {
        const int32_t lab = labels[r];
        if (lab < 0) continue;
        const float *restrict z = logits + (size_t)r * k;
        float *restrict d = dlogits + (size_t)r * k;
        int am;
        const double sum = row_softmax_sum(z, k, &am);
        const float mx = z[am], c = (float)(scale / sum);
#pragma omp simd
        for (int j = 0; j < k; j++) d[j] += c * dlt_cpu_expf(z[j] - mx);
        d[lab] -= scale;
    }
    return DLT_OK;
}
