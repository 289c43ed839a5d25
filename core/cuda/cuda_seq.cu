/* CUDA kernels for token models: embedding lookup and its scatter-add
 * gradient, layer normalisation, and the per-token softmax cross-entropy of
 * language models (the CPU originals are core/cpu/cpu_seq.c; the contracts
 * are backend.h's).
 *
 * Invalid token ids and labels cannot be refused before the kernel runs
 * without a host sync, so the kernels record the first offender in the
 * backend's mapped error word (cuda_internal.h) and skip it (an invalid id
 * gives a zero row, never an out-of-bounds read); the next synchronising
 * call returns DLT_ERR_INVALID with the message the CPU backend would give.
 *
 * Embedding backward is a scatter-add where several tokens may share an
 * id. To stay deterministic without atomics, each warp owns 32 columns of
 * dw and one bucket of ids (id mod EMB_BUCKETS): it scans the tokens in
 * order, 32 at a time, and applies the ones of its bucket one after another
 * (ballot + shuffle), so every row of dw receives its contributions in token
 * order, as on the CPU (bitwise-equal sums), with buckets x column slices
 * warps working in parallel.
 *
 * Layer norm: one warp per row (rows are at most a few thousand wide), a
 * two-pass mean / variance in float over the row held in L1. dgamma and
 * dbeta are column sums done in two deterministic stages: fixed row chunks
 * write partial sums to scratch, then one thread per column adds the chunks
 * in order.
 *
 * Cross-entropy: one block per token row; block reductions give the max,
 * the first argmax and the sum of exponentials. Per-sample sums (loss,
 * correct, count over len tokens) are a second tiny kernel over per-row
 * values kept in scratch, again in a fixed order. */
#include <math.h>
#include <stdint.h>

#include "core/cuda/cuda_internal.h"
#include "core/cuda/cuda_util.cuh"

#define LN_WARPS 8        /* rows per layer-norm block */
#define LN_CHUNKS 64      /* row chunks of the dgamma/dbeta column sums */
#define XENT_THREADS 256
#define EMB_BUCKETS 64     /* id buckets of the embedding gradient */

__device__ static void record_err(dlt_cuda_data_err *e, int code, int index, float value, int limit)
{
    if (atomicCAS(&e->code, 0, -1) == 0) { /* first one wins; -1 marks "being written" */
        e->index = index;
        e->value = value;
        e->limit = limit;
        __threadfence_system();
        atomicExch(&e->code, code);
    }
}

/* ---- embedding ---- */

/* y (t, dim) = w rows; one block per token, threads over dim. */
__global__ void k_embed_fwd(int t, int dim, int vocab, const float *__restrict__ ids,
                            const float *__restrict__ w, float *__restrict__ y,
                            dlt_cuda_data_err *err)
{
    const int i = blockIdx.x;
    const float f = ids[i];
    const int ok = f >= 0.0f && f < (float)vocab && f == floorf(f);
    if (!ok && threadIdx.x == 0) record_err(err, DLT_CUDA_DATA_ERR_EMBED_ID, i, f, vocab);
    const float *src = w + (size_t)(ok ? (int)f : 0) * dim;
    float *dst = y + (size_t)i * dim;
    for (int j = threadIdx.x; j < dim; j += blockDim.x) dst[j] = ok ? src[j] : 0.0f;
}

/* x rows idx(i) = v; one block per listed row, threads over dim. An
 * invalid row index is recorded and skipped, as an invalid token id. */
__global__ void k_fill_rows(int k, int dim, int rows, const float *__restrict__ idx, float v,
                            float *__restrict__ x, dlt_cuda_data_err *err)
{
    const int i = blockIdx.x;
    const float f = idx[i];
    if (!(f >= 0.0f && f < (float)rows && f == floorf(f))) {
        if (threadIdx.x == 0) record_err(err, DLT_CUDA_DATA_ERR_ROW, i, f, rows);
        return;
    }
    float *dst = x + (size_t)(int)f * dim;
    for (int j = threadIdx.x; j < dim; j += blockDim.x) dst[j] = v;
}

/* dw rows += dy rows in token order; grid (column slices of 32, EMB_BUCKETS),
 * one warp per block. */
