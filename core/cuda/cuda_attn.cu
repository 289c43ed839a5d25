/* CUDA multi-head scaled dot-product attention, forward and backward, with
 * the contract of backend.h (the CPU original is core/cpu/cpu_attn.c).
 *
 * Not flash-style: the probabilities (n, heads, len, len) are part of the
 * contract (the layer keeps them for backward), so they are materialised.
 * For each sample the heads are one cuBLAS strided-batched gemm: q, k and v
 * are read in place from the packed projection qkv (n, len, 3D) through
 * leading dimension 3D, head h at column offset h dh (batch stride dh), so
 * nothing is copied or transposed; output heads land at column h dh of
 * out (n, len, D). The gemms run in the backend's precision (TF32/bf16/fp16
 * inputs, fp32 accumulation and storage).
 *
 * Between the gemms a warp-per-row kernel does the masked softmax (keys
 * whose token id is 0 get probability exactly 0; a fully masked row is 0)
 * and draws the dropout mask from the counter generator at the element's
 * index in probs, exactly as the CPU does, so masks agree bit for bit and
 * backward redraws the mask instead of storing it. Backward needs the
 * dropped probabilities and dP for one sample at a time: 2 heads len len
 * floats of backend scratch (the contract's ws, sized for one head, is not
 * used). */
#include <math.h>
#include <stdint.h>

#include "core/cuda/cuda_internal.h"
#include "core/cuda/cuda_rng.cuh"
#include "core/cuda/cuda_util.cuh"

#define ROWS_PER_BLOCK 8 /* warps per block, one row each */

