/* Helpers shared by the GPU op tests (tests/gpu/test_cuda_ops.c defines
 * them, test_cuda_seq.c uses them; one program, test_cuda_ops). Host
 * buffers come from malloc and are freed by the caller; device buffers from
 * the CUDA backend G; a failing infrastructure call ends the program (MUST),
 * a numeric mismatch only counts as a failed check. */
#ifndef DLT_GPU_TEST_H
#define DLT_GPU_TEST_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "core/backend.h"
#include "core/rng.h"
#include "core/status.h"

#define TOL_FP32 2e-5   /* plain fp32 kernels (different summation order) */
#define TOL_TF32 5e-3   /* gemm/convolution on TF32 tensor cores */
#define TOL_BF16 2e-2   /* gemm on bf16 tensor cores (8-bit mantissa) */

extern dlt_backend *C, *G; /* CPU reference, CUDA under test */
extern int failures, checks;
extern dlt_rng rng;

/* Infrastructure failure (not a numeric mismatch): report and stop. */
#define MUST(call)                                                                   \
    do {                                                                             \
        dlt_status must_st_ = (call);                                                \
        if (must_st_ != DLT_OK) {                                                    \
            printf("FAIL  %s:%d: %s -> %s: %s\n", __FILE__, __LINE__, #call,         \
                   dlt_status_str(must_st_), dlt_last_error());                      \
            exit(1);                                                                 \
        }                                                                            \
    } while (0)

/* n uniform floats in [lo, hi) (malloc'd). */
float *rnd(size_t n, float lo, float hi);
/* malloc'd copy of x (n). */
float *dup(const float *x, size_t n);
/* n labels uniform in [0, k) (malloc'd). */
int32_t *rnd_labels(int n, int k);
/* Device copy of host data (NULL stays NULL). */
void *up(const void *h, size_t bytes);
/* Host copy of n device floats (malloc'd). */
float *down(const void *d, size_t n);
/* Counts a check: max |got - want| / max |want| <= tol; prints one line. */
void check(const char *what, const float *got, const float *want, size_t n, double tol);
/* check() of device data against a host reference. */
void check_dev(const char *what, const void *dev, const float *want, size_t n, double tol);
/* Counts a check that is a plain condition. */
void check_true(const char *what, int ok, const char *detail);

/* test_cuda_seq.c: embedding, layer norm, per-token cross-entropy,
 * attention and LSTM, forward and backward, plus bf16 gemm tolerance. */
void test_cuda_seq_all(void);

/* test_cuda_linear.c: linear_fwd / linear_bwd_w (cuBLASLt bias epilogues)
 * in every precision, odd shapes and 4-byte aligned operands. */
void test_cuda_linear_all(void);

/* test_cuda_staging.c: sum_to, pinned host memory, slot uploads on the copy
 * stream ordered against compute. */
void test_cuda_staging_all(void);

#endif
