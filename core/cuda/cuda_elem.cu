/* CUDA elementwise ops, bias reductions, sum of squares, activations and
 * dropout: the memory-bound part of the backend.
 *
 * Each op is one grid-stride kernel (see cuda_util.cuh) launched on the
 * backend's stream; the math mirrors core/cpu/cpu_blas.c and cpu_act.c
 * (ReLU'(0) = 0, sigmoid/tanh derivatives from the saved output, exact GELU
 * with erff) so the two backends agree to float rounding.
 *
 * The reductions are deterministic: bias_grad gives each channel to one
 * block (or, for dense layers with hw == 1, a block to 32 channels whose
 * rows its warps read coalesced), and sumsq sums fixed per-block partials in a second
 * one-block kernel, both in double as the CPU does. Nothing uses atomics, so
 * gradient norms and bias gradients are identical from run to run. */
#include <math.h>
#include <stdint.h>

#include "core/cuda/cuda_internal.h"
#include "core/cuda/cuda_rng.cuh"
#include "core/cuda/cuda_util.cuh"

/* ---- kernels ---- */

__global__ void k_fill(float *x, size_t n, float v)
{
    GRID_LOOP(i, n) x[i] = v;
}

__global__ void k_axpy(size_t n, float alpha, const float *__restrict__ x, float *__restrict__ y)
{
    GRID_LOOP(i, n) y[i] += alpha * x[i];
}

__global__ void k_scale(size_t n, float alpha, float *x)
{
    GRID_LOOP(i, n) x[i] *= alpha;
}

/* y may alias a or b (same index only). */
__global__ void k_add(size_t n, const float *a, const float *b, float *y)
{
    GRID_LOOP(i, n) y[i] = a[i] + b[i];
}

__global__ void k_mul_acc(size_t n, const float *__restrict__ dy, const float *__restrict__ mask,
                          float *__restrict__ dx)
{
    GRID_LOOP(i, n) dx[i] += dy[i] * mask[i];
}

/* y (rows = n*c, hw) += b(row % c) */
__global__ void k_bias_add(size_t total, int c, int hw, const float *__restrict__ b,
                           float *__restrict__ y)
{
    GRID_LOOP(i, total) y[i] += b[(i / (size_t)hw) % (size_t)c];
}

/* Row lanes of k_bias_grad_cols (its blocks are 32 x BG_ROWS threads). */
#define BG_ROWS 32

/* hw == 1: dy (n, c). A block covers channels 32 blockIdx.x + (0 .. 31):
 * thread (x, y) sums rows y, y + BG_ROWS, .. of its channel (each warp reads
 * one 128-byte row segment), then thread (x, 0) adds the BG_ROWS partials in
 * order. Rows (a BERT batch: 32768) are split over 32 lanes rather than
 * walked by one thread per channel, which left the GPU nearly idle. */
__global__ void k_bias_grad_cols(int n, int c, const float *__restrict__ dy, float *__restrict__ db)
{
    __shared__ double part[BG_ROWS][32];
    const int ch = blockIdx.x * 32 + threadIdx.x;
    double acc = 0.0;
    if (ch < c)
        for (int s = threadIdx.y; s < n; s += BG_ROWS) acc += dy[(size_t)s * c + ch];
    part[threadIdx.y][threadIdx.x] = acc;
    __syncthreads();
    if (threadIdx.y == 0 && ch < c) {
        double t = 0.0;
        for (int y = 0; y < BG_ROWS; y++) t += part[y][threadIdx.x];
        db[ch] += (float)t;
    }
}

/* hw > 1: one block per channel (blockIdx.x) sums dy (n, c, hw) over n, hw. */
__global__ void k_bias_grad_planes(int n, int c, int hw, const float *__restrict__ dy,
                                   float *__restrict__ db)
{
    const int ch = blockIdx.x;
    const size_t m = (size_t)n * hw;
    double acc = 0.0;
    for (size_t j = threadIdx.x; j < m; j += blockDim.x) {
        size_t s = j / (size_t)hw, p = j % (size_t)hw;
        acc += dy[(s * c + ch) * hw + p];
    }
    acc = dlt_block_sum(acc);
    if (threadIdx.x == 0) db[ch] += (float)acc;
}

