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
 * query row instead of the (len, len) probabilities. It works on blocks of
 * LSE_BQ query rows against all keys: the block's scores are one sgemm into
 * scratch of LSE_BQ len floats, and the rest are the same gemms as above on
 * LSE_BQ rows at a time, so it runs at the probs ops' speed with
 * 2 LSE_BQ len floats of scratch instead of n heads len len. Backward
 * recomputes P = exp(s - lse) and uses rowsum(dP P) = dout_i . out_i
 * (out already has dropout applied), so it needs no second pass. */
#include <cblas.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>

#include "core/backend.h"
#include "core/cpu/cpu_math.h"
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

/* ---- memory-light attention: blocks of LSE_BQ query rows ---- */

/* Query rows per block; backend.h's ws size for the lse ops (2 x 64 len
 * floats after the n heads len) depends on it. */
#define LSE_BQ 64

/* s (bq, len) = scale Q_blk K^T for query rows i0.. of one (b, h); q, k
 * with row stride ld. Masked keys get -INFINITY. */
static void block_scores(int bq, int len, int dh, int ld, float scale, const float *q,
                         const float *k, const float *ids, float *s)
{
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, bq, len, dh, scale, q, ld, k, ld, 0.0f,
                s, len);
    if (!ids) return;
    for (int r = 0; r < bq; r++)
        for (int j = 0; j < len; j++)
            if (ids[j] == 0.0f) s[(size_t)r * len + j] = -INFINITY;
}

/* Contract: backend.h attention_fwd_lse; ws: the scratch size given there
 * (the CPU uses LSE_BQ len floats of it). Probabilities are normalised by
 * exp(-lse), exactly as backward recomputes them. */
dlt_status dlt_cpu_attention_fwd_lse(dlt_backend *be, int n, int len, int heads, int dh,
                                     const float *qkv, const float *tokens, float p,
                                     uint64_t key, uint64_t first, float *out, float *lse,
                                     float *ws)
{
    DLT_CHECK(check_sizes(n, len, heads, dh, "attention_fwd_lse"));
    if (!(p >= 0.0f && p < 1.0f))
        return DLT_ERR(DLT_ERR_INVALID, "attention_fwd_lse: dropout %g is not in [0, 1)",
                       (double)p);
    const int D = heads * dh, ld = 3 * D;
    const float scale = 1.0f / sqrtf((float)dh), keep = 1.0f / (1.0f - p);
    float *s = ws;   /* (LSE_BQ, len) scores, then dropped probabilities */
    for (int b = 0; b < n; b++) {
        const float *base = qkv + (size_t)b * len * ld;
        const float *ids = tokens ? tokens + (size_t)b * len : NULL;
        for (int h = 0; h < heads; h++) {
            const size_t bh = (size_t)b * heads + h;
            const float *k = base + D + (size_t)h * dh, *v = k + D;
            for (int i0 = 0; i0 < len; i0 += LSE_BQ) {
                const int bq = len - i0 < LSE_BQ ? len - i0 : LSE_BQ;
                block_scores(bq, len, dh, ld, scale, base + (size_t)i0 * ld + (size_t)h * dh, k,
                             ids, s);
                for (int r = 0; r < bq; r++) {
                    float *row = s + (size_t)r * len;
                    float *l = lse + bh * len + i0 + r;
                    float mx = -INFINITY;
                    for (int j = 0; j < len; j++) mx = row[j] > mx ? row[j] : mx;
                    if (mx == -INFINITY) {   /* every key masked: probabilities 0 */
                        for (int j = 0; j < len; j++) row[j] = 0.0f;
                        *l = -INFINITY;
                        continue;
                    }
                    float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
                    for (int j = 0; j < len; j++) {
                        const float e = row[j] == -INFINITY ? 0.0f : dlt_cpu_expf(row[j] - mx);
                        row[j] = e;
                        sum += e;
                    }
                    *l = mx + logf(sum);
                    const float inv = 1.0f / sum;
                    if (p > 0.0f) {
                        const uint64_t row0 = first + (bh * len + i0 + r) * len;
#pragma omp simd
                        for (int j = 0; j < len; j++)
                            row[j] = dlt_rand_u01(key, row0 + j) >= p ? row[j] * inv * keep
                                                                      : 0.0f;
                    } else {
                        for (int j = 0; j < len; j++) row[j] *= inv;
                    }
                }
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, bq, dh, len, 1.0f, s, len,
                            v, ld, 0.0f, out + ((size_t)b * len + i0) * D + (size_t)h * dh, D);
            }
        }
    }
    return DLT_OK;
}

