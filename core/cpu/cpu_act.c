/* CPU elementwise activations (ReLU, sigmoid, tanh, exact GELU) and
 * inverted dropout.
 *
 * One switch per call picks a plain loop per activation, so the inner loops
 * have no per-element dispatch and the ReLU ones vectorise; large tensors are
 * split across OpenMP threads. Backward ops accumulate (dx += ...), as every
 * *_bwd op does (backend.h). Derivatives follow PyTorch: ReLU'(0) = 0, and
 * sigmoid/tanh derivatives are computed from the saved output y.
 *
 * Dropout draws element i's keep decision from dlt_rand_u01(key, first + i),
 * a pure function of the key and the global element index: the mask is the
 * same whatever the thread count, rank count or backend. */
#include <math.h>
#include <stddef.h>
#include <stdint.h>

#include "core/backend.h"
#include "core/cpu/cpu_math.h"
#include "core/cpu/cpu_ops.h"
#include "core/rng.h"
#include "core/status.h"

/* y(n) = f(x(n)); y may alias x. */
dlt_status dlt_cpu_act_fwd(dlt_backend *be, dlt_act act, size_t n, const float *x, float *y)
{
    const int par = dlt_cpu_par(n);
    switch (act) {
    case DLT_ACT_RELU:
#pragma omp parallel for simd if (par) schedule(static)
        for (size_t i = 0; i < n; i++) y[i] = x[i] > 0.0f ? x[i] : 0.0f;
        return DLT_OK;
    case DLT_ACT_SIGMOID:
#pragma omp parallel for if (par) schedule(static)
        for (size_t i = 0; i < n; i++) y[i] = 1.0f / (1.0f + expf(-x[i]));
        return DLT_OK;
    case DLT_ACT_TANH:
#pragma omp parallel for if (par) schedule(static)
        for (size_t i = 0; i < n; i++) y[i] = tanhf(x[i]);
        return DLT_OK;
    case DLT_ACT_GELU:
#pragma omp parallel for simd if (par) schedule(static)
        for (size_t i = 0; i < n; i++)
            y[i] = 0.5f * x[i] * (1.0f + dlt_cpu_erff(x[i] * (float)M_SQRT1_2));
        return DLT_OK;
    }
    return DLT_ERR(DLT_ERR_INVALID, "act_fwd: unknown activation %d", (int)act);
}

/* dx(n) += dy(n) f'(x(n)), with y = f(x) given. */
dlt_status dlt_cpu_act_bwd(dlt_backend *be, dlt_act act, size_t n, const float *x,
                           const float *y, const float *dy, float *dx)
{
    const int par = dlt_cpu_par(n);
    const float *restrict xs = x, *restrict ys = y, *restrict ds = dy;
    float *restrict o = dx;
    switch (act) {
    case DLT_ACT_RELU:
#pragma omp parallel for simd if (par) schedule(static)
        for (size_t i = 0; i < n; i++) o[i] += xs[i] > 0.0f ? ds[i] : 0.0f;
        return DLT_OK;
    case DLT_ACT_SIGMOID:
#pragma omp parallel for simd if (par) schedule(static)
        for (size_t i = 0; i < n; i++) o[i] += ds[i] * ys[i] * (1.0f - ys[i]);
        return DLT_OK;
    case DLT_ACT_TANH:
#pragma omp parallel for simd if (par) schedule(static)
        for (size_t i = 0; i < n; i++) o[i] += ds[i] * (1.0f - ys[i] * ys[i]);
        return DLT_OK;
    case DLT_ACT_GELU: {
        /* d/dx x Phi(x) = Phi(x) + x phi(x) */
        const float inv_sqrt_2pi = 0.3989422804014327f;
#pragma omp parallel for simd if (par) schedule(static)
        for (size_t i = 0; i < n; i++) {
            const float v = xs[i];
            const float cdf = 0.5f * (1.0f + dlt_cpu_erff(v * (float)M_SQRT1_2));
            const float pdf = inv_sqrt_2pi * dlt_cpu_expf(-0.5f * v * v);
            o[i] += ds[i] * (cdf + v * pdf);
        }
        return DLT_OK;
    }
    }
    return DLT_ERR(DLT_ERR_INVALID, "act_bwd: unknown activation %d", (int)act);
}

/* Inverted dropout of x (n) into y (n) with mask (n): element i is kept iff
 * dlt_rand_u01(key, first + i) >= p, mask(i) = kept ? 1/(1-p) : 0 and
 * y(i) = x(i) mask(i). p in [0, 1]; p == 1 drops everything. y may alias x. */
dlt_status dlt_cpu_dropout_fwd(dlt_backend *be, size_t n, float p, uint64_t key, uint64_t first,
                               const float *x, float *y, float *mask)
{
    if (!(p >= 0.0f && p <= 1.0f))
        return DLT_ERR(DLT_ERR_INVALID, "dropout_fwd: p = %g is not in [0, 1]", (double)p);
    const float keep_scale = p < 1.0f ? 1.0f / (1.0f - p) : 0.0f;
#pragma omp parallel for if (dlt_cpu_par(n)) schedule(static)
    for (size_t i = 0; i < n; i++) {
        const float m = dlt_rand_u01(key, first + i) >= p ? keep_scale : 0.0f;
        mask[i] = m;
        y[i] = x[i] * m;
    }
    return DLT_OK;
}
