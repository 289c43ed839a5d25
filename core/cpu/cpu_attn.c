/* CPU multi-head scaled dot-product attention, forward and backward.
 *
 * q, k and v are read in place from the packed projection qkv (n, len, 3D)
 * (D = heads dh) through leading dimensions, so no head is ever copied out:
 * for sample b and head h, Q is the (len, dh) block at column h dh of
 * the first third with row stride 3D, K and V likewise in the other thirds,
 * and the output block lands at column h dh of out (n, len, D). Each (b, h)
 * is then three sgemms (scores, probabilities times V; backward four) and a
 * row softmax in between.
 *
 * The padding mask comes from the token ids: key j of sample b is masked
 * when its id is 0, by giving it probability exactly 0 (not a large negative
 * score, which would leave it a tiny weight). Dropout on the probabilities
 * is drawn from the counter generator at the element's index in probs
 * (n, heads, len, len), so backward recomputes the mask instead of storing
 * it, and the mask is the same however samples are split across ranks.
 * probs keeps the probabilities before dropout, which the softmax gradient
 * needs: dS = P (dP - rowsum(dP P)) with dP the gradient w.r.t. P (the
 * dropout mask applied to the gradient w.r.t. the dropped probabilities).
 *
 * (b, h) pairs run one after another and OpenBLAS threads each gemm.
 *
 * The memory-light pair (attention_fwd_lse / attention_bwd_lse, the CPU
 * reference of the CUDA flash kernels) keeps only the log-sum-exp of each
 * query row instead of the (len, len) probabilities. It works one query row
 * at a time: the row's scores against every key (a stack row of len
 * floats), then P_ij = exp(s_ij - lse_i) and the output or gradients as
 * dot products and axpys of length dh. Backward uses
 * rowsum(dP P) = dout_i . out_i (out already has dropout applied), so it
 * needs neither the probabilities nor a second pass. (b, h) pairs are
 * independent (each owns its slices of out, lse and dqkv), so they run on
 * OpenMP threads when OpenBLAS is single-threaded (dlt_cpu_par). */
#include <cblas.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>

#include "core/backend.h"
#include "core/cpu/cpu_math.h"
#include "core/cpu/cpu_ops.h"
#include "core/cpu/cpu_seq.h"
#include "core/rng.h"
#include "core/status.h"

static dlt_status check_sizes(int n, int len, int heads, int dh, const char *op)
{
    if (n < 0 || len <= 0 || heads <= 0 || dh <= 0)
        return DLT_ERR(DLT_ERR_SHAPE, "%s: bad sizes n=%d len=%d heads=%d dh=%d", op, n, len,
                       heads, dh);
    return DLT_OK;
}

/* d (len, len) = s mask for the dropout of probability block first.. */
static void apply_dropout(int len, float p, uint64_t key, uint64_t first, const float *s,
                          float *d)
{
    const float keep = p < 1.0f ? 1.0f / (1.0f - p) : 0.0f;
    const size_t nn = (size_t)len * len;
    for (size_t i = 0; i < nn; i++)
        d[i] = dlt_rand_u01(key, first + i) >= p ? s[i] * keep : 0.0f;
}

/* Softmax of each row of s (len, len) in place; keys with mask[j] == 0
 * (mask NULL: none) get probability 0, and a row with no key left is 0. */
static void softmax_rows(int len, const float *ids, float *s)
{
    for (int i = 0; i < len; i++) {
        float *r = s + (size_t)i * len;
        float mx = -INFINITY;
        for (int j = 0; j < len; j++)
            if ((!ids || ids[j] != 0.0f) && r[j] > mx) mx = r[j];
        if (mx == -INFINITY) {
            for (int j = 0; j < len; j++) r[j] = 0.0f;
            continue;
        }
        float sum = 0.0f;   /* a float reduction vectorises; rows are short */
#pragma omp simd reduction(+ : sum)
        for (int j = 0; j < len; j++) {
            const float e = (!ids || ids[j] != 0.0f) ? dlt_cpu_expf(r[j] - mx) : 0.0f;
            r[j] = e;
            sum += e;
        }
        const float inv = 1.0f / sum;
        for (int j = 0; j < len; j++) r[j] *= inv;
    }
}

