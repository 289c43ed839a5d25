/* CUDA fused optimizer update: one kernel pass over a whole parameter arena.
 *
 * The arithmetic is core/cpu/cpu_optim.c's, step for step (which follows
 * PyTorch 1.13's single-tensor torch.optim): the scalar factors that torch
 * forms in double (bias corrections, 1 - beta, AdamW's 1 - lr*wd) are
 * computed once on the host exactly as the CPU computes them and passed in
 * by value, so both backends round the same constants. The kernels may fuse
 * multiply-adds where the CPU rounds twice; results agree to a few ulps.
 *
 * State arenas, as on the CPU:
 *   SGD      s1 = momentum buffer (only when momentum != 0)
 *   Adam(W)  s1 = exp_avg, s2 = exp_avg_sq
 *   Adagrad  s1 = sum of squared gradients
 *   RMSprop  s1 = square_avg, s2 = momentum buffer (only when momentum > 0) */
#include <math.h>

#include "core/cuda/cuda_internal.h"
#include "core/cuda/cuda_util.cuh"

/* Everything a kernel needs, precomputed on the host. */
typedef struct {
    int kind;
    int first;          /* SGD: step 1 initialises the momentum buffer */
    int nesterov;
    int use_buf;        /* SGD / RMSprop momentum buffer in use */
    float lr, wd, mom, eps;
    /* Adam(W) */
    float b1, b2, one_b1, one_b2, step_size, bc2_sqrt, l2, shrink;
    /* RMSprop */
    float alpha, one_a;
} opt_args;

__global__ void k_opt_update(opt_args a, size_t n, float *__restrict__ w,
                             const float *__restrict__ g, float *__restrict__ s1,
                             float *__restrict__ s2)
{
    GRID_LOOP(i, n)
    {
        switch (a.kind) {
        case DLT_OPT_SGD: {
            const float d = g[i] + a.wd * w[i];
            if (!a.use_buf) {
                w[i] = w[i] - a.lr * d;
                break;
            }
            const float b = a.first ? d : a.mom * s1[i] + d;
            s1[i] = b;
            const float step = a.nesterov ? d + a.mom * b : b;
            w[i] = w[i] - a.lr * step;
            break;
        }
        case DLT_OPT_ADAM:
        case DLT_OPT_ADAMW: {
            const float p = w[i] * a.shrink;
            const float gi = g[i] + a.l2 * p;
            const float mi = s1[i] * a.b1 + a.one_b1 * gi;
            const float vi = s2[i] * a.b2 + a.one_b2 * gi * gi;
            s1[i] = mi;
            s2[i] = vi;
            const float denom = sqrtf(vi) / a.bc2_sqrt + a.eps;
            w[i] = p - a.step_size * (mi / denom);
            break;
        }
        case DLT_OPT_ADAGRAD: {
            const float gi = g[i] + a.wd * w[i];
            const float s = s1[i] + gi * gi;
            s1[i] = s;
            w[i] = w[i] - a.lr * (gi / (sqrtf(s) + a.eps));
            break;
        }
        default: { /* DLT_OPT_RMSPROP */
            const float gi = g[i] + a.wd * w[i];
            const float s = s1[i] * a.alpha + a.one_a * gi * gi;
            s1[i] = s;
            if (a.use_buf) {
                const float b = s2[i] * a.mom + gi / (sqrtf(s) + a.eps);
                s2[i] = b;
                w[i] = w[i] - a.lr * b;
            } else {
                w[i] = w[i] - a.lr * (gi / (sqrtf(s) + a.eps));
            }
            break;
        }
        }
    }
}

/* Contract: backend.h opt_update; the same checks and errors as the CPU's
 * dlt_cpu_opt_update (DLT_ERR_INVALID for a missing state arena or an
 * unknown kind). */
extern "C" dlt_status dlt_cuda_opt_update(dlt_backend *be, const dlt_opt_hparams *h, size_t n,
                                          float *w, const float *g, float *s1, float *s2)
{
    if (h == NULL || (n > 0 && (w == NULL || g == NULL)))
        return DLT_ERR(DLT_ERR_INVALID, "opt_update: NULL weights, gradients or hparams");
    if (n == 0) return DLT_OK;

    opt_args a = {};
    a.kind = (int)h->kind;
    a.lr = h->lr;
    a.wd = h->weight_decay;
    a.mom = h->momentum;
    a.eps = h->eps;
    switch (h->kind) {
    case DLT_OPT_SGD:
        if (h->momentum != 0.0f && s1 == NULL)
            return DLT_ERR(DLT_ERR_INVALID, "opt_update: SGD momentum needs a state arena");
        a.use_buf = h->momentum != 0.0f;
        a.first = h->t <= 1;
        a.nesterov = h->nesterov;
        break;
    case DLT_OPT_ADAM:
    case DLT_OPT_ADAMW: {
        if (s1 == NULL || s2 == NULL)
            return DLT_ERR(DLT_ERR_INVALID, "opt_update: Adam needs two state arenas");
        const int decoupled = h->kind == DLT_OPT_ADAMW;
        const double t = (double)(h->t < 1 ? 1 : h->t);
        const double bc1 = 1.0 - pow((double)h->beta1, t);
        const double bc2 = 1.0 - pow((double)h->beta2, t);
        a.step_size = (float)((double)h->lr / bc1);
        a.bc2_sqrt = (float)sqrt(bc2);
        a.b1 = h->beta1;
        a.b2 = h->beta2;
        a.one_b1 = (float)(1.0 - (double)h->beta1);
        a.one_b2 = (float)(1.0 - (double)h->beta2);
        a.l2 = decoupled ? 0.0f : h->weight_decay;
        a.shrink = decoupled ? (float)(1.0 - (double)h->lr * (double)h->weight_decay) : 1.0f;
        break;
    }
    case DLT_OPT_ADAGRAD:
        if (s1 == NULL)
            return DLT_ERR(DLT_ERR_INVALID, "opt_update: Adagrad needs a state arena");
        break;
    case DLT_OPT_RMSPROP:
        if (s1 == NULL || (h->momentum > 0.0f && s2 == NULL))
            return DLT_ERR(DLT_ERR_INVALID, "opt_update: RMSprop state arena missing");
        a.use_buf = h->momentum > 0.0f;
        a.alpha = h->alpha;
        a.one_a = (float)(1.0 - (double)h->alpha);
        break;
    default:
        return DLT_ERR(DLT_ERR_INVALID, "opt_update: unknown optimizer kind %d", (int)h->kind);
    }

    CUDA_ENTER(be);
    k_opt_update<<<dlt_cuda_blocks(n), DLT_CUDA_THREADS, 0, dlt_cuda_of(be)->stream>>>(a, n, w, g,
                                                                                       s1, s2);
    KERNEL_CHECK("opt_update");
    return DLT_OK;
}
