/* Device copies of core/rng.h's counter-based generator.
 *
 * core/rng.h is C (compound literals, no __device__ qualifiers), so nvcc
 * cannot call its inline functions from kernels. These are the same
 * arithmetic, line for line; tests/gpu/test_cuda_ops.c compares dropout
 * masks drawn on the GPU with the CPU backend's, so any drift between the
 * two copies fails that test. */
#ifndef DLT_CUDA_RNG_CUH
#define DLT_CUDA_RNG_CUH

#include <stdint.h>

/* splitmix64 finaliser, as dlt_mix64. */
__device__ __forceinline__ uint64_t dlt_dev_mix64(uint64_t z)
{
    z += 0x9e3779b97f4a7c15ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* Uniform in [0, 1) with 24 random bits, as dlt_rand_u01. */
__device__ __forceinline__ float dlt_dev_rand_u01(uint64_t key, uint64_t i)
{
    return (float)(dlt_dev_mix64(key ^ dlt_dev_mix64(i)) >> 40) * (1.0f / 16777216.0f);
}

#endif