/* First pass of sumsq: partial[blockIdx.x] = this block's share, in double. */
__global__ void k_sumsq_partial(size_t n, const float *__restrict__ x, double *__restrict__ partial)
{
    double acc = 0.0;
    GRID_LOOP(i, n)
    {
        double v = x[i];
        acc += v * v;
    }
    acc = dlt_block_sum(acc);
    if (threadIdx.x == 0) partial[blockIdx.x] = acc;
}

/* Second pass: partial[nparts] = sum of partial[0 .. nparts), fixed order. */
__global__ void k_sumsq_final(int nparts, double *partial)
{
    double acc = 0.0;
    for (int i = threadIdx.x; i < nparts; i += blockDim.x) acc += partial[i];
    acc = dlt_block_sum(acc);
    if (threadIdx.x == 0) partial[nparts] = acc;
}

/* acc[0] += sum of x (n): one block, each thread a strided share, then a
 * fixed tree: deterministic, and for per-sample losses (n = a batch) one
 * block is plenty. */
__global__ void k_sum_to(size_t n, const float *__restrict__ x, double *acc)
{
    double v = 0.0;
    for (size_t i = threadIdx.x; i < n; i += blockDim.x) v += x[i];
    v = dlt_block_sum(v);
    if (threadIdx.x == 0) acc[0] += v;
}

__global__ void k_act_fwd(int act, size_t n, const float *x, float *y)
{
    GRID_LOOP(i, n)
    {
        const float v = x[i];
        float r;
        switch (act) {
        case DLT_ACT_RELU: r = v > 0.0f ? v : 0.0f; break;
        case DLT_ACT_SIGMOID: r = 1.0f / (1.0f + expf(-v)); break;
        case DLT_ACT_TANH: r = tanhf(v); break;
        default: r = 0.5f * v * (1.0f + erff(v * 0.70710678118654752f)); break;
        }
        y[i] = r;
    }
}

__global__ void k_act_bwd(int act, size_t n, const float *__restrict__ x,
                          const float *__restrict__ y, const float *__restrict__ dy,
                          float *__restrict__ dx)
{
    GRID_LOOP(i, n)
    {
        const float d = dy[i];
        float g;
        switch (act) {
        case DLT_ACT_RELU: g = x[i] > 0.0f ? d : 0.0f; break;
        case DLT_ACT_SIGMOID: g = d * y[i] * (1.0f - y[i]); break;
        case DLT_ACT_TANH: g = d * (1.0f - y[i] * y[i]); break;
        default: {
            const float v = x[i];
            const float cdf = 0.5f * (1.0f + erff(v * 0.70710678118654752f));
            const float pdf = 0.3989422804014327f * expf(-0.5f * v * v);
            g = d * (cdf + v * pdf);
        }
        }
        dx[i] += g;
    }
}

/* Element i kept iff u01(key, first + i) >= p; y may alias x. */
__global__ void k_dropout(size_t n, float p, float keep_scale, uint64_t key, uint64_t first,
                          const float *x, float *y, float *mask)
{
    GRID_LOOP(i, n)
    {
        const float m = dlt_dev_rand_u01(key, first + i) >= p ? keep_scale : 0.0f;
        if (mask) mask[i] = m;
        y[i] = x[i] * m;
    }
}

/* ---- host entry points (contracts in core/backend.h) ---- */

#define STREAM(be) (dlt_cuda_of(be)->stream)

extern "C" dlt_status dlt_cuda_fill(dlt_backend *be, float *x, size_t n, float v)
{
    if (!n) return DLT_OK;
    CUDA_ENTER(be);
    k_fill<<<dlt_cuda_blocks(n), DLT_CUDA_THREADS, 0, STREAM(be)>>>(x, n, v);
    KERNEL_CHECK("fill");
    return DLT_OK;
}

