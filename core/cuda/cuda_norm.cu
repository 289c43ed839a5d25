/* CUDA batch normalisation over (n, hw) per channel, as torch.nn.BatchNorm2d
 * (and BatchNorm1d with hw = 1).
 *
 * Own kernels rather than cuDNN's batch-norm functions, because the table's
 * contract (core/cpu/cpu_norm.c) allows what cuDNN does not: gamma/beta may
 * be NULL (affine=False), dx and dgamma/dbeta may be NULL (not needed), and
 * backward takes no epsilon (it uses the saved 1/sqrt(var + eps)), while
 * cuDNN wants every pointer and the forward epsilon again.
 *
 * One block per channel. Training statistics are computed like the CPU's:
 * in double and in two passes (mean, then mean squared deviation), so large
 * means do not cancel; normalisation uses the biased variance, running_var
 * the unbiased one, and training with n*hw < 2 is DLT_ERR_SHAPE. Each block
 * reduces in a fixed order, so results are deterministic. */
#include <math.h>

#include "core/cuda/cuda_internal.h"
#include "core/cuda/cuda_util.cuh"

#define NORM_THREADS 256

/* Offset of the j-th value (of M = n*hw) of channel ch in a (n, c, hw) tensor. */
__device__ __forceinline__ size_t chan_off(size_t j, int c, int hw, int ch)
{
    const size_t s = j / (size_t)hw, p = j - s * (size_t)hw;
    return (s * (size_t)c + (size_t)ch) * (size_t)hw + p;
}

/* Sum over the block, broadcast to every thread through shared memory. */
__device__ __forceinline__ double block_sum_all(double v)
{
    __shared__ double result;
    v = dlt_block_sum(v);
    if (threadIdx.x == 0) result = v;
    __syncthreads();
    const double r = result;
    __syncthreads(); /* the next call may overwrite result */
    return r;
}

__global__ void k_bnorm_fwd_train(int n, int c, int hw, float eps, float momentum,
                                  const float *__restrict__ x, const float *__restrict__ gamma,
                                  const float *__restrict__ beta, float *__restrict__ y,
                                  float *__restrict__ run_mean, float *__restrict__ run_var,
                                  float *__restrict__ save_mean, float *__restrict__ save_invstd)
{
    const int ch = blockIdx.x;
    const size_t M = (size_t)n * hw;
    double acc = 0.0;
    for (size_t j = threadIdx.x; j < M; j += blockDim.x) acc += x[chan_off(j, c, hw, ch)];
    const double mean = block_sum_all(acc) / (double)M;
    const float meanf = (float)mean;

    acc = 0.0;
    for (size_t j = threadIdx.x; j < M; j += blockDim.x) {
        const double d = (double)x[chan_off(j, c, hw, ch)] - mean;
        acc += d * d;
    }
    const double ss = block_sum_all(acc);
    const double var = ss / (double)M;
    const float invstd = (float)(1.0 / sqrt(var + (double)eps));
    const float gm = gamma ? gamma[ch] : 1.0f, bt = beta ? beta[ch] : 0.0f;
    const float a = invstd * gm, b = bt - meanf * a;
    for (size_t j = threadIdx.x; j < M; j += blockDim.x) {
        const size_t o = chan_off(j, c, hw, ch);
        y[o] = x[o] * a + b;
    }
    if (threadIdx.x == 0) {
        if (save_mean) save_mean[ch] = meanf;
        if (save_invstd) save_invstd[ch] = invstd;
        if (run_mean) run_mean[ch] = (1.0f - momentum) * run_mean[ch] + momentum * meanf;
        if (run_var)
            run_var[ch] = (1.0f - momentum) * run_var[ch] +
                          momentum * (float)(ss / ((double)M - 1.0));
    }
}

/* One thread per element: y = x a + b with the channel's running statistics. */
__global__ void k_bnorm_fwd_eval(size_t total, int c, int hw, float eps,
                                 const float *__restrict__ x, const float *__restrict__ gamma,
                                 const float *__restrict__ beta, const float *__restrict__ run_mean,
                                 const float *__restrict__ run_var, float *__restrict__ y)
{
    GRID_LOOP(i, total)
    {
        const int ch = (int)((i / (size_t)hw) % (size_t)c);
        const float invstd = (float)(1.0 / sqrt((double)run_var[ch] + (double)eps));
        const float gm = gamma ? gamma[ch] : 1.0f, bt = beta ? beta[ch] : 0.0f;
        const float a = invstd * gm;
        y[i] = x[i] * a + (bt - run_mean[ch] * a);
    }
}

/* dx += gamma invstd (dy - mean(dy) - (x - mean) invstd^2 mean(dy (x - mean)));
 * dgamma += sum(dy xhat); dbeta += sum(dy). */