dlt_status dlt_cpu_attention_fwd(dlt_backend *be, int n, int len, int heads, int dh,
                                 const float *qkv, const float *tokens, float p, uint64_t key,
                                 uint64_t first, float *probs, float *out, float *ws)
{
    DLT_CHECK(check_sizes(n, len, heads, dh, "attention_fwd"));
    if (!(p >= 0.0f && p < 1.0f))
        return DLT_ERR(DLT_ERR_INVALID, "attention_fwd: dropout %g is not in [0, 1)", (double)p);
    const int D = heads * dh, ld = 3 * D;
    const float scale = 1.0f / sqrtf((float)dh);
    const size_t blk = (size_t)len * len;
    for (int b = 0; b < n; b++) {
        const float *base = qkv + (size_t)b * len * ld;
        const float *ids = tokens ? tokens + (size_t)b * len : NULL;
        for (int h = 0; h < heads; h++) {
            const float *q = base + (size_t)h * dh, *k = q + D, *v = q + 2 * D;
            const size_t bh = (size_t)b * heads + h;
            float *s = probs + bh * blk;
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, len, len, dh, scale, q, ld, k,
                        ld, 0.0f, s, len);
            softmax_rows(len, ids, s);
            const float *pd = s;
            if (p > 0.0f) {
                apply_dropout(len, p, key, first + bh * blk, s, ws);
                pd = ws;
            }
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, len, dh, len, 1.0f, pd, len,
                        v, ld, 0.0f, out + (size_t)b * len * D + (size_t)h * dh, D);
        }
    }
    return DLT_OK;
}

dlt_status dlt_cpu_attention_bwd(dlt_backend *be, int n, int len, int heads, int dh,
                                 const float *qkv, float p, uint64_t key, uint64_t first,
                                 const float *probs, const float *dout, float *dqkv, float *ws)
{
    DLT_CHECK(check_sizes(n, len, heads, dh, "attention_bwd"));
    const int D = heads * dh, ld = 3 * D;
    const float scale = 1.0f / sqrtf((float)dh);
    const size_t blk = (size_t)len * len;
    float *pd = ws, *dp = ws + blk;
    for (int b = 0; b < n; b++) {
        const float *base = qkv + (size_t)b * len * ld;
        float *dbase = dqkv + (size_t)b * len * ld;
        for (int h = 0; h < heads; h++) {
            const float *q = base + (size_t)h * dh, *k = q + D, *v = q + 2 * D;
            float *dq = dbase + (size_t)h * dh, *dk = dq + D, *dv = dq + 2 * D;
            const float *dO = dout + (size_t)b * len * D + (size_t)h * dh;
            const size_t bh = (size_t)b * heads + h;
            const float *P = probs + bh * blk;
            const float *Pd = P;
            if (p > 0.0f) {
                apply_dropout(len, p, key, first + bh * blk, P, pd);
                Pd = pd;
            }
            /* dV += Pd^T dO;  dPd = dO V^T */
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, len, dh, len, 1.0f, Pd, len, dO,
                        D, 1.0f, dv, ld);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, len, len, dh, 1.0f, dO, D, v, ld,
                        0.0f, dp, len);
            /* dP = dPd mask, the mask drawn again from the generator */
            if (p > 0.0f) {
                const float keep = 1.0f / (1.0f - p);
                for (size_t i = 0; i < blk; i++)
                    if (dlt_rand_u01(key, first + bh * blk + i) < p) dp[i] = 0.0f;
                    else dp[i] *= keep;
            }
            /* dS = P (dP - rowsum(dP P)) */
            for (int i = 0; i < len; i++) {
                const float *pr = P + (size_t)i * len;
                float *r = dp + (size_t)i * len;
                double dot = 0.0;
                for (int j = 0; j < len; j++) dot += (double)r[j] * pr[j];
                const float c = (float)dot;
                for (int j = 0; j < len; j++) r[j] = pr[j] * (r[j] - c);
            }
            /* dQ += scale dS K;  dK += scale dS^T Q */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, len, dh, len, scale, dp, len, k,
                        ld, 1.0f, dq, ld);
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, len, dh, len, scale, dp, len, q,
                        ld, 1.0f, dk, ld);
        }
    }
    return DLT_OK;
}