/* Contract: backend.h attention_bwd_lse. Per block of query rows:
 * P = exp(S - lse) recomputed, dPd = dout V^T, dP = dPd mask,
 * D_i = dout_i . out_i, dS = P (dP - D_i); then dV += Pd^T dout,
 * dQ += scale dS K, dK += scale dS^T Q (gemms). ws: LSE_BQ len floats for
 * Pd, LSE_BQ len for dS (D_i is computed per row, not stored). */
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
    float *pd = ws, *ds = ws + (size_t)LSE_BQ * len;   /* (LSE_BQ, len) each */
    for (int b = 0; b < n; b++) {
        const float *base = qkv + (size_t)b * len * ld;
        float *dbase = dqkv + (size_t)b * len * ld;
        const float *ids = tokens ? tokens + (size_t)b * len : NULL;
        for (int h = 0; h < heads; h++) {
            const size_t bh = (size_t)b * heads + h;
            const float *k = base + D + (size_t)h * dh, *v = k + D;
            float *dk = dbase + D + (size_t)h * dh, *dv = dk + D;
            for (int i0 = 0; i0 < len; i0 += LSE_BQ) {
                const int bq = len - i0 < LSE_BQ ? len - i0 : LSE_BQ;
                const float *q = base + (size_t)i0 * ld + (size_t)h * dh;
                float *dq = dbase + (size_t)i0 * ld + (size_t)h * dh;
                const size_t orow = ((size_t)b * len + i0) * D + (size_t)h * dh;
                const float *dO = dout + orow;
                block_scores(bq, len, dh, ld, scale, q, k, ids, pd);
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, bq, len, dh, 1.0f, dO, D, v,
                            ld, 0.0f, ds, len);
                for (int r = 0; r < bq; r++) {
                    float *pr = pd + (size_t)r * len, *dr = ds + (size_t)r * len;
                    const float li = lse[bh * len + i0 + r];
                    if (li == -INFINITY) {   /* every key masked: no gradient */
                        for (int j = 0; j < len; j++) pr[j] = dr[j] = 0.0f;
                        continue;
                    }
                    const float *o = out + orow + (size_t)r * D, *g = dO + (size_t)r * D;
                    float Di = 0.0f;
#pragma omp simd reduction(+ : Di)
                    for (int t = 0; t < dh; t++) Di += g[t] * o[t];
#pragma omp simd
                    for (int j = 0; j < len; j++)   /* P (a loop of its own vectorises) */
                        pr[j] = pr[j] == -INFINITY ? 0.0f : dlt_cpu_expf(pr[j] - li);
                    if (p > 0.0f) {   /* Pd = P m, dS = P (dPd m - D) */
                        const uint64_t row0 = first + (bh * len + i0 + r) * len;
#pragma omp simd
                        for (int j = 0; j < len; j++) {
                            const float m = dlt_rand_u01(key, row0 + j) >= p ? keep : 0.0f;
                            dr[j] = pr[j] * (dr[j] * m - Di);
                            pr[j] *= m;
                        }
                    } else {
#pragma omp simd
                        for (int j = 0; j < len; j++) dr[j] = pr[j] * (dr[j] - Di);
                    }
                }
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, len, dh, bq, 1.0f, pd, len,
                            dO, D, 1.0f, dv, ld);
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, bq, dh, len, scale, ds,
                            len, k, ld, 1.0f, dq, ld);
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, len, dh, bq, scale, ds, len,
                            q, ld, 1.0f, dk, ld);
            }
        }
    }
    return DLT_OK;
}