__global__ void k_embed_bwd(int t, int dim, int vocab, const float *__restrict__ ids,
                            const float *__restrict__ dy, int padding_idx, float *__restrict__ dw,
                            dlt_cuda_data_err *err)
{
    const int lane = threadIdx.x, j = blockIdx.x * 32 + lane, bucket = blockIdx.y;
    for (int i0 = 0; i0 < t; i0 += 32) {
        const int i = i0 + lane;
        int id = -1;
        if (i < t) {
            const float f = ids[i];
            if (f >= 0.0f && f < (float)vocab && f == floorf(f)) id = (int)f;
            else if (blockIdx.x == 0 && bucket == 0)
                record_err(err, DLT_CUDA_DATA_ERR_EMBED_ID, i, f, vocab);
        }
        const int mine = id >= 0 && id != padding_idx && id % EMB_BUCKETS == bucket;
        unsigned m = __ballot_sync(0xffffffffu, mine);
        while (m) {
            const int src = __ffs(m) - 1;
            m &= m - 1;
            const int row = __shfl_sync(0xffffffffu, id, src);
            if (j < dim) dw[(size_t)row * dim + j] += dy[(size_t)(i0 + src) * dim + j];
        }
    }
}

/* ---- layer norm ---- */

__device__ __forceinline__ float warp_sum(float v)
{
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__global__ void k_ln_fwd(int rows, int dim, float eps, const float *__restrict__ x,
                         const float *__restrict__ gamma, const float *__restrict__ beta,
                         float *__restrict__ y, float *__restrict__ mean, float *__restrict__ rstd)
{
    const int r = blockIdx.x * LN_WARPS + (threadIdx.x >> 5), lane = threadIdx.x & 31;
    if (r >= rows) return;
    const float *xr = x + (size_t)r * dim;
    float s = 0.0f;
    for (int j = lane; j < dim; j += 32) s += xr[j];
    const float mu = warp_sum(s) / dim;
    float v = 0.0f;
    for (int j = lane; j < dim; j += 32) {
        const float d = xr[j] - mu;
        v += d * d;
    }
    const float is = rsqrtf(warp_sum(v) / dim + eps);
    float *yr = y + (size_t)r * dim;
    for (int j = lane; j < dim; j += 32) yr[j] = (xr[j] - mu) * is * gamma[j] + beta[j];
    if (lane == 0) {
        mean[r] = mu;
        rstd[r] = is;
    }
}

/* dx += rstd (dxhat - mean(dxhat) - xhat mean(dxhat xhat)); one warp per row. */
__global__ void k_ln_bwd_dx(int rows, int dim, const float *__restrict__ x,
                            const float *__restrict__ dy, const float *__restrict__ gamma,
                            const float *__restrict__ mean, const float *__restrict__ rstd,
                            float *__restrict__ dx)
{
    const int r = blockIdx.x * LN_WARPS + (threadIdx.x >> 5), lane = threadIdx.x & 31;
    if (r >= rows) return;
    const float *xr = x + (size_t)r * dim, *dr = dy + (size_t)r * dim;
    const float m = mean[r], is = rstd[r];
    float a = 0.0f, b = 0.0f;
    for (int j = lane; j < dim; j += 32) {
        const float g = dr[j] * gamma[j];
        a += g;
        b += g * (xr[j] - m) * is;
    }
    a = warp_sum(a) / dim;
    b = warp_sum(b) / dim;
    float *o = dx + (size_t)r * dim;
    for (int j = lane; j < dim; j += 32) o[j] += is * (dr[j] * gamma[j] - a - (xr[j] - m) * is * b);
}

/* part (2, LN_CHUNKS, dim): chunk blockIdx.y's sums of dy xhat and dy. */
__global__ void k_ln_bwd_partial(int rows, int dim, const float *__restrict__ x,
                                 const float *__restrict__ dy, const float *__restrict__ mean,
                                 const float *__restrict__ rstd, float *__restrict__ part)
{
    const int j = blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= dim) return;
    const int per = (rows + LN_CHUNKS - 1) / LN_CHUNKS;
    const int r0 = blockIdx.y * per, r1 = min(rows, r0 + per);
    float sg = 0.0f, sb = 0.0f;
    for (int r = r0; r < r1; r++) {
        const size_t o = (size_t)r * dim + j;
        sg += dy[o] * (x[o] - mean[r]) * rstd[r];
        sb += dy[o];
    }
    part[(size_t)blockIdx.y * dim + j] = sg;
    part[(size_t)(LN_CHUNKS + blockIdx.y) * dim + j] = sb;
}

__global__ void k_ln_bwd_final(int dim, const float *__restrict__ part, float *__restrict__ dgamma,
                               float *__restrict__ dbeta)
{
    const int j = blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= dim) return;
    float sg = 0.0f, sb = 0.0f;
    for (int c = 0; c < LN_CHUNKS; c++) {
        sg += part[(size_t)c * dim + j];
        sb += part[(size_t)(LN_CHUNKS + c) * dim + j];
    }
    dgamma[j] += sg;
    dbeta[j] += sb;
}