/* ---- memory-light attention: one query row at a time ---- */

static inline float dotf(int n, const float *restrict a, const float *restrict b)
{
    float s = 0.0f;
#pragma omp simd reduction(+ : s)
    for (int t = 0; t < n; t++) s += a[t] * b[t];
    return s;
}

/* y (n) += a x */
static inline void axpyf(int n, float a, const float *restrict x, float *restrict y)
{
#pragma omp simd
    for (int t = 0; t < n; t++) y[t] += a * x[t];
}

/* s (len) = scale q . k_j for every key j (rows of k with stride ld),
 * -INFINITY for masked keys; returns the maximum (-INFINITY: all masked). */
static float score_row(int len, int dh, int ld, float scale, const float *q, const float *k,
                       const float *ids, float *s)
{
    float mx = -INFINITY;
    for (int j = 0; j < len; j++) {
        if (ids && ids[j] == 0.0f) {
            s[j] = -INFINITY;
            continue;
        }
        s[j] = scale * dotf(dh, q, k + (size_t)j * ld);
        if (s[j] > mx) mx = s[j];
    }
    return mx;
}

/* Contract: backend.h attention_fwd_lse. Probabilities are normalised by
 * exp(-lse) exactly as backward recomputes them, so the two agree. */
dlt_status dlt_cpu_attention_fwd_lse(dlt_backend *be, int n, int len, int heads, int dh,
                                     const float *qkv, const float *tokens, float p,
                                     uint64_t key, uint64_t first, float *out, float *lse)
{
    DLT_CHECK(check_sizes(n, len, heads, dh, "attention_fwd_lse"));
    if (!(p >= 0.0f && p < 1.0f))
        return DLT_ERR(DLT_ERR_INVALID, "attention_fwd_lse: dropout %g is not in [0, 1)",
                       (double)p);
    const int D = heads * dh, ld = 3 * D;
    const float scale = 1.0f / sqrtf((float)dh), keep = 1.0f / (1.0f - p);
    const long pairs = (long)n * heads;
#pragma omp parallel for if (dlt_cpu_par((size_t)pairs * len * len)) schedule(static)
    for (long bh = 0; bh < pairs; bh++) {
        const int b = (int)(bh / heads), h = (int)(bh % heads);
        const float *base = qkv + (size_t)b * len * ld;
        const float *k = base + D + (size_t)h * dh, *v = k + D;
        const float *ids = tokens ? tokens + (size_t)b * len : NULL;
        float s[len];   /* (len) one row of scores, then of exp(s - max) */
        for (int i = 0; i < len; i++) {
            const float *q = base + (size_t)i * ld + (size_t)h * dh;
            float *o = out + ((size_t)b * len + i) * D + (size_t)h * dh;
            float *l = lse + (size_t)bh * len + i;
            for (int t = 0; t < dh; t++) o[t] = 0.0f;
            const float mx = score_row(len, dh, ld, scale, q, k, ids, s);
            if (mx == -INFINITY) {
                *l = -INFINITY;
                continue;
            }
            float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
            for (int j = 0; j < len; j++) {
                const float e = s[j] == -INFINITY ? 0.0f : dlt_cpu_expf(s[j] - mx);
                s[j] = e;
                sum += e;
            }
            *l = mx + logf(sum);
            const float inv = 1.0f / sum;
            const uint64_t row0 = first + ((uint64_t)bh * len + i) * len;
            for (int j = 0; j < len; j++) {
                float pj = s[j] * inv;
                if (pj == 0.0f) continue;   /* masked key */
                if (p > 0.0f) {
                    if (dlt_rand_u01(key, row0 + j) < p) continue;
                    pj *= keep;
                }
                axpyf(dh, pj, v + (size_t)j * ld, o);
            }
        }
    }
    return DLT_OK;
}

