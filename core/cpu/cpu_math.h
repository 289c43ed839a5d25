/* Vectorisable elementary functions for the CPU sequence ops.
 *
 * glibc's expf is a scalar call unless the build uses -ffast-math, and the
 * softmax of a language model's logits or an LSTM's gates spends most of its
 * time in it (about 7 ns an element here, against ~0.5 ns for this inline
 * version in an `omp simd` loop). dlt_cpu_expf reduces x = k ln2 + r with
 * |r| <= ln2/2 (ln2 split in two so k ln2 is exact), evaluates the degree-7
 * Taylor polynomial of e^r (truncation below 1e-8 relative, about 2 ulp in
 * float) and scales by 2^k through the exponent bits. Inputs are clamped to
 * [-87, 88], so tiny results come out as ~1e-38 instead of 0 or a
 * denormal: callers that need exact zeros (masked attention keys) set them
 * explicitly. */
#ifndef DLT_CPU_MATH_H
#define DLT_CPU_MATH_H

#include <math.h>
#include <stdint.h>

static inline float dlt_cpu_expf(float x)
{
    x = x < -87.0f ? -87.0f : (x > 88.0f ? 88.0f : x);   /* fminf/fmaxf do not vectorise */
    /* round to nearest by the 1.5 2^23 shifter (rintf would be a call) */
    const float k = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
    const float r = (x - k * 0.693145751953125f) - k * 1.428606765330187e-06f;
    float p = 1.0f / 5040.0f;
    p = p * r + 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    union {
        int32_t i;
        float f;
    } scale = { .i = ((int32_t)k + 127) << 23 };   /* 2^k; a union, unlike memcpy, vectorises */
    return p * scale.f;
}

static inline float dlt_cpu_sigmoidf(float x) { return 1.0f / (1.0f + dlt_cpu_expf(-x)); }

/* tanh(x) = 1 - 2 / (e^{2x} + 1): absolute error ~1e-7 near 0. */
static inline float dlt_cpu_tanhf(float x) { return 1.0f - 2.0f / (dlt_cpu_expf(2.0f * x) + 1.0f); }

/* erf(x) by Abramowitz & Stegun 7.1.26 (absolute error <= 1.5e-7, about
 * float rounding), vectorisable unlike glibc's erff, which was ~20% of a
 * BERT step through GELU. */
static inline float dlt_cpu_erff(float x)
{
    const float a = x < 0.0f ? -x : x;
    const float t = 1.0f / (1.0f + 0.3275911f * a);
    float p = 1.061405429f;
    p = p * t - 1.453152027f;
    p = p * t + 1.421413741f;
    p = p * t - 0.284496736f;
    p = p * t + 0.254829592f;
    const float e = 1.0f - p * t * dlt_cpu_expf(-a * a);
    return x < 0.0f ? -e : e;
}

#endif