__global__ void k_bnorm_bwd(int n, int c, int hw, const float *__restrict__ x,
                            const float *__restrict__ dy, const float *__restrict__ gamma,
                            const float *__restrict__ save_mean,
                            const float *__restrict__ save_invstd, float *__restrict__ dx,
                            float *__restrict__ dgamma, float *__restrict__ dbeta)
{
    const int ch = blockIdx.x;
    const size_t M = (size_t)n * hw;
    const float mean = save_mean[ch], invstd = save_invstd[ch];
    double p1 = 0.0, p2 = 0.0;
    for (size_t j = threadIdx.x; j < M; j += blockDim.x) {
        const size_t o = chan_off(j, c, hw, ch);
        p1 += dy[o];
        p2 += (double)dy[o] * ((double)x[o] - mean);
    }
    const double sdy = block_sum_all(p1);
    const double sdyx = block_sum_all(p2);
    if (threadIdx.x == 0) {
        if (dgamma) dgamma[ch] += (float)(sdyx * invstd);
        if (dbeta) dbeta[ch] += (float)sdy;
    }
    if (!dx) return;
    const float gm = gamma ? gamma[ch] : 1.0f;
    const float k = gm * invstd;
    const float mdy = (float)(sdy / (double)M);
    const float cx = (float)(sdyx / (double)M * (double)invstd * (double)invstd);
    for (size_t j = threadIdx.x; j < M; j += blockDim.x) {
        const size_t o = chan_off(j, c, hw, ch);
        dx[o] += k * (dy[o] - mdy - (x[o] - mean) * cx);
    }
}

static dlt_status check_sizes(int n, int c, int hw, const char *op)
{
    if (n < 0 || c <= 0 || hw <= 0)
        return DLT_ERR(DLT_ERR_SHAPE, "%s: bad sizes n=%d c=%d hw=%d", op, n, c, hw);
    return DLT_OK;
}

/* Contract: backend.h bnorm_fwd_train, as dlt_cpu_bnorm_fwd_train. */
extern "C" dlt_status dlt_cuda_bnorm_fwd_train(dlt_backend *be, int n, int c, int hw, float eps,
                                               float momentum, const float *x, const float *gamma,
                                               const float *beta, float *y, float *run_mean,
                                               float *run_var, float *save_mean,
                                               float *save_invstd)
{
    DLT_CHECK(check_sizes(n, c, hw, "bnorm_fwd_train"));
    if ((double)n * hw < 2)
        return DLT_ERR(DLT_ERR_SHAPE,
                       "bnorm_fwd_train: expected more than 1 value per channel when training "
                       "(n=%d, hw=%d)",
                       n, hw);
    CUDA_ENTER(be);
    k_bnorm_fwd_train<<<(unsigned)c, NORM_THREADS, 0, dlt_cuda_of(be)->stream>>>(
        n, c, hw, eps, momentum, x, gamma, beta, y, run_mean, run_var, save_mean, save_invstd);
    KERNEL_CHECK("bnorm_fwd_train");
    return DLT_OK;
}

/* Contract: backend.h bnorm_fwd_eval, as dlt_cpu_bnorm_fwd_eval. */
extern "C" dlt_status dlt_cuda_bnorm_fwd_eval(dlt_backend *be, int n, int c, int hw, float eps,
                                              const float *x, const float *gamma,
                                              const float *beta, const float *run_mean,
                                              const float *run_var, float *y)
{
    DLT_CHECK(check_sizes(n, c, hw, "bnorm_fwd_eval"));
    const size_t total = (size_t)n * c * hw;
    if (!total) return DLT_OK;
    CUDA_ENTER(be);
    k_bnorm_fwd_eval<<<dlt_cuda_blocks(total), DLT_CUDA_THREADS, 0, dlt_cuda_of(be)->stream>>>(
        total, c, hw, eps, x, gamma, beta, run_mean, run_var, y);
    KERNEL_CHECK("bnorm_fwd_eval");
    return DLT_OK;
}

/* Contract: backend.h bnorm_bwd, as dlt_cpu_bnorm_bwd (dx, dgamma, dbeta may
 * be NULL; all accumulate). */
extern "C" dlt_status dlt_cuda_bnorm_bwd(dlt_backend *be, int n, int c, int hw, const float *x,
                                         const float *dy, const float *gamma,
                                         const float *save_mean, const float *save_invstd,
                                         float *dx, float *dgamma, float *dbeta)
{
    DLT_CHECK(check_sizes(n, c, hw, "bnorm_bwd"));
    if (n == 0) return DLT_OK;
    CUDA_ENTER(be);
    k_bnorm_bwd<<<(unsigned)c, NORM_THREADS, 0, dlt_cuda_of(be)->stream>>>(
        n, c, hw, x, dy, gamma, save_mean, save_invstd, dx, dgamma, dbeta);
    KERNEL_CHECK("bnorm_bwd");
    return DLT_OK;
}