/* Contract: backend.h attention_bwd_lse. Per query row i: P_ij recomputed
 * from lse_i, dPd_ij = dout_i . v_j, dP = dPd mask, D_i = dout_i . out_i,
 * dS_ij = P_ij (dP_ij - D_i); then dv_j += Pd_ij dout_i,
 * dq_i += scale dS_ij k_j, dk_j += scale dS_ij q_i. ws is not used here
 * (D_i is computed per row). */
dlt_status dlt_cpu_attention_bwd_lse(dlt_backend *be, int n, int len, int heads, int dh,
                                     const float *qkv, const float *tokens, float p,
                                     uint64_t key, uint64_t first, const float *out,
                                     const float *lse, const float *dout, float *dqkv,
                                     float *ws)
{
    DLT_CHECK(check_sizes(n, len, heads, dh, "attention_bwd_lse"));
    if (!(p >= 0.0f && p < 1.0f))
        return DLT_ERR(DLT_ERR_INVALID, "attention_bwd_lse: dropout %g is not in [0, 1)",
                       (double)p);
    const int D = heads * dh, ld = 3 * D;
    const float scale = 1.0f / sqrtf((float)dh), keep = 1.0f / (1.0f - p);
    const long pairs = (long)n * heads;
#pragma omp parallel for if (dlt_cpu_par((size_t)pairs * len * len)) schedule(static)
    for (long bh = 0; bh < pairs; bh++) {
        const int b = (int)(bh / heads), h = (int)(bh % heads);
        const float *base = qkv + (size_t)b * len * ld;
        const float *k = base + D + (size_t)h * dh, *v = k + D;
        float *dbase = dqkv + (size_t)b * len * ld;
        float *dk = dbase + D + (size_t)h * dh, *dv = dk + D;
        const float *ids = tokens ? tokens + (size_t)b * len : NULL;
        float s[len];   /* (len) scores of one row, then its probabilities */
        for (int i = 0; i < len; i++) {
            const float li = lse[(size_t)bh * len + i];
            if (li == -INFINITY) continue;   /* every key masked: output 0, no gradient */
            const size_t orow = ((size_t)b * len + i) * D + (size_t)h * dh;
            const float *q = base + (size_t)i * ld + (size_t)h * dh, *dO = dout + orow;
            float *dq = dbase + (size_t)i * ld + (size_t)h * dh;
            const float Di = dotf(dh, dO, out + orow);
            score_row(len, dh, ld, scale, q, k, ids, s);
            const uint64_t row0 = first + ((uint64_t)bh * len + i) * len;
            for (int j = 0; j < len; j++) {
                if (s[j] == -INFINITY) continue;   /* masked: P = 0, no gradient */
                const float pj = dlt_cpu_expf(s[j] - li);
                float m = 1.0f;
                if (p > 0.0f) m = dlt_rand_u01(key, row0 + j) >= p ? keep : 0.0f;
                if (m != 0.0f) axpyf(dh, m * pj, dO, dv + (size_t)j * ld);
                const float dS = pj * (m * dotf(dh, dO, v + (size_t)j * ld) - Di);
                axpyf(dh, scale * dS, k + (size_t)j * ld, dq);
                axpyf(dh, scale * dS, q, dk + (size_t)j * ld);
            }
        }
    }
    return DLT_OK;
}
