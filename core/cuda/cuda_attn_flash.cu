/* CUDA memory-light (flash-style) multi-head attention: attention_fwd_lse
 * and attention_bwd_lse of backend.h; the CPU reference is the blocked
 * version in core/cpu/cpu_attn.c.
 *
 * No (len, len) tensor ever reaches global memory. Each block of the
 * forward owns FL_ROWS_PER_BLOCK query rows of one (sample, head), keeps
 * them in shared memory and streams the keys and values through shared
 * memory in tiles of 32, one key per lane: a lane computes its key's score
 * against the warp's FL_ROWS queries, the warp reduces the tile's maximum
 * and sum with shuffles (online softmax: running maximum m, running sum l,
 * the accumulator rescaled by exp(m_old - m_new)), and the dropped
 * probabilities go through a small per-warp shared array into the
 * accumulation over values, where each lane owns dh/32 output columns. The
 * row's log-sum-exp m + log(l) is saved for backward. Dropout draws the
 * counter generator at the element's index in the (n, heads, len, len)
 * probability tensor, as every other attention op, so masks agree bit for
 * bit with the CPU.
 *
 * Backward (FlashAttention-2 style) recomputes P = exp(s - lse) and never
 * stores it. delta_i = dout_i . out_i (exact with dropout, since out already
 * has dropout applied) is computed first into ws. Then two kernels: one
 * block per 16 keys streams the queries in tiles of 32 (one query per lane)
 * and accumulates dK and dV in registers; one block per 16 queries streams
 * the keys and accumulates dQ. Each gradient element is owned by exactly one
 * thread, so there are no atomics and the sums are deterministic, at the
 * price of computing the scores and dP twice (dQ pass).
 *
 * Precision: plain fp32 FMA (SIMT), whatever the backend's gemm precision;
 * tensor cores (WMMA) are future work. Supported: any len (tails are
 * masked), head dims 1..FL_MAX_DH (each lane holds up to FL_MAX_DH / 32
 * columns in registers; larger gives DLT_ERR_UNSUPPORTED naming
 * attention_impl: probs). Shared-memory rows that lanes read with a
 * lane-dependent row use a stride of dh + 1, which keeps even dh free of
 * bank conflicts. */
#include <math.h>
#include <stdint.h>

#include "core/cuda/cuda_internal.h"
#include "core/cuda/cuda_rng.cuh"
#include "core/cuda/cuda_util.cuh"

#define FL_WARPS 4                                /* warps per block */
#define FL_ROWS 4                                 /* rows owned per warp */
#define FL_ROWS_PER_BLOCK (FL_WARPS * FL_ROWS)    /* 16 */
#define FL_TILE 32                                /* streamed rows per tile: one per lane */
#define FL_THREADS (FL_WARPS * 32)
#define FL_MAX_DH 128

