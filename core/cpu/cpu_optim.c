/* CPU fused optimizer update: one pass over a whole parameter arena.
 *
 * Every optimizer is written as one simple elementwise loop per kind so the
 * compiler vectorises it and OpenMP splits it across cores for large arenas.
 * The arithmetic follows PyTorch 1.13's single-tensor torch.optim code
 * step for step (same operation order, eps added after the square root, bias
 * corrections computed in double as Python floats are), because torch is the
 * test oracle and float32 results must agree to ~1e-6 relative.
 *
 * State arenas (zeroed by the allocator before step 1):
 *   SGD      s1 = momentum buffer (only when momentum != 0)
 *   Adam(W)  s1 = exp_avg, s2 = exp_avg_sq
 *   Adagrad  s1 = sum of squared gradients
 *   RMSprop  s1 = square_avg, s2 = momentum buffer (only when momentum > 0)
 *
 * torch initialises SGD's momentum buffer to the first (decayed) gradient;
 * with dampening 0 that is what momentum * 0 + d gives, but the t == 1 branch
 * makes it explicit and independent of the arena's previous contents. */
#include <math.h>
#include <stddef.h>

#include "core/backend.h"
#include "core/cpu/cpu_ops.h"
#include "core/status.h"

/* Below this many elements threads cost more than they save. */
#define OPT_PAR_MIN ((size_t)DLT_CPU_PAR_MIN)

/* w, g, buf: (n). torch.optim.SGD, dampening 0. */
static void sgd_update(const dlt_opt_hparams *h, size_t n, float *restrict w,
                       const float *restrict g, float *restrict buf)
{
    const float lr = h->lr, wd = h->weight_decay, mom = h->momentum;
    const int first = h->t <= 1, nest = h->nesterov;
    if (mom == 0.0f || buf == NULL) {
#pragma omp parallel for simd if (n >= OPT_PAR_MIN) schedule(static)
        for (size_t i = 0; i < n; i++) {
            float d = g[i] + wd * w[i];
            w[i] = w[i] - lr * d;
        }
        return;
    }
#pragma omp parallel for simd if (n >= OPT_PAR_MIN) schedule(static)
    for (size_t i = 0; i < n; i++) {
        float d = g[i] + wd * w[i];
        float b = first ? d : mom * buf[i] + d;
        buf[i] = b;
        float step = nest ? d + mom * b : b;
        w[i] = w[i] - lr * step;
    }
}

/* w, g, m, v: (n). torch.optim.Adam (L2 decay into the gradient) and AdamW
 * (decoupled decay applied to w before the moment update, as torch does). */
static void adam_update(const dlt_opt_hparams *h, size_t n, float *restrict w,
                        const float *restrict g, float *restrict m, float *restrict v)
{
    const int decoupled = h->kind == DLT_OPT_ADAMW;
    const double t = (double)(h->t < 1 ? 1 : h->t);
    const double bc1 = 1.0 - pow((double)h->beta1, t);
    const double bc2 = 1.0 - pow((double)h->beta2, t);
    const float step_size = (float)((double)h->lr / bc1);
    const float bc2_sqrt = (float)sqrt(bc2);
    const float b1 = h->beta1, b2 = h->beta2, eps = h->eps;
    /* torch forms these in double (Python floats) and rounds once */
    const float one_b1 = (float)(1.0 - (double)b1), one_b2 = (float)(1.0 - (double)b2);
    const float l2 = decoupled ? 0.0f : h->weight_decay;
    const float shrink =
        decoupled ? (float)(1.0 - (double)h->lr * (double)h->weight_decay) : 1.0f;
#pragma omp parallel for simd if (n >= OPT_PAR_MIN) schedule(static)
    for (size_t i = 0; i < n; i++) {
        float p = w[i] * shrink;
        float gi = g[i] + l2 * p;
        float mi = m[i] * b1 + one_b1 * gi;
        float vi = v[i] * b2 + one_b2 * gi * gi;
        m[i] = mi;
        v[i] = vi;
        float denom = sqrtf(vi) / bc2_sqrt + eps;
        w[i] = p - step_size * (mi / denom);
    }
}

