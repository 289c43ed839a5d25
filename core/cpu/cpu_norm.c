/* CPU batch normalisation over (n, hw) per channel, as torch.nn.BatchNorm2d
 * (and BatchNorm1d with hw = 1).
 *
 * A channel's values are n strided runs of hw floats; every op loops over
 * channels (in parallel for large tensors: channels are independent and each
 * is reduced in one fixed order, so results do not depend on thread count)
 * and within a channel over the runs with a simple vectorisable inner loop.
 * Statistics are accumulated in double and computed in two passes (mean,
 * then the mean of squared deviations), which is exact enough that float32
 * output matches PyTorch to a few ulps even for large-mean inputs where the
 * one-pass E[x^2] - E[x]^2 form loses all digits.
 *
 * As PyTorch does: normalisation uses the biased variance (divide by M =
 * n*hw), running_var is updated with the unbiased one (M - 1), and training
 * with M == 1 is an error. gamma/beta may be NULL (affine=False: 1 and 0),
 * and so may dgamma/dbeta (not needed). */
#include <math.h>
#include <stddef.h>

#include "core/backend.h"
#include "core/cpu/cpu_ops.h"
#include "core/status.h"

static dlt_status check_sizes(int n, int c, int hw, const char *op)
{
    if (n < 0 || c <= 0 || hw <= 0)
        return DLT_ERR(DLT_ERR_SHAPE, "%s: bad sizes n=%d c=%d hw=%d", op, n, c, hw);
    return DLT_OK;
}

/* Mean of channel ch of x (n, c, hw), in double. */
static double channel_mean(const float *x, int n, int c, int hw, int ch)
{
    double acc = 0.0;
    for (int s = 0; s < n; s++) {
        const float *restrict xp = x + ((size_t)s * c + ch) * hw;
        double part = 0.0;
#pragma omp simd reduction(+ : part)
        for (int i = 0; i < hw; i++) part += xp[i];
        acc += part;
    }
    return acc / ((double)n * hw);
}

/* y(s, ch, :) = x(s, ch, :) * a + b for all samples s. */
static void channel_affine(const float *x, float *y, int n, int c, int hw, int ch, float a,
                           float b)
{
    for (int s = 0; s < n; s++) {
        const float *restrict xp = x + ((size_t)s * c + ch) * hw;
        float *restrict yp = y + ((size_t)s * c + ch) * hw;
        for (int i = 0; i < hw; i++) yp[i] = xp[i] * a + b;
    }
}

/* y = gamma (x - mean) / sqrt(var + eps) + beta with batch statistics of
 * x (n, c, hw); updates run_mean/run_var (c) and saves the mean and
 * 1/sqrt(var + eps) (c) for bnorm_bwd. Returns DLT_ERR_SHAPE if n*hw < 2. */
dlt_status dlt_cpu_bnorm_fwd_train(dlt_backend *be, int n, int c, int hw, float eps,
                                   float momentum, const float *x, const float *gamma,
                                   const float *beta, float *y, float *run_mean, float *run_var,
                                   float *save_mean, float *save_invstd)
{
    DLT_CHECK(check_sizes(n, c, hw, "bnorm_fwd_train"));
    const double M = (double)n * hw;
    if (M < 2)
        return DLT_ERR(DLT_ERR_SHAPE,
                       "bnorm_fwd_train: expected more than 1 value per channel when training "
                       "(n=%d, hw=%d)",
                       n, hw);
#pragma omp parallel for if (dlt_cpu_par((long)n * c * hw) && c > 1) schedule(static)
    for (int ch = 0; ch < c; ch++) {
        const double mean = channel_mean(x, n, c, hw, ch);
        const float meanf = (float)mean;
        double ss = 0.0;
        for (int s = 0; s < n; s++) {
            const float *restrict xp = x + ((size_t)s * c + ch) * hw;
            double part = 0.0;
#pragma omp simd reduction(+ : part)
            for (int i = 0; i < hw; i++) {
                double d = (double)xp[i] - mean;
                part += d * d;
            }
            ss += part;
        }
        const double var = ss / M;
        const float invstd = (float)(1.0 / sqrt(var + (double)eps));
        const float gm = gamma ? gamma[ch] : 1.0f, bt = beta ? beta[ch] : 0.0f;
        /* y = (x - mean) invstd gamma + beta, folded into one multiply-add. */
        const float a = invstd * gm;
        channel_affine(x, y, n, c, hw, ch, a, bt - meanf * a);
        if (save_mean) save_mean[ch] = meanf;
        if (save_invstd) save_invstd[ch] = invstd;
        if (run_mean) run_mean[ch] = (1.0f - momentum) * run_mean[ch] + momentum * meanf;
        if (run_var)
            run_var[ch] = (1.0f - momentum) * run_var[ch] + momentum * (float)(ss / (M - 1.0));
    }
    return DLT_OK;
}

