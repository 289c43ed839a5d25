/* Small device helpers shared by the CUDA kernels: launch sizes and block
 * reductions.
 *
 * Elementwise kernels use grid-stride loops over size_t indices, so one
 * capped grid covers any n (including n > 2^31) and the launch never fails
 * for being too large. Reductions are tree-shaped within a block (warp
 * shuffles, then one warp over the warp sums) and each block writes its own
 * result: no atomics, so every sum is the same from run to run. */
#ifndef DLT_CUDA_UTIL_CUH
#define DLT_CUDA_UTIL_CUH

#include <stddef.h>

#include "core/cuda/cuda_internal.h"

/* Threads per block of elementwise kernels. */
#define DLT_CUDA_THREADS 256
/* Cap on the blocks of a grid-stride launch (plenty to fill any GPU). */
#define DLT_CUDA_MAX_BLOCKS 65536

/* Blocks for n elements at DLT_CUDA_THREADS per block, at least 1. */
static inline unsigned dlt_cuda_blocks(size_t n)
{
    size_t b = (n + DLT_CUDA_THREADS - 1) / DLT_CUDA_THREADS;
    if (b > DLT_CUDA_MAX_BLOCKS) b = DLT_CUDA_MAX_BLOCKS;
    return (unsigned)(b ? b : 1);
}

/* Index of this thread and stride of a grid-stride loop. */
#define GRID_LOOP(i, n)                                                              \
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < (n);          \
         i += (size_t)gridDim.x * blockDim.x)

/* Sum of v over the block; the result is valid in thread 0. blockDim.x must
 * be a multiple of 32 (<= 1024). Contains __syncthreads(): every thread of
 * the block must call it, and two calls in a row are safe. */
template <typename T>
__device__ __forceinline__ T dlt_block_sum(T v)
{
    __shared__ T warp_sums[32];
    const unsigned lane = threadIdx.x & 31u, warp = threadIdx.x >> 5;
    for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
    __syncthreads(); /* an earlier call may still be reading warp_sums */
    if (lane == 0) warp_sums[warp] = v;
    __syncthreads();
    const unsigned nwarps = blockDim.x >> 5;
    v = lane < nwarps ? warp_sums[lane] : T(0);
    if (warp == 0)
        for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
    return v;
}

/* Maximum of v over the block, broadcast to every thread (NaN-ignoring, as
 * fmaxf). Same calling rules as dlt_block_sum. */
__device__ __forceinline__ float dlt_block_max_all(float v)
{
    __shared__ float warp_max[32];
    __shared__ float result;
    const unsigned lane = threadIdx.x & 31u, warp = threadIdx.x >> 5;
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_down_sync(0xffffffffu, v, o));
    __syncthreads();
    if (lane == 0) warp_max[warp] = v;
    __syncthreads();
    const unsigned nwarps = blockDim.x >> 5;
    if (warp == 0) {
        v = lane < nwarps ? warp_max[lane] : -INFINITY;
        for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_down_sync(0xffffffffu, v, o));
        if (lane == 0) result = v;
    }
    __syncthreads();
    return result;
}

/* Minimum of v over the block, broadcast to every thread. */
__device__ __forceinline__ int dlt_block_min_all(int v)
{
    __shared__ int warp_min[32];
    __shared__ int result;
    const unsigned lane = threadIdx.x & 31u, warp = threadIdx.x >> 5;
    for (int o = 16; o > 0; o >>= 1) v = min(v, __shfl_down_sync(0xffffffffu, v, o));
    __syncthreads();
    if (lane == 0) warp_min[warp] = v;
    __syncthreads();
    const unsigned nwarps = blockDim.x >> 5;
    if (warp == 0) {
        v = lane < nwarps ? warp_min[lane] : 0x7fffffff;
        for (int o = 16; o > 0; o >>= 1) v = min(v, __shfl_down_sync(0xffffffffu, v, o));
        if (lane == 0) result = v;
    }
    __syncthreads();
    return result;
}

#endif