/* ---- softmax cross-entropy over tokens ---- */

/* Max, first argmax and sum of exp(z - max) of row z (k), valid in every
 * thread. */
__device__ static void row_stats(const float *__restrict__ z, int k, float *mx_out, int *am_out,
                                 float *sum_out)
{
    __shared__ float s_v[32];
    __shared__ int s_i[32];
    __shared__ float s_mx;
    __shared__ int s_am;
    float mx = -INFINITY;
    int am = 0x7fffffff;
    for (int j = threadIdx.x; j < k; j += blockDim.x)
        if (z[j] > mx) mx = z[j], am = j; /* a thread sees its columns in order */
    for (int o = 16; o > 0; o >>= 1) {
        const float v2 = __shfl_down_sync(0xffffffffu, mx, o);
        const int i2 = __shfl_down_sync(0xffffffffu, am, o);
        if (v2 > mx || (v2 == mx && i2 < am)) mx = v2, am = i2;
    }
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    if (lane == 0) s_v[warp] = mx, s_i[warp] = am;
    __syncthreads();
    if (warp == 0) {
        const int nw = blockDim.x >> 5;
        mx = lane < nw ? s_v[lane] : -INFINITY;
        am = lane < nw ? s_i[lane] : 0x7fffffff;
        for (int o = 16; o > 0; o >>= 1) {
            const float v2 = __shfl_down_sync(0xffffffffu, mx, o);
            const int i2 = __shfl_down_sync(0xffffffffu, am, o);
            if (v2 > mx || (v2 == mx && i2 < am)) mx = v2, am = i2;
        }
        if (lane == 0) {
            s_mx = mx;
            s_am = am == 0x7fffffff ? 0 : am; /* all NaN: the CPU also answers 0 */
        }
    }
    __syncthreads();
    mx = s_mx;
    float s = 0.0f;
    for (int j = threadIdx.x; j < k; j += blockDim.x) s += __expf(z[j] - mx);
    s = dlt_block_sum(s);
    __shared__ float s_sum;
    if (threadIdx.x == 0) s_sum = s;
    __syncthreads();
    *mx_out = mx;
    *am_out = s_am;
    *sum_out = s_sum;
}

/* Per row: rowv (3, rows) = loss, correct, counted (0 for ignored rows). */
__global__ void k_xent_seq_rows(int rows, int k, const float *__restrict__ logits,
                                const int32_t *__restrict__ labels, float *__restrict__ rowv,
                                dlt_cuda_data_err *err)
{
    const int r = blockIdx.x;
    const int32_t lab = labels[r];
    if (lab < 0 || lab >= k) {
        if (threadIdx.x == 0) {
            if (lab >= k) record_err(err, DLT_CUDA_DATA_ERR_LABEL, r, (float)lab, k);
            rowv[r] = rowv[rows + r] = rowv[2 * rows + r] = 0.0f;
        }
        return;
    }
    const float *z = logits + (size_t)r * k;
    float mx, sum;
    int am;
    row_stats(z, k, &mx, &am, &sum);
    if (threadIdx.x == 0) {
        rowv[r] = logf(sum) - (z[lab] - mx);
        rowv[rows + r] = am == lab ? 1.0f : 0.0f;
        rowv[2 * rows + r] = 1.0f;
    }
}

/* loss/correct/count (n) = sums of rowv over each sample's len rows. */
__global__ void k_xent_seq_samples(int n, int len, const float *__restrict__ rowv, float *loss,
                                   float *correct, float *count)
{
    const int b = blockIdx.x * blockDim.x + threadIdx.x;
    if (b >= n) return;
    const int rows = n * len;
    double l = 0.0;
    float c = 0.0f, m = 0.0f;
    for (int t = 0; t < len; t++) {
        const int r = b * len + t;
        l += rowv[r];
        c += rowv[rows + r];
        m += rowv[2 * rows + r];
    }
    if (loss) loss[b] = (float)l;
    if (correct) correct[b] = c;
    if (count) count[b] = m;
}

__global__ void k_xent_seq_bwd(int rows, int k, const float *__restrict__ logits,
                               const int32_t *__restrict__ labels, float scale,
                               float *__restrict__ dlogits, dlt_cuda_data_err *err)
{
    const int r = blockIdx.x;
    const int32_t lab = labels[r];
    if (lab < 0 || lab >= k) {
        if (lab >= k && threadIdx.x == 0) record_err(err, DLT_CUDA_DATA_ERR_LABEL, r, (float)lab, k);
        return;
    }
    const float *z = logits + (size_t)r * k;
    float mx, sum;
    int am;
    row_stats(z, k, &mx, &am, &sum);
    const float c = scale / sum;
    float *d = dlogits + (size_t)r * k;
    for (int j = threadIdx.x; j < k; j += blockDim.x) d[j] += c * __expf(z[j] - mx) - (j == lab ? scale : 0.0f);
}