/* y = gamma (x - run_mean) / sqrt(run_var + eps) + beta, x (n, c, hw). */
dlt_status dlt_cpu_bnorm_fwd_eval(dlt_backend *be, int n, int c, int hw, float eps,
                                  const float *x, const float *gamma, const float *beta,
                                  const float *run_mean, const float *run_var, float *y)
{
    DLT_CHECK(check_sizes(n, c, hw, "bnorm_fwd_eval"));
#pragma omp parallel for if (dlt_cpu_par((long)n * c * hw) && c > 1) schedule(static)
    for (int ch = 0; ch < c; ch++) {
        const float invstd = (float)(1.0 / sqrt((double)run_var[ch] + (double)eps));
        const float gm = gamma ? gamma[ch] : 1.0f, bt = beta ? beta[ch] : 0.0f;
        const float a = invstd * gm;
        channel_affine(x, y, n, c, hw, ch, a, bt - run_mean[ch] * a);
    }
    return DLT_OK;
}

/* Gradients of bnorm_fwd_train: with xhat = (x - mean) invstd and M = n*hw,
 *   dx     += gamma invstd (dy - sum(dy)/M - xhat sum(dy xhat)/M)
 *   dgamma += sum(dy xhat),   dbeta += sum(dy)
 * x, dy, dx (n, c, hw); gamma, save_mean, save_invstd, dgamma, dbeta (c).
 * dx may be NULL (input needs no gradient). */
dlt_status dlt_cpu_bnorm_bwd(dlt_backend *be, int n, int c, int hw, const float *x,
                             const float *dy, const float *gamma, const float *save_mean,
                             const float *save_invstd, float *dx, float *dgamma, float *dbeta)
{
    DLT_CHECK(check_sizes(n, c, hw, "bnorm_bwd"));
    if (n == 0) return DLT_OK;
    const double M = (double)n * hw;
#pragma omp parallel for if (dlt_cpu_par((long)n * c * hw) && c > 1) schedule(static)
    for (int ch = 0; ch < c; ch++) {
        const float mean = save_mean[ch], invstd = save_invstd[ch];
        double sdy = 0.0, sdyx = 0.0; /* sum dy, sum dy (x - mean) */
        for (int s = 0; s < n; s++) {
            const size_t off = ((size_t)s * c + ch) * hw;
            const float *restrict xp = x + off, *restrict dp = dy + off;
            double p1 = 0.0, p2 = 0.0;
#pragma omp simd reduction(+ : p1, p2)
            for (int i = 0; i < hw; i++) {
                p1 += dp[i];
                p2 += (double)dp[i] * ((double)xp[i] - mean);
            }
            sdy += p1;
            sdyx += p2;
        }
        if (dgamma) dgamma[ch] += (float)(sdyx * invstd);
        if (dbeta) dbeta[ch] += (float)sdy;
        if (!dx) continue;
        const float gm = gamma ? gamma[ch] : 1.0f;
        const float k = gm * invstd;
        const float mdy = (float)(sdy / M);
        /* coefficient of (x - mean): invstd^2 * mean(dy (x - mean)) */
        const float cx = (float)(sdyx / M * (double)invstd * (double)invstd);
        for (int s = 0; s < n; s++) {
            const size_t off = ((size_t)s * c + ch) * hw;
            const float *restrict xp = x + off, *restrict dp = dy + off;
            float *restrict op = dx + off;
            for (int i = 0; i < hw; i++) op[i] += k * (dp[i] - mdy - (xp[i] - mean) * cx);
        }
    }
    return DLT_OK;
}
