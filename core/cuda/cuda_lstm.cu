/* CUDA LSTM layer over a whole sequence, forward and full backpropagation
 * through time, with the contract of backend.h and the structure of the CPU
 * original (core/cpu/cpu_lstm.c): torch.nn.LSTM's gate order (i, f, g, o),
 * batch-major tensors (n, len, .), the input projection of all tokens as one
 * gemm up front, then per time step one (n, h) x (h, 4h) gemm read and
 * written through leading dimensions (rows of step t are every len-th row)
 * and one elementwise cell kernel. Backward runs time in reverse with one
 * cell kernel and one gemm per step, then the weight gradients and dx as
 * large gemms over all tokens.
 *
 * Own kernels rather than cuDNN's RNN API: the contract fixes the layout of
 * the saved activations (gates, c, y in batch-major order), which cuDNN
 * keeps in its own opaque reserve space, and it lets the same weights and
 * activations serve the CPU and GPU backends. The price is 2 launches per
 * step instead of cuDNN's persistent kernels; the bench compares with
 * PyTorch's cuDNN LSTM (bench/gpu/).
 *
 * All gemms run in the backend's precision (TF32/bf16/fp16 inputs, fp32
 * accumulation); the cell state and gate arithmetic stay fp32. */
#include <math.h>
#include <stdint.h>

#include "core/cuda/cuda_internal.h"
#include "core/cuda/cuda_util.cuh"

__device__ __forceinline__ float sigm(float x) { return 1.0f / (1.0f + __expf(-x)); }

/* gates (rows, 4h) += b_ih + b_hh */
__global__ void k_lstm_bias(size_t rows, int g4, const float *__restrict__ b_ih,
                            const float *__restrict__ b_hh, float *__restrict__ gates)
{
    GRID_LOOP(i, rows * g4) {
        const int j = (int)(i % g4);
        gates[i] += b_ih[j] + b_hh[j];
    }
}

/* Step t: pre-activations -> activations in place; c and y of step t. */
__global__ void k_lstm_cell_fwd(int n, int len, int h, int t, float *__restrict__ gates,
                                const float *__restrict__ c0, float *__restrict__ c,
                                float *__restrict__ y)
{
    GRID_LOOP(i, (size_t)n * h) {
        const int b = (int)(i / h), j = (int)(i % h);
        float *z = gates + ((size_t)b * len + t) * 4 * h;
        const size_t o = ((size_t)b * len + t) * h;
        const float ig = sigm(z[j]), fg = sigm(z[h + j]);
        const float gg = tanhf(z[2 * h + j]), og = sigm(z[3 * h + j]);
        z[j] = ig;
        z[h + j] = fg;
        z[2 * h + j] = gg;
        z[3 * h + j] = og;
        const float cp = t ? c[o - h + j] : (c0 ? c0[(size_t)b * h + j] : 0.0f);
        const float cv = fg * cp + ig * gg;
        c[o + j] = cv;
        y[o + j] = og * tanhf(cv);
    }
}

/* Step t of backward: dz of step t from dy, the carried dh (from step t+1's
 * gemm) and dc; updates dc for step t-1. */
__global__ void k_lstm_cell_bwd(int n, int len, int h, int t, const float *__restrict__ gates,
                                const float *__restrict__ c0, const float *__restrict__ c,
                                const float *__restrict__ dy, const float *__restrict__ dh,
                                float *__restrict__ dc, float *__restrict__ dz)
{
    GRID_LOOP(i, (size_t)n * h) {
        const int b = (int)(i / h), j = (int)(i % h);
        const size_t o = ((size_t)b * len + t) * h;
        const float *a = gates + ((size_t)b * len + t) * 4 * h;
        float *d = dz + ((size_t)b * len + t) * 4 * h;
        const float ig = a[j], fg = a[h + j], gg = a[2 * h + j], og = a[3 * h + j];
        const float tc = tanhf(c[o + j]);
        const float dhv = dy[o + j] + dh[i];
        const float dcv = dc[i] + dhv * og * (1.0f - tc * tc);
        const float cp = t ? c[o - h + j] : (c0 ? c0[(size_t)b * h + j] : 0.0f);
        d[j] = dcv * gg * ig * (1.0f - ig);
        d[h + j] = dcv * cp * fg * (1.0f - fg);
        d[2 * h + j] = dcv * ig * (1.0f - gg * gg);
        d[3 * h + j] = dhv * tc * og * (1.0f - og);
        dc[i] = dcv * fg;
    }
}

static dlt_status check_sizes(int n, int len, int din, int h, const char *op)
{
    if (n < 0 || len <= 0 || din <= 0 || h <= 0)
        return DLT_ERR(DLT_ERR_SHAPE, "%s: bad sizes n=%d len=%d din=%d h=%d", op, n, len, din, h);
    return DLT_OK;
}