/* ---- host entry points ---- */

extern "C" dlt_status dlt_cuda_embedding_fwd(dlt_backend *be, int t, int dim, int vocab,
                                             const float *ids, const float *w, float *y)
{
    if (t < 0 || dim <= 0 || vocab <= 0)
        return DLT_ERR(DLT_ERR_SHAPE, "embedding_fwd: bad sizes t=%d dim=%d vocab=%d", t, dim, vocab);
    if (t == 0) return DLT_OK;
    CUDA_ENTER(be);
    dlt_cuda_impl *impl = dlt_cuda_of(be);
    const int threads = dim >= 256 ? 256 : (dim + 31) / 32 * 32;
    k_embed_fwd<<<t, threads, 0, impl->stream>>>(t, dim, vocab, ids, w, y, impl->data_err_dev);
    KERNEL_CHECK("embed_fwd");
    return DLT_OK;
}

extern "C" dlt_status dlt_cuda_fill_rows(dlt_backend *be, int k, int dim, int rows,
                                         const float *idx, float v, float *x)
{
    if (k < 0 || dim <= 0 || rows <= 0)
        return DLT_ERR(DLT_ERR_SHAPE, "fill_rows: bad sizes k=%d dim=%d rows=%d", k, dim, rows);
    if (k == 0) return DLT_OK;
    CUDA_ENTER(be);
    dlt_cuda_impl *impl = dlt_cuda_of(be);
    const int threads = dim >= 256 ? 256 : (dim + 31) / 32 * 32;
    k_fill_rows<<<k, threads, 0, impl->stream>>>(k, dim, rows, idx, v, x, impl->data_err_dev);
    KERNEL_CHECK("fill_rows");
    return DLT_OK;
}

/* One block compacts the rows with a label >= 0 into idx, in order: per
 * chunk of blockDim rows, a warp ballot gives each row its place within its
 * warp and the earlier warps' counts its place within the chunk; `base`
 * carries the chunks before. A single block because rows is a batch's
 * token count (tens of thousands at most) and order must be kept. */
__global__ void k_target_rows(int rows, const int32_t *__restrict__ labels, float *__restrict__ idx)
{
    __shared__ int warp_count[32];
    __shared__ int base;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    if (threadIdx.x == 0) base = 0;
    __syncthreads();
    for (int start = 0; start < rows; start += blockDim.x) {
        const int r = start + threadIdx.x;
        const int flag = r < rows && labels[r] >= 0;
        const unsigned ballot = __ballot_sync(0xffffffffu, flag);
        if (lane == 0) warp_count[warp] = __popc(ballot);
        __syncthreads();
        int before = base + __popc(ballot & ((1u << lane) - 1u));
        for (int w = 0; w < warp; w++) before += warp_count[w];
        if (flag) idx[before] = (float)r;
        __syncthreads();   /* every thread has read base and warp_count */
        if (threadIdx.x == 0)
            for (int w = 0; w < warps; w++) base += warp_count[w];
        __syncthreads();
    }
}

extern "C" dlt_status dlt_cuda_target_rows(dlt_backend *be, int rows, const int32_t *labels,
                                           float *idx)
{
    if (rows < 0) return DLT_ERR(DLT_ERR_SHAPE, "target_rows: bad size rows=%d", rows);
    if (rows == 0) return DLT_OK;
    CUDA_ENTER(be);
    k_target_rows<<<1, 1024, 0, dlt_cuda_of(be)->stream>>>(rows, labels, idx);
    KERNEL_CHECK("target_rows");
    return DLT_OK;
}

extern "C" dlt_status dlt_cuda_embedding_bwd(dlt_backend *be, int t, int dim, int vocab,
                                             const float *ids, const float *dy, int padding_idx,
                                             float *dw)
{
    if (t < 0 || dim <= 0 || vocab <= 0)
        return DLT_ERR(DLT_ERR_SHAPE, "embedding_bwd: bad sizes t=%d dim=%d vocab=%d", t, dim, vocab);
    if (t == 0) return DLT_OK;
    CUDA_ENTER(be);
    dlt_cuda_impl *impl = dlt_cuda_of(be);
    dim3 grid((dim + 31) / 32, EMB_BUCKETS);
    k_embed_bwd<<<grid, 32, 0, impl->stream>>>(t, dim, vocab, ids, dy, padding_idx, dw,
                                                         impl->data_err_dev);
    KERNEL_CHECK("embed_bwd");
    return DLT_OK;
}