/* w, g, sum: (n). torch.optim.Adagrad, lr_decay 0. */
static void adagrad_update(const dlt_opt_hparams *h, size_t n, float *restrict w,
                           const float *restrict g, float *restrict sum)
{
    const float lr = h->lr, wd = h->weight_decay, eps = h->eps;
#pragma omp parallel for simd if (n >= OPT_PAR_MIN) schedule(static)
    for (size_t i = 0; i < n; i++) {
        float gi = g[i] + wd * w[i];
        float s = sum[i] + gi * gi;
        sum[i] = s;
        w[i] = w[i] - lr * (gi / (sqrtf(s) + eps));
    }
}

/* w, g, sq, buf: (n). torch.optim.RMSprop, not centered. */
static void rmsprop_update(const dlt_opt_hparams *h, size_t n, float *restrict w,
                           const float *restrict g, float *restrict sq, float *restrict buf)
{
    const float lr = h->lr, wd = h->weight_decay, eps = h->eps;
    const float a = h->alpha, one_a = (float)(1.0 - (double)h->alpha), mom = h->momentum;
    if (mom > 0.0f && buf != NULL) {
#pragma omp parallel for simd if (n >= OPT_PAR_MIN) schedule(static)
        for (size_t i = 0; i < n; i++) {
            float gi = g[i] + wd * w[i];
            float s = sq[i] * a + one_a * gi * gi;
            sq[i] = s;
            float b = buf[i] * mom + gi / (sqrtf(s) + eps);
            buf[i] = b;
            w[i] = w[i] - lr * b;
        }
        return;
    }
#pragma omp parallel for simd if (n >= OPT_PAR_MIN) schedule(static)
    for (size_t i = 0; i < n; i++) {
        float gi = g[i] + wd * w[i];
        float s = sq[i] * a + one_a * gi * gi;
        sq[i] = s;
        w[i] = w[i] - lr * (gi / (sqrtf(s) + eps));
    }
}

/* Contract: updates w (n) in place from g (n) as h->kind prescribes; s1/s2
 * are the kind's state arenas (see the file comment), zeroed before the first
 * step and kept between steps. h->lr is the already-scheduled rate and h->t
 * the 1-based step number. Returns DLT_ERR_INVALID when a required state
 * arena is NULL or the kind is unknown. */
dlt_status dlt_cpu_opt_update(dlt_backend *be, const dlt_opt_hparams *h, size_t n, float *w,
                              const float *g, float *s1, float *s2)
{
    (void)be;
    if (h == NULL || (n > 0 && (w == NULL || g == NULL)))
        return DLT_ERR(DLT_ERR_INVALID, "opt_update: NULL weights, gradients or hparams");
    if (n == 0) return DLT_OK;
    switch (h->kind) {
    case DLT_OPT_SGD:
        if (h->momentum != 0.0f && s1 == NULL)
            return DLT_ERR(DLT_ERR_INVALID, "opt_update: SGD momentum needs a state arena");
        sgd_update(h, n, w, g, s1);
        return DLT_OK;
    case DLT_OPT_ADAM:
    case DLT_OPT_ADAMW:
        if (s1 == NULL || s2 == NULL)
            return DLT_ERR(DLT_ERR_INVALID, "opt_update: Adam needs two state arenas");
        adam_update(h, n, w, g, s1, s2);
        return DLT_OK;
    case DLT_OPT_ADAGRAD:
        if (s1 == NULL)
            return DLT_ERR(DLT_ERR_INVALID, "opt_update: Adagrad needs a state arena");
        adagrad_update(h, n, w, g, s1);
        return DLT_OK;
    case DLT_OPT_RMSPROP:
        if (s1 == NULL || (h->momentum > 0.0f && s2 == NULL))
            return DLT_ERR(DLT_ERR_INVALID, "opt_update: RMSprop state arena missing");
        rmsprop_update(h, n, w, g, s1, s2);
        return DLT_OK;
    }
    return DLT_ERR(DLT_ERR_INVALID, "opt_update: unknown optimizer kind %d", (int)h->kind);
}