extern "C" dlt_status dlt_cuda_axpy(dlt_backend *be, size_t n, float alpha, const float *x,
                                    float *y)
{
    if (!n) return DLT_OK;
    CUDA_ENTER(be);
    k_axpy<<<dlt_cuda_blocks(n), DLT_CUDA_THREADS, 0, STREAM(be)>>>(n, alpha, x, y);
    KERNEL_CHECK("axpy");
    return DLT_OK;
}

extern "C" dlt_status dlt_cuda_scale(dlt_backend *be, size_t n, float alpha, float *x)
{
    if (!n) return DLT_OK;
    CUDA_ENTER(be);
    k_scale<<<dlt_cuda_blocks(n), DLT_CUDA_THREADS, 0, STREAM(be)>>>(n, alpha, x);
    KERNEL_CHECK("scale");
    return DLT_OK;
}

extern "C" dlt_status dlt_cuda_add(dlt_backend *be, size_t n, const float *a, const float *b,
                                   float *y)
{
    if (!n) return DLT_OK;
    CUDA_ENTER(be);
    k_add<<<dlt_cuda_blocks(n), DLT_CUDA_THREADS, 0, STREAM(be)>>>(n, a, b, y);
    KERNEL_CHECK("add");
    return DLT_OK;
}

extern "C" dlt_status dlt_cuda_mul_acc(dlt_backend *be, size_t n, const float *dy,
                                       const float *mask, float *dx)
{
    if (!n) return DLT_OK;
    CUDA_ENTER(be);
    k_mul_acc<<<dlt_cuda_blocks(n), DLT_CUDA_THREADS, 0, STREAM(be)>>>(n, dy, mask, dx);
    KERNEL_CHECK("mul_acc");
    return DLT_OK;
}

extern "C" dlt_status dlt_cuda_bias_add(dlt_backend *be, int n, int c, int hw, const float *b,
                                        float *y)
{
    if (n < 0 || c < 0 || hw < 0) return DLT_ERR(DLT_ERR_INVALID, "bias_add: negative size");
    size_t total = (size_t)n * c * hw;
    if (!total) return DLT_OK;
    CUDA_ENTER(be);
    k_bias_add<<<dlt_cuda_blocks(total), DLT_CUDA_THREADS, 0, STREAM(be)>>>(total, c, hw, b, y);
    KERNEL_CHECK("bias_add");
    return DLT_OK;
}

extern "C" dlt_status dlt_cuda_bias_grad(dlt_backend *be, int n, int c, int hw, const float *dy,
                                         float *db)
{
    if (n < 0 || c < 0 || hw < 0) return DLT_ERR(DLT_ERR_INVALID, "bias_grad: negative size");
    if (!n || !c || !hw) return DLT_OK;
    CUDA_ENTER(be);
    if (hw == 1) {
        const unsigned blocks = (unsigned)(((size_t)c + 31) / 32);
        k_bias_grad_cols<<<blocks, dim3(32, BG_ROWS), 0, STREAM(be)>>>(n, c, dy, db);
    } else {
        k_bias_grad_planes<<<(unsigned)c, DLT_CUDA_THREADS, 0, STREAM(be)>>>(n, c, hw, dy, db);
    }
    KERNEL_CHECK("bias_grad");
    return DLT_OK;
}