extern "C" dlt_status dlt_cuda_layernorm_fwd(dlt_backend *be, int rows, int dim, float eps,
                                             const float *x, const float *gamma, const float *beta,
                                             float *y, float *mean, float *rstd)
{
    if (rows < 0 || dim <= 0)
        return DLT_ERR(DLT_ERR_SHAPE, "layernorm_fwd: bad sizes rows=%d dim=%d", rows, dim);
    if (rows == 0) return DLT_OK;
    CUDA_ENTER(be);
    k_ln_fwd<<<(rows + LN_WARPS - 1) / LN_WARPS, 32 * LN_WARPS, 0, dlt_cuda_of(be)->stream>>>(
        rows, dim, eps, x, gamma, beta, y, mean, rstd);
    KERNEL_CHECK("ln_fwd");
    return DLT_OK;
}

extern "C" dlt_status dlt_cuda_layernorm_bwd(dlt_backend *be, int rows, int dim, const float *x,
                                             const float *dy, const float *gamma,
                                             const float *mean, const float *rstd, float *dx,
                                             float *dgamma, float *dbeta)
{
    if (rows < 0 || dim <= 0)
        return DLT_ERR(DLT_ERR_SHAPE, "layernorm_bwd: bad sizes rows=%d dim=%d", rows, dim);
    if (rows == 0) return DLT_OK;
    CUDA_ENTER(be);
    cudaStream_t s = dlt_cuda_of(be)->stream;
    if (dx) {
        k_ln_bwd_dx<<<(rows + LN_WARPS - 1) / LN_WARPS, 32 * LN_WARPS, 0, s>>>(
            rows, dim, x, dy, gamma, mean, rstd, dx);
        KERNEL_CHECK("ln_bwd_dx");
    }
    void *part;
    DLT_CHECK(dlt_cuda_scratch(be, (size_t)2 * LN_CHUNKS * dim * sizeof(float), &part));
    dim3 grid((dim + 127) / 128, LN_CHUNKS);
    k_ln_bwd_partial<<<grid, 128, 0, s>>>(rows, dim, x, dy, mean, rstd, (float *)part);
    KERNEL_CHECK("ln_bwd_partial");
    k_ln_bwd_final<<<(dim + 255) / 256, 256, 0, s>>>(dim, (const float *)part, dgamma, dbeta);
    KERNEL_CHECK("ln_bwd_final");
    return DLT_OK;
}

extern "C" dlt_status dlt_cuda_softmax_xent_seq_fwd(dlt_backend *be, int n, int len, int k,
                                                    const float *logits, const int32_t *labels,
                                                    float *loss, float *correct, float *count)
{
    if (n < 0 || len <= 0 || k <= 0)
        return DLT_ERR(DLT_ERR_SHAPE, "softmax_xent_seq_fwd: bad sizes n=%d len=%d k=%d", n, len, k);
    if (n == 0) return DLT_OK;
    CUDA_ENTER(be);
    dlt_cuda_impl *impl = dlt_cuda_of(be);
    const int rows = n * len;
    void *rowv;
    DLT_CHECK(dlt_cuda_scratch(be, (size_t)3 * rows * sizeof(float), &rowv));
    k_xent_seq_rows<<<rows, XENT_THREADS, 0, impl->stream>>>(rows, k, logits, labels,
                                                             (float *)rowv, impl->data_err_dev);
    KERNEL_CHECK("xent_seq_rows");
    k_xent_seq_samples<<<(n + 127) / 128, 128, 0, impl->stream>>>(n, len, (const float *)rowv, loss,
                                                                  correct, count);
    KERNEL_CHECK("xent_seq_samples");
    return DLT_OK;
}

extern "C" dlt_status dlt_cuda_softmax_xent_seq_bwd(dlt_backend *be, int rows, int k,
                                                    const float *logits, const int32_t *labels,
                                                    float scale, float *dlogits)
{
    if (rows < 0 || k <= 0)
        return DLT_ERR(DLT_ERR_SHAPE, "softmax_xent_seq_bwd: bad sizes rows=%d k=%d", rows, k);
    if (rows == 0) return DLT_OK;
    CUDA_ENTER(be);
    dlt_cuda_impl *impl = dlt_cuda_of(be);
    k_xent_seq_bwd<<<rows, XENT_THREADS, 0, impl->stream>>>(rows, k, logits, labels, scale, dlogits,
                                                            impl->data_err_dev);
    KERNEL_CHECK("xent_seq_bwd");
    return DLT_OK;
}