extern "C" dlt_status dlt_cuda_lstm_fwd(dlt_backend *be, int n, int len, int din, int h,
                                        const float *x, const float *w_ih, const float *w_hh,
                                        const float *b_ih, const float *b_hh, const float *h0,
                                        const float *c0, float *y, float *gates, float *c)
{
    DLT_CHECK(check_sizes(n, len, din, h, "lstm_fwd"));
    if (n == 0) return DLT_OK;
    CUDA_ENTER(be);
    cudaStream_t st = dlt_cuda_of(be)->stream;
    const int g4 = 4 * h;
    const size_t rows = (size_t)n * len, nh = (size_t)n * h;
    DLT_CHECK(dlt_cuda_gemm(be, 0, 1, (int)rows, g4, din, 1.0f, x, din, w_ih, din, 0.0f, gates, g4));
    k_lstm_bias<<<dlt_cuda_blocks(rows * g4), DLT_CUDA_THREADS, 0, st>>>(rows, g4, b_ih, b_hh, gates);
    KERNEL_CHECK("lstm_bias");
    for (int t = 0; t < len; t++) {
        const float *hp = t ? y + (size_t)(t - 1) * h : h0;
        if (hp)
            DLT_CHECK(dlt_cuda_gemm(be, 0, 1, n, g4, h, 1.0f, hp, t ? len * h : h, w_hh, h, 1.0f,
                                    gates + (size_t)t * g4, len * g4));
        k_lstm_cell_fwd<<<dlt_cuda_blocks(nh), DLT_CUDA_THREADS, 0, st>>>(n, len, h, t, gates, c0, c, y);
        KERNEL_CHECK("lstm_cell_fwd");
    }
    return DLT_OK;
}

extern "C" dlt_status dlt_cuda_lstm_bwd(dlt_backend *be, int n, int len, int din, int h,
                                        const float *x, const float *w_ih, const float *w_hh,
                                        const float *h0, const float *c0, const float *y,
                                        const float *gates, const float *c, const float *dy,
                                        float *dx, float *dw_ih, float *dw_hh, float *db_ih,
                                        float *db_hh, float *ws)
{
    DLT_CHECK(check_sizes(n, len, din, h, "lstm_bwd"));
    if (n == 0) return DLT_OK;
    CUDA_ENTER(be);
    cudaStream_t st = dlt_cuda_of(be)->stream;
    const int g4 = 4 * h;
    const size_t rows = (size_t)n * len, nh = (size_t)n * h;
    float *dz = ws;               /* (n, len, 4h) */
    float *dh = dz + rows * g4;   /* (n, h) */
    float *dc = dh + nh;          /* (n, h) */
    CUDA_CHECK(cudaMemsetAsync(dh, 0, 2 * nh * sizeof(float), st));
    for (int t = len - 1; t >= 0; t--) {
        k_lstm_cell_bwd<<<dlt_cuda_blocks(nh), DLT_CUDA_THREADS, 0, st>>>(n, len, h, t, gates, c0,
                                                                         c, dy, dh, dc, dz);
        KERNEL_CHECK("lstm_cell_bwd");
        if (t > 0) /* dh_{t-1} = dz_t W_hh */
            DLT_CHECK(dlt_cuda_gemm(be, 0, 0, n, h, g4, 1.0f, dz + (size_t)t * g4, len * g4, w_hh,
                                    h, 0.0f, dh, h));
    }
    DLT_CHECK(dlt_cuda_gemm(be, 1, 0, g4, din, (int)rows, 1.0f, dz, g4, x, din, 1.0f, dw_ih, din));
    if (dx)
        DLT_CHECK(dlt_cuda_gemm(be, 0, 0, (int)rows, din, g4, 1.0f, dz, g4, w_ih, din, 1.0f, dx, din));
    if (len > 1)
        for (int b = 0; b < n; b++)
            DLT_CHECK(dlt_cuda_gemm(be, 1, 0, g4, h, len - 1, 1.0f, dz + ((size_t)b * len + 1) * g4,
                                    g4, y + (size_t)b * len * h, h, 1.0f, dw_hh, h));
    if (h0)
        DLT_CHECK(dlt_cuda_gemm(be, 1, 0, g4, h, n, 1.0f, dz, len * g4, h0, h, 1.0f, dw_hh, h));
    DLT_CHECK(dlt_cuda_bias_grad(be, (int)rows, g4, 1, dz, db_ih));
    DLT_CHECK(dlt_cuda_bias_grad(be, (int)rows, g4, 1, dz, db_hh));
    return DLT_OK;
}