__device__ __forceinline__ float warp_sum_f(float v)
{
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ __forceinline__ float warp_max_f(float v)
{
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

/* s (rows, len) scores of one sample -> probabilities in place; if pd is
 * not NULL, pd = dropout(s) with element index first + row len + j. */
__global__ void k_attn_softmax(int rows, int len, float *__restrict__ s,
                               const float *__restrict__ ids, float p, uint64_t key,
                               uint64_t first, float *__restrict__ pd)
{
    const int r = blockIdx.x * ROWS_PER_BLOCK + (threadIdx.x >> 5), lane = threadIdx.x & 31;
    if (r >= rows) return;
    float *row = s + (size_t)r * len;
    float mx = -INFINITY;
    for (int j = lane; j < len; j += 32)
        if (!ids || ids[j] != 0.0f) mx = fmaxf(mx, row[j]);
    mx = warp_max_f(mx);
    if (mx == -INFINITY) {
        for (int j = lane; j < len; j += 32) {
            row[j] = 0.0f;
            if (pd) pd[(size_t)r * len + j] = 0.0f;
        }
        return;
    }
    float sum = 0.0f;
    for (int j = lane; j < len; j += 32) {
        const float e = (!ids || ids[j] != 0.0f) ? __expf(row[j] - mx) : 0.0f;
        row[j] = e;
        sum += e;
    }
    const float inv = 1.0f / warp_sum_f(sum);
    const float keep = 1.0f / (1.0f - p);
    for (int j = lane; j < len; j += 32) {
        const float v = row[j] * inv;
        row[j] = v;
        if (pd) {
            const uint64_t idx = first + (uint64_t)r * len + j;
            pd[(size_t)r * len + j] = dlt_dev_rand_u01(key, idx) >= p ? v * keep : 0.0f;
        }
    }
}

/* pd = dropout(P) for one sample's rows (len each), as in the forward. */
__global__ void k_attn_dropout(size_t n, const float *__restrict__ P, float p, uint64_t key,
                               uint64_t first, float *__restrict__ pd)
{
    const float keep = 1.0f / (1.0f - p);
    GRID_LOOP(i, n) pd[i] = dlt_dev_rand_u01(key, first + i) >= p ? P[i] * keep : 0.0f;
}

/* dp (rows, len): apply the dropout mask, then dS = P (dP - rowsum(dP P)). */
__global__ void k_attn_softmax_bwd(int rows, int len, const float *__restrict__ P,
                                   float *__restrict__ dp, float p, uint64_t key, uint64_t first)
{
    const int r = blockIdx.x * ROWS_PER_BLOCK + (threadIdx.x >> 5), lane = threadIdx.x & 31;
    if (r >= rows) return;
    const float *pr = P + (size_t)r * len;
    float *d = dp + (size_t)r * len;
    const float keep = p > 0.0f ? 1.0f / (1.0f - p) : 1.0f;
    float dot = 0.0f;
    for (int j = lane; j < len; j += 32) {
        float v = d[j];
        if (p > 0.0f)
            v = dlt_dev_rand_u01(key, first + (uint64_t)r * len + j) < p ? 0.0f : v * keep;
        d[j] = v;
        dot += v * pr[j];
    }
    dot = warp_sum_f(dot);
    for (int j = lane; j < len; j += 32) d[j] = pr[j] * (d[j] - dot);
}

static dlt_status check_sizes(int n, int len, int heads, int dh, const char *op)
{
    if (n < 0 || len <= 0 || heads <= 0 || dh <= 0)
        return DLT_ERR(DLT_ERR_SHAPE, "%s: bad sizes n=%d len=%d heads=%d dh=%d", op, n, len,
                       heads, dh);
    return DLT_OK;
}

extern "C" dlt_status dlt_cuda_attention_fwd(dlt_backend *be, int n, int len, int heads, int dh,
                                             const float *qkv, const float *tokens, float p,
                                             uint64_t key, uint64_t first, float *probs,
                                             float *out, float *ws)
{
    DLT_CHECK(check_sizes(n, len, heads, dh, "attention_fwd"));
    if (!(p >= 0.0f && p < 1.0f))
        return DLT_ERR(DLT_ERR_INVALID, "attention_fwd: dropout %g is not in [0, 1)", (double)p);
    if (n == 0) return DLT_OK;
    CUDA_ENTER(be);
    cudaStream_t st = dlt_cuda_of(be)->stream;
    const int D = heads * dh, ld = 3 * D, rows = heads * len;
    const float scale = 1.0f / sqrtf((float)dh);
    const size_t blk = (size_t)len * len;
    float *pd = NULL;
    if (p > 0.0f) {
        void *sc;
        DLT_CHECK(dlt_cuda_scratch(be, (size_t)heads * blk * sizeof(float), &sc));
        pd = (float *)sc;
    }
    for (int b = 0; b < n; b++) {
        const float *q = qkv + (size_t)b * len * ld, *k = q + D, *v = q + 2 * D;
        float *s = probs + (size_t)b * heads * blk;
        /* S_h = scale Q_h K_h^T for every head */
        DLT_CHECK(dlt_cuda_gemm_batched(be, 0, 1, len, len, dh, scale, q, ld, dh, k, ld, dh, 0.0f,
                                        s, len, (long long)blk, heads));
        k_attn_softmax<<<(rows + ROWS_PER_BLOCK - 1) / ROWS_PER_BLOCK, 32 * ROWS_PER_BLOCK, 0, st>>>(
            rows, len, s, tokens ? tokens + (size_t)b * len : NULL, p, key,
            first + (uint64_t)b * heads * blk, pd);
        KERNEL_CHECK("attn_softmax");
        /* O_h = dropout(P_h) V_h */
        DLT_CHECK(dlt_cuda_gemm_batched(be, 0, 0, len, dh, len, 1.0f, pd ? pd : s, len,
                                        (long long)blk, v, ld, dh, 0.0f,
                                        out + (size_t)b * len * D, D, dh, heads));
    }
    return DLT_OK;
}

extern "C" dlt_status dlt_cuda_attention_bwd(dlt_backend *be, int n, int len, int heads, int dh,
                                             const float *qkv, float p, uint64_t key,
                                             uint64_t first, const float *probs,
                                             const float *dout, float *dqkv, float *ws)
{
    DLT_CHECK(check_sizes(n, len, heads, dh, "attention_bwd"));
    if (n == 0) return DLT_OK;
    CUDA_ENTER(be);
    cudaStream_t st = dlt_cuda_of(be)->stream;
    const int D = heads * dh, ld = 3 * D, rows = heads * len;
    const float scale = 1.0f / sqrtf((float)dh);
    const size_t blk = (size_t)len * len, per = (size_t)heads * blk;
    void *sc;
    DLT_CHECK(dlt_cuda_scratch(be, 2 * per * sizeof(float), &sc));
    float *pd = (float *)sc, *dp = pd + per;
    for (int b = 0; b < n; b++) {
        const float *q = qkv + (size_t)b * len * ld, *k = q + D, *v = q + 2 * D;
        float *dq = dqkv + (size_t)b * len * ld, *dk = dq + D, *dv = dq + 2 * D;
        const float *dO = dout + (size_t)b * len * D;
        const float *P = probs + (size_t)b * per;
        const uint64_t fb = first + (uint64_t)b * per;
        const float *Pd = P;
        if (p > 0.0f) {
            k_attn_dropout<<<dlt_cuda_blocks(per), DLT_CUDA_THREADS, 0, st>>>(per, P, p, key, fb, pd);
            KERNEL_CHECK("attn_dropout");
            Pd = pd;
        }
        /* dV_h += Pd_h^T dO_h;  dPd_h = dO_h V_h^T */
        DLT_CHECK(dlt_cuda_gemm_batched(be, 1, 0, len, dh, len, 1.0f, Pd, len, (long long)blk, dO,
                                        D, dh, 1.0f, dv, ld, dh, heads));
        DLT_CHECK(dlt_cuda_gemm_batched(be, 0, 1, len, len, dh, 1.0f, dO, D, dh, v, ld, dh, 0.0f,
                                        dp, len, (long long)blk, heads));
        k_attn_softmax_bwd<<<(rows + ROWS_PER_BLOCK - 1) / ROWS_PER_BLOCK, 32 * ROWS_PER_BLOCK, 0,
                             st>>>(rows, len, P, dp, p, key, fb);
        KERNEL_CHECK("attn_softmax_bwd");
        /* dQ_h += scale dS_h K_h;  dK_h += scale dS_h^T Q_h */
        DLT_CHECK(dlt_cuda_gemm_batched(be, 0, 0, len, dh, len, scale, dp, len, (long long)blk, k,
                                        ld, dh, 1.0f, dq, ld, dh, heads));
        DLT_CHECK(dlt_cuda_gemm_batched(be, 1, 0, len, dh, len, scale, dp, len, (long long)blk, q,
                                        ld, dh, 1.0f, dk, ld, dh, heads));
    }
    return DLT_OK;
}