/* Sum of squares into *out_host; waits for the stream (a sync point). */
extern "C" dlt_status dlt_cuda_sumsq(dlt_backend *be, size_t n, const float *x, double *out_host)
{
    if (!out_host) return DLT_ERR(DLT_ERR_INVALID, "sumsq: NULL output");
    if (!n) {
        *out_host = 0.0;
        return DLT_OK;
    }
    CUDA_ENTER(be);
    dlt_cuda_impl *impl = dlt_cuda_of(be);
    unsigned blocks = dlt_cuda_blocks(n);
    if (blocks > DLT_CUDA_REDUCE_BLOCKS) blocks = DLT_CUDA_REDUCE_BLOCKS;
    k_sumsq_partial<<<blocks, DLT_CUDA_THREADS, 0, impl->stream>>>(n, x, impl->reduce_partial);
    KERNEL_CHECK("sumsq_partial");
    k_sumsq_final<<<1, 1024, 0, impl->stream>>>((int)blocks, impl->reduce_partial);
    KERNEL_CHECK("sumsq_final");
    CUDA_CHECK(cudaMemcpyAsync(impl->reduce_host, impl->reduce_partial + blocks, sizeof(double),
                               cudaMemcpyDeviceToHost, impl->stream));
    CUDA_CHECK(cudaStreamSynchronize(impl->stream));
    *out_host = *impl->reduce_host;
    return dlt_cuda_data_error(be);
}

/* Contract: backend.h sum_to (queued; no sync). */
extern "C" dlt_status dlt_cuda_sum_to(dlt_backend *be, size_t n, const float *x, double *acc)
{
    if (!acc) return DLT_ERR(DLT_ERR_INVALID, "sum_to: NULL accumulator");
    if (!n) return DLT_OK;
    CUDA_ENTER(be);
    k_sum_to<<<1, 256, 0, STREAM(be)>>>(n, x, acc);
    KERNEL_CHECK("sum_to");
    return DLT_OK;
}

extern "C" dlt_status dlt_cuda_act_fwd(dlt_backend *be, dlt_act act, size_t n, const float *x,
                                       float *y)
{
    if (act != DLT_ACT_RELU && act != DLT_ACT_SIGMOID && act != DLT_ACT_TANH &&
        act != DLT_ACT_GELU)
        return DLT_ERR(DLT_ERR_INVALID, "act_fwd: unknown activation %d", (int)act);
    if (!n) return DLT_OK;
    CUDA_ENTER(be);
    k_act_fwd<<<dlt_cuda_blocks(n), DLT_CUDA_THREADS, 0, STREAM(be)>>>((int)act, n, x, y);
    KERNEL_CHECK("act_fwd");
    return DLT_OK;
}

extern "C" dlt_status dlt_cuda_act_bwd(dlt_backend *be, dlt_act act, size_t n, const float *x,
                                       const float *y, const float *dy, float *dx)
{
    if (act != DLT_ACT_RELU && act != DLT_ACT_SIGMOID && act != DLT_ACT_TANH &&
        act != DLT_ACT_GELU)
        return DLT_ERR(DLT_ERR_INVALID, "act_bwd: unknown activation %d", (int)act);
    if (!n) return DLT_OK;
    CUDA_ENTER(be);
    k_act_bwd<<<dlt_cuda_blocks(n), DLT_CUDA_THREADS, 0, STREAM(be)>>>((int)act, n, x, y, dy, dx);
    KERNEL_CHECK("act_bwd");
    return DLT_OK;
}

extern "C" dlt_status dlt_cuda_dropout_fwd(dlt_backend *be, size_t n, float p, uint64_t key,
                                           uint64_t first, const float *x, float *y, float *mask)
{
    if (!(p >= 0.0f && p <= 1.0f))
        return DLT_ERR(DLT_ERR_INVALID, "dropout_fwd: p = %g is not in [0, 1]", (double)p);
    if (!n) return DLT_OK;
    CUDA_ENTER(be);
    const float keep_scale = p < 1.0f ? 1.0f / (1.0f - p) : 0.0f; /* as the CPU computes it */
    k_dropout<<<dlt_cuda_blocks(n), DLT_CUDA_THREADS, 0, STREAM(be)>>>(n, p, keep_scale, key,
                                                                       first, x, y, mask);
    KERNEL_CHECK("dropout");
    return DLT_OK;
}