__device__ __forceinline__ float fl_warp_sum(float v)
{
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ __forceinline__ float fl_warp_max(float v)
{
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

/* 1 if key j of the sample with ids (NULL: no mask) takes part. */
__device__ __forceinline__ bool fl_key_ok(const float *ids, int j, int len)
{
    return j < len && (!ids || ids[j] != 0.0f);
}

/* Dropout factor of probability element (bh, i, j): 1/(1-p) kept, 0 dropped. */
__device__ __forceinline__ float fl_keep(float p, float keep, uint64_t key, uint64_t first,
                                         int bh, int len, int i, int j)
{
    if (p <= 0.0f) return 1.0f;
    const uint64_t idx = first + ((uint64_t)bh * len + (uint64_t)i) * len + (uint64_t)j;
    return dlt_dev_rand_u01(key, idx) >= p ? keep : 0.0f;
}

/* rows (count) of a (len, *) matrix with row stride ld, column offset 0 at
 * src, into dst with row stride lds: rows past len are zero. */
__device__ __forceinline__ void fl_load_rows(float *dst, int lds, const float *src, size_t ld,
                                             int row0, int count, int len, int dh)
{
    for (int e = threadIdx.x; e < count * dh; e += blockDim.x) {
        const int r = e / dh, d = e - r * dh, i = row0 + r;
        dst[r * lds + d] = i < len ? src[(size_t)i * ld + d] : 0.0f;
    }
}

/* ---- forward: grid (n heads, ceil(len / 16)); DPL = ceil(dh / 32) ---- */
template <int DPL>
__global__ void __launch_bounds__(FL_THREADS)
k_flash_fwd(int len, int heads, int dh, float scale, const float *__restrict__ qkv,
            const float *__restrict__ tokens, float p, uint64_t key, uint64_t first,
            float *__restrict__ out, float *__restrict__ lse)
{
    extern __shared__ float sm[];
    const int ldk = dh + 1;
    float *Qs = sm;                              /* (16, dh) this block's queries */
    float *Ks = Qs + FL_ROWS_PER_BLOCK * dh;     /* (32, dh + 1) key tile */
    float *Vs = Ks + FL_TILE * ldk;              /* (32, dh) value tile */
    float *Ps = Vs + FL_TILE * dh;               /* (4 warps, 4 rows, 32) dropped probabilities */
    const int bh = blockIdx.x, b = bh / heads, h = bh - b * heads;
    const int D = heads * dh, ld = 3 * D;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int i0 = blockIdx.y * FL_ROWS_PER_BLOCK, wr0 = warp * FL_ROWS;
    const float *qb = qkv + (size_t)b * len * ld + (size_t)h * dh;   /* q of token 0, head h */
    const float *ids = tokens ? tokens + (size_t)b * len : NULL;
    const float keep = 1.0f / (1.0f - p);
    float *pw = Ps + warp * FL_ROWS * FL_TILE;

    fl_load_rows(Qs, dh, qb, ld, i0, FL_ROWS_PER_BLOCK, len, dh);
    float m[FL_ROWS], l[FL_ROWS], acc[FL_ROWS][DPL];
#pragma unroll
    for (int r = 0; r < FL_ROWS; r++) {
        m[r] = -INFINITY;
        l[r] = 0.0f;
#pragma unroll
        for (int t = 0; t < DPL; t++) acc[r][t] = 0.0f;
    }
    for (int j0 = 0; j0 < len; j0 += FL_TILE) {
        __syncthreads();   /* the previous tile is consumed (first pass: Qs is written) */
        fl_load_rows(Ks, ldk, qb + D, ld, j0, FL_TILE, len, dh);
        fl_load_rows(Vs, dh, qb + 2 * D, ld, j0, FL_TILE, len, dh);
        __syncthreads();
        const int j = j0 + lane;
        const bool ok = fl_key_ok(ids, j, len);
        float s[FL_ROWS];
#pragma unroll
        for (int r = 0; r < FL_ROWS; r++) s[r] = 0.0f;
        for (int d = 0; d < dh; d++) {
            const float kd = Ks[lane * ldk + d];
#pragma unroll
            for (int r = 0; r < FL_ROWS; r++) s[r] += Qs[(wr0 + r) * dh + d] * kd;
        }
#pragma unroll
        for (int r = 0; r < FL_ROWS; r++) {
            const float sr = ok ? s[r] * scale : -INFINITY;
            const float mnew = fmaxf(m[r], fl_warp_max(sr));   /* warp-uniform */
            /* m[r] finite implies mnew finite; ok implies sr and mnew finite */
            const float alpha = m[r] == -INFINITY ? 0.0f : __expf(m[r] - mnew);
            float pr = ok ? __expf(sr - mnew) : 0.0f;
            l[r] = l[r] * alpha + fl_warp_sum(pr);
            m[r] = mnew;
#pragma unroll
            for (int t = 0; t < DPL; t++) acc[r][t] *= alpha;
            if (ok) pr *= fl_keep(p, keep, key, first, bh, len, i0 + wr0 + r, j);
            pw[r * FL_TILE + lane] = pr;
        }
        __syncwarp();
        const int nj = min(FL_TILE, len - j0);
        for (int jj = 0; jj < nj; jj++) {
#pragma unroll
            for (int t = 0; t < DPL; t++) {
                const int d = lane + 32 * t;
                const float vd = d < dh ? Vs[jj * dh + d] : 0.0f;
#pragma unroll
                for (int r = 0; r < FL_ROWS; r++) acc[r][t] += pw[r * FL_TILE + jj] * vd;
            }
        }
        __syncwarp();   /* pw is rewritten by the next tile */
    }
#pragma unroll
    for (int r = 0; r < FL_ROWS; r++) {
        const int i = i0 + wr0 + r;
        if (i >= len) continue;
        const float inv = l[r] > 0.0f ? 1.0f / l[r] : 0.0f;   /* all keys masked: 0 */
        float *o = out + ((size_t)b * len + i) * D + (size_t)h * dh;
#pragma unroll
        for (int t = 0; t < DPL; t++) {
            const int d = lane + 32 * t;
            if (d < dh) o[d] = acc[r][t] * inv;
        }
        if (lane == 0) lse[(size_t)bh * len + i] = l[r] > 0.0f ? m[r] + logf(l[r]) : -INFINITY;
    }
}

/* ---- backward, step 1: delta (n heads len) = rowsum(dout out), a warp a row ---- */
__global__ void k_flash_delta(int rows, int len, int heads, int dh, const float *__restrict__ out,
                              const float *__restrict__ dout, float *__restrict__ delta)
{
    const int r = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5), lane = threadIdx.x & 31;
    if (r >= rows) return;
    const int bh = r / len, i = r - bh * len, b = bh / heads, h = bh - b * heads;
    const size_t off = ((size_t)b * len + i) * heads * dh + (size_t)h * dh;
    float s = 0.0f;
    for (int d = lane; d < dh; d += 32) s += dout[off + d] * out[off + d];
    s = fl_warp_sum(s);
    if (lane == 0) delta[r] = s;
}

/* ---- backward, step 2: dK, dV; grid (n heads, ceil(len / 16)) over keys ---- */
template <int DPL>
__global__ void __launch_bounds__(FL_THREADS)
k_flash_bwd_dkdv(int len, int heads, int dh, float scale, const float *__restrict__ qkv,
                 const float *__restrict__ tokens, float p, uint64_t key, uint64_t first,
                 const float *__restrict__ dout, const float *__restrict__ lse,
                 const float *__restrict__ delta, float *__restrict__ dqkv)
{
    extern __shared__ float sm[];
    const int ldq = dh + 1;
    float *Ks = sm;                              /* (16, dh) this block's keys */
    float *Vs = Ks + FL_ROWS_PER_BLOCK * dh;     /* (16, dh) their values */
    float *Qs = Vs + FL_ROWS_PER_BLOCK * dh;     /* (32, dh + 1) query tile */
    float *Gs = Qs + FL_TILE * ldq;              /* (32, dh + 1) dout tile */
    float *Ls = Gs + FL_TILE * ldq;              /* (32) lse of the tile's queries */
    float *Ds = Ls + FL_TILE;                    /* (32) delta of the tile's queries */
    float *Ps = Ds + FL_TILE;                    /* (4, 4, 32) dropped probabilities */
    float *Ss = Ps + FL_WARPS * FL_ROWS * FL_TILE;   /* (4, 4, 32) dS */
    const int bh = blockIdx.x, b = bh / heads, h = bh - b * heads;
    const int D = heads * dh, ld = 3 * D;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int j0 = blockIdx.y * FL_ROWS_PER_BLOCK, wr0 = warp * FL_ROWS;
    const float *qb = qkv + (size_t)b * len * ld + (size_t)h * dh;
    const float *gb = dout + (size_t)b * len * D + (size_t)h * dh;
    const float *ids = tokens ? tokens + (size_t)b * len : NULL;
    const float keep = 1.0f / (1.0f - p);
    float *pw = Ps + warp * FL_ROWS * FL_TILE, *sw = Ss + warp * FL_ROWS * FL_TILE;

    fl_load_rows(Ks, dh, qb + D, ld, j0, FL_ROWS_PER_BLOCK, len, dh);
    fl_load_rows(Vs, dh, qb + 2 * D, ld, j0, FL_ROWS_PER_BLOCK, len, dh);
    bool kok[FL_ROWS];
    float dk[FL_ROWS][DPL], dv[FL_ROWS][DPL];
#pragma unroll
    for (int r = 0; r < FL_ROWS; r++) {
        kok[r] = fl_key_ok(ids, j0 + wr0 + r, len);
#pragma unroll
        for (int t = 0; t < DPL; t++) dk[r][t] = dv[r][t] = 0.0f;
    }
    for (int i0 = 0; i0 < len; i0 += FL_TILE) {
        __syncthreads();
        fl_load_rows(Qs, ldq, qb, ld, i0, FL_TILE, len, dh);
        fl_load_rows(Gs, ldq, gb, D, i0, FL_TILE, len, dh);
        if (threadIdx.x < FL_TILE) {
            const int i = i0 + threadIdx.x;
            Ls[threadIdx.x] = i < len ? lse[(size_t)bh * len + i] : -INFINITY;
            Ds[threadIdx.x] = i < len ? delta[(size_t)bh * len + i] : 0.0f;
        }
        __syncthreads();
        const int i = i0 + lane;   /* this lane's query */
        const float li = Ls[lane], di = Ds[lane];
        float s[FL_ROWS], dp[FL_ROWS];
#pragma unroll
        for (int r = 0; r < FL_ROWS; r++) s[r] = dp[r] = 0.0f;
        for (int d = 0; d < dh; d++) {
            const float qd = Qs[lane * ldq + d], gd = Gs[lane * ldq + d];
#pragma unroll
            for (int r = 0; r < FL_ROWS; r++) {
                s[r] += qd * Ks[(wr0 + r) * dh + d];
                dp[r] += gd * Vs[(wr0 + r) * dh + d];
            }
        }
#pragma unroll
        for (int r = 0; r < FL_ROWS; r++) {
            /* li is -INFINITY past len and for fully masked rows: P = 0 */
            const bool live = kok[r] && li != -INFINITY;
            const float pr = live ? __expf(s[r] * scale - li) : 0.0f;
            const float mk = live ? fl_keep(p, keep, key, first, bh, len, i, j0 + wr0 + r) : 0.0f;
            pw[r * FL_TILE + lane] = pr * mk;
            sw[r * FL_TILE + lane] = pr * (dp[r] * mk - di);
        }
        __syncwarp();
        const int ni = min(FL_TILE, len - i0);
        for (int ii = 0; ii < ni; ii++) {
#pragma unroll
            for (int t = 0; t < DPL; t++) {
                const int d = lane + 32 * t;
                const float qd = d < dh ? Qs[ii * ldq + d] : 0.0f;
                const float gd = d < dh ? Gs[ii * ldq + d] : 0.0f;
#pragma unroll
                for (int r = 0; r < FL_ROWS; r++) {
                    dv[r][t] += pw[r * FL_TILE + ii] * gd;
                    dk[r][t] += sw[r * FL_TILE + ii] * qd;
                }
            }
        }
        __syncwarp();
    }
#pragma unroll
    for (int r = 0; r < FL_ROWS; r++) {
        const int j = j0 + wr0 + r;
        if (j >= len) continue;
        float *g = dqkv + ((size_t)b * len + j) * ld + (size_t)h * dh;
#pragma unroll
        for (int t = 0; t < DPL; t++) {
            const int d = lane + 32 * t;
            if (d < dh) {
                g[D + d] += scale * dk[r][t];
                g[2 * D + d] += dv[r][t];
            }
        }
    }
}

/* ---- backward, step 3: dQ; grid (n heads, ceil(len / 16)) over queries ---- */
template <int DPL>
__global__ void __launch_bounds__(FL_THREADS)
k_flash_bwd_dq(int len, int heads, int dh, float scale, const float *__restrict__ qkv,
               const float *__restrict__ tokens, float p, uint64_t key, uint64_t first,
               const float *__restrict__ dout, const float *__restrict__ lse,
               const float *__restrict__ delta, float *__restrict__ dqkv)
{
    extern __shared__ float sm[];
    const int ldk = dh + 1;
    float *Qs = sm;                              /* (16, dh) this block's queries */
    float *Gs = Qs + FL_ROWS_PER_BLOCK * dh;     /* (16, dh) their dout */
    float *Ks = Gs + FL_ROWS_PER_BLOCK * dh;     /* (32, dh + 1) key tile */
    float *Vs = Ks + FL_TILE * ldk;              /* (32, dh + 1) value tile */
    float *Ss = Vs + FL_TILE * ldk;              /* (4, 4, 32) dS */
    const int bh = blockIdx.x, b = bh / heads, h = bh - b * heads;
    const int D = heads * dh, ld = 3 * D;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int i0 = blockIdx.y * FL_ROWS_PER_BLOCK, wr0 = warp * FL_ROWS;
    const float *qb = qkv + (size_t)b * len * ld + (size_t)h * dh;
    const float *gb = dout + (size_t)b * len * D + (size_t)h * dh;
    const float *ids = tokens ? tokens + (size_t)b * len : NULL;
    const float keep = 1.0f / (1.0f - p);
    float *sw = Ss + warp * FL_ROWS * FL_TILE;

    fl_load_rows(Qs, dh, qb, ld, i0, FL_ROWS_PER_BLOCK, len, dh);
    fl_load_rows(Gs, dh, gb, D, i0, FL_ROWS_PER_BLOCK, len, dh);
    float li[FL_ROWS], di[FL_ROWS], dq[FL_ROWS][DPL];
#pragma unroll
    for (int r = 0; r < FL_ROWS; r++) {
        const int i = i0 + wr0 + r;
        li[r] = i < len ? lse[(size_t)bh * len + i] : -INFINITY;
        di[r] = i < len ? delta[(size_t)bh * len + i] : 0.0f;
#pragma unroll
        for (int t = 0; t < DPL; t++) dq[r][t] = 0.0f;
    }
    for (int j0 = 0; j0 < len; j0 += FL_TILE) {
        __syncthreads();
        fl_load_rows(Ks, ldk, qb + D, ld, j0, FL_TILE, len, dh);
        fl_load_rows(Vs, ldk, qb + 2 * D, ld, j0, FL_TILE, len, dh);
        __syncthreads();
        const int j = j0 + lane;   /* this lane's key */
        const bool ok = fl_key_ok(ids, j, len);
        float s[FL_ROWS], dp[FL_ROWS];
#pragma unroll
        for (int r = 0; r < FL_ROWS; r++) s[r] = dp[r] = 0.0f;
        for (int d = 0; d < dh; d++) {
            const float kd = Ks[lane * ldk + d], vd = Vs[lane * ldk + d];
#pragma unroll
            for (int r = 0; r < FL_ROWS; r++) {
                s[r] += Qs[(wr0 + r) * dh + d] * kd;
                dp[r] += Gs[(wr0 + r) * dh + d] * vd;
            }
        }
#pragma unroll
        for (int r = 0; r < FL_ROWS; r++) {
            const bool live = ok && li[r] != -INFINITY;
            const float pr = live ? __expf(s[r] * scale - li[r]) : 0.0f;
            const float mk = live ? fl_keep(p, keep, key, first, bh, len, i0 + wr0 + r, j) : 0.0f;
            sw[r * FL_TILE + lane] = pr * (dp[r] * mk - di[r]);
        }
        __syncwarp();
        const int nj = min(FL_TILE, len - j0);
        for (int jj = 0; jj < nj; jj++) {
#pragma unroll
            for (int t = 0; t < DPL; t++) {
                const int d = lane + 32 * t;
                const float kd = d < dh ? Ks[jj * ldk + d] : 0.0f;
#pragma unroll
                for (int r = 0; r < FL_ROWS; r++) dq[r][t] += sw[r * FL_TILE + jj] * kd;
            }
        }
        __syncwarp();
    }
#pragma unroll
    for (int r = 0; r < FL_ROWS; r++) {
        const int i = i0 + wr0 + r;
        if (i >= len) continue;
        float *g = dqkv + ((size_t)b * len + i) * ld + (size_t)h * dh;
#pragma unroll
        for (int t = 0; t < DPL; t++) {
            const int d = lane + 32 * t;
            if (d < dh) g[d] += scale * dq[r][t];
        }
    }
}

/* ---- host side ---- */

/* Dynamic shared memory of each kernel, in bytes, for head dim dh. */
static size_t fwd_smem(int dh)
{
    return sizeof(float) * ((size_t)FL_ROWS_PER_BLOCK * dh + (size_t)FL_TILE * (dh + 1) +
                            (size_t)FL_TILE * dh + FL_WARPS * FL_ROWS * FL_TILE);
}
static size_t dkdv_smem(int dh)
{
    return sizeof(float) * (2 * (size_t)FL_ROWS_PER_BLOCK * dh + 2 * (size_t)FL_TILE * (dh + 1) +
                            2 * FL_TILE + 2 * FL_WARPS * FL_ROWS * FL_TILE);
}
static size_t dq_smem(int dh)
{
    return sizeof(float) * (2 * (size_t)FL_ROWS_PER_BLOCK * dh + 2 * (size_t)FL_TILE * (dh + 1) +
                            FL_WARPS * FL_ROWS * FL_TILE);
}

/* Allows kernel f `bytes` of dynamic shared memory (above 48 KiB needs an
 * opt-in, which the device must offer). */
template <typename F>
static dlt_status fl_smem(dlt_backend *be, F f, size_t bytes, const char *name)
{
    if (bytes <= 48 * 1024) return DLT_OK;
    const dlt_cuda_impl *impl = dlt_cuda_of(be);
    if (bytes > impl->prop.sharedMemPerBlockOptin)
        return DLT_ERR(DLT_ERR_UNSUPPORTED, "%s: needs %zu bytes of shared memory, the GPU "
                       "offers %zu (set attention_impl: probs)", name, bytes,
                       (size_t)impl->prop.sharedMemPerBlockOptin);
    CUDA_CHECK(cudaFuncSetAttribute(f, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes));
    return DLT_OK;
}

/* Blocks of FL_ROWS_PER_BLOCK rows covering len. */
static int fl_blocks(int len) { return (len + FL_ROWS_PER_BLOCK - 1) / FL_ROWS_PER_BLOCK; }

static dlt_status check_args(int n, int len, int heads, int dh, float p, const char *op)
{
    if (n < 0 || len <= 0 || heads <= 0 || dh <= 0)
        return DLT_ERR(DLT_ERR_SHAPE, "%s: bad sizes n=%d len=%d heads=%d dh=%d", op, n, len,
                       heads, dh);
    if (!(p >= 0.0f && p < 1.0f))
        return DLT_ERR(DLT_ERR_INVALID, "%s: dropout %g is not in [0, 1)", op, (double)p);
    if (dh > FL_MAX_DH)
        return DLT_ERR(DLT_ERR_UNSUPPORTED, "%s: head dim %d > %d is not supported by the "
                       "flash kernels (set attention_impl: probs)", op, dh, FL_MAX_DH);
    if ((long long)n * heads * len > 0x7fffffffLL || fl_blocks(len) > 65535)
        return DLT_ERR(DLT_ERR_UNSUPPORTED, "%s: n heads len = %lld is too large for the "
                       "launch grid", op, (long long)n * heads * len);
    return DLT_OK;
}

template <int DPL>
static dlt_status launch_fwd(dlt_backend *be, int n, int len, int heads, int dh,
                             const float *qkv, const float *tokens, float p, uint64_t key,
                             uint64_t first, float *out, float *lse)
{
    const size_t sm = fwd_smem(dh);
    DLT_CHECK(fl_smem(be, k_flash_fwd<DPL>, sm, "attention_fwd_lse"));
    const dim3 grid((unsigned)(n * heads), (unsigned)fl_blocks(len));
    k_flash_fwd<DPL><<<grid, FL_THREADS, sm, dlt_cuda_of(be)->stream>>>(
        len, heads, dh, 1.0f / sqrtf((float)dh), qkv, tokens, p, key, first, out, lse);
    KERNEL_CHECK("flash_fwd");
    return DLT_OK;
}

template <int DPL>
static dlt_status launch_bwd(dlt_backend *be, int n, int len, int heads, int dh,
                             const float *qkv, const float *tokens, float p, uint64_t key,
                             uint64_t first, const float *lse, const float *dout,
                             const float *delta, float *dqkv)
{
    cudaStream_t st = dlt_cuda_of(be)->stream;
    const float scale = 1.0f / sqrtf((float)dh);
    const dim3 grid((unsigned)(n * heads), (unsigned)fl_blocks(len));
    const size_t s1 = dkdv_smem(dh), s2 = dq_smem(dh);
    DLT_CHECK(fl_smem(be, k_flash_bwd_dkdv<DPL>, s1, "attention_bwd_lse"));
    DLT_CHECK(fl_smem(be, k_flash_bwd_dq<DPL>, s2, "attention_bwd_lse"));
    k_flash_bwd_dkdv<DPL><<<grid, FL_THREADS, s1, st>>>(len, heads, dh, scale, qkv, tokens, p,
                                                        key, first, dout, lse, delta, dqkv);
    KERNEL_CHECK("flash_bwd_dkdv");
    k_flash_bwd_dq<DPL><<<grid, FL_THREADS, s2, st>>>(len, heads, dh, scale, qkv, tokens, p, key,
                                                      first, dout, lse, delta, dqkv);
    KERNEL_CHECK("flash_bwd_dq");
    return DLT_OK;
}

extern "C" dlt_status dlt_cuda_attention_fwd_lse(dlt_backend *be, int n, int len, int heads,
                                                 int dh, const float *qkv, const float *tokens,
                                                 float p, uint64_t key, uint64_t first,
                                                 float *out, float *lse, float *ws)
{
    DLT_CHECK(check_args(n, len, heads, dh, p, "attention_fwd_lse"));
    if (n == 0) return DLT_OK;
    CUDA_ENTER(be);
#define FWD(DPL) launch_fwd<DPL>(be, n, len, heads, dh, qkv, tokens, p, key, first, out, lse)
    switch ((dh + 31) / 32) {
    case 1: return FWD(1);
    case 2: return FWD(2);
    case 3: return FWD(3);
    default: return FWD(4);
    }
#undef FWD
}

extern "C" dlt_status dlt_cuda_attention_bwd_lse(dlt_backend *be, int n, int len, int heads,
                                                 int dh, const float *qkv, const float *tokens,
                                                 float p, uint64_t key, uint64_t first,
                                                 const float *out, const float *lse,
                                                 const float *dout, float *dqkv, float *ws)
{
    DLT_CHECK(check_args(n, len, heads, dh, p, "attention_bwd_lse"));
    if (n == 0) return DLT_OK;
    CUDA_ENTER(be);
    float *delta = ws;   /* (n, heads, len) */
    const int rows = n * heads * len, per_block = DLT_CUDA_THREADS / 32;
    k_flash_delta<<<(rows + per_block - 1) / per_block, DLT_CUDA_THREADS, 0,
                    dlt_cuda_of(be)->stream>>>(rows, len, heads, dh, out, dout, delta);
    KERNEL_CHECK("flash_delta");
#define BWD(DPL) \
    launch_bwd<DPL>(be, n, len, heads, dh, qkv, tokens, p, key, first, lse, dout, delta, dqkv)
    switch ((dh + 31) / 32) {
    case 1: return BWD(1);
    case 2: return BWD(2);
    case 3: return BWD(3);
    default: return BWD(4);
    }
#undef BWD
}
