/* CPU fused optimizer update: one pass over a whole parameter arena.
 *
 * Every optimizer is one simple elementwise kernel (a plain loop over
 * restrict pointers that the compiler vectorises); for large arenas the
 * arena is cut into fixed chunks that OpenMP hands to threads. The
 * per-step scalars (bias corrections, 1 - beta, ...) are formed once in
 * opt_coef. The arithmetic follows PyTorch 1.13's single-tensor torch.optim
 * code step for step (same operation order, eps added after the square root,
 * scalars computed in double as Python floats are, then rounded once),
 * because torch is the test oracle and float32 results must agree closely.
 *
 * State arenas (zeroed by the allocator before step 1):
 *   SGD      s1 = momentum buffer (only when momentum != 0)
 *   Adam(W)  s1 = exp_avg, s2 = exp_avg_sq
 *   Adagrad  s1 = sum of squared gradients
 *   RMSprop  s1 = square_avg, s2 = momentum buffer (only when momentum > 0)
 *
 * torch initialises SGD's momentum buffer to the first (decayed) gradient;
 * with dampening 0 that is what momentum * 0 + d gives, but the t == 1 case
 * makes it explicit and independent of the arena's previous contents. */
#include <math.h>
#include <stddef.h>

#include "core/backend.h"
#include "core/cpu/cpu_ops.h"
#include "core/status.h"

/* Elements per OpenMP work item: large enough that the call per chunk is
 * noise, small enough to balance across threads. */
#define OPT_CHUNK ((size_t)8192)

/* Per-step scalars shared by all chunks. */
typedef struct {
    float lr, wd, mom, eps;
    int first, nesterov;
    float b1, b2, one_b1, one_b2;  /* Adam(W) */
    float step_size, bc2_sqrt;     /* Adam(W): lr / (1 - b1^t), sqrt(1 - b2^t) */
    float shrink;                  /* AdamW: 1 - lr wd; 1 otherwise */
    float alpha, one_alpha;        /* RMSprop */
} opt_coef;

/* One kernel over n elements; w, g, s1, s2: (n), s1/s2 NULL where unused. */
typedef void (*opt_kernel)(const opt_coef *c, size_t n, float *restrict w,
                           const float *restrict g, float *restrict s1, float *restrict s2);

/* torch.optim.SGD without momentum. */
static void sgd_plain(const opt_coef *c, size_t n, float *restrict w, const float *restrict g,
                      float *restrict s1, float *restrict s2)
{
    const float lr = c->lr, wd = c->wd;
    for (size_t i = 0; i < n; i++) w[i] = w[i] - lr * (g[i] + wd * w[i]);
}

/* torch.optim.SGD, momentum, dampening 0, optional Nesterov; s1 = buffer. */
static void sgd_momentum(const opt_coef *c, size_t n, float *restrict w, const float *restrict g,
                         float *restrict buf, float *restrict s2)
{
    const float lr = c->lr, wd = c->wd, mom = c->mom;
    const int first = c->first, nest = c->nesterov;
    for (size_t i = 0; i < n; i++) {
        float d = g[i] + wd * w[i];
        float b = first ? d : mom * buf[i] + d;
        buf[i] = b;
        float step = nest ? d + mom * b : b;
        w[i] = w[i] - lr * step;
    }
}

/* torch.optim.Adam (wd into the gradient) and AdamW (w shrunk first, as
 * torch does, and no wd in the gradient); s1 = exp_avg, s2 = exp_avg_sq. */
static void adam(const opt_coef *c, size_t n, float *restrict w,
                               const float *restrict g, float *restrict m, float *restrict v)
{
    const float b1 = c->b1, b2 = c->b2, one_b1 = c->one_b1, one_b2 = c->one_b2;
    const float l2 = c->wd, shrink = c->shrink, eps = c->eps;
    const float step_size = c->step_size, bc2_sqrt = c->bc2_sqrt;
    for (size_t i = 0; i < n; i++) {
        float p = w[i] * shrink;
        float gi = g[i] + l2 * p;
        float mi = m[i] * b1 + one_b1 * gi;
        float vi = v[i] * b2 + one_b2 * (gi * gi);
        m[i] = mi;
        v[i] = vi;
        float denom = sqrtf(vi) / bc2_sqrt + eps;
        w[i] = p - step_size * (mi / denom);
    }
}

/* torch.optim.Adagrad, lr_decay 0; s1 = sum of squares. */
static void adagrad(const opt_coef *c, size_t n, float *restrict w,
                                  const float *restrict g, float *restrict sum,
                                  float *restrict s2)
{
    const float lr = c->lr, wd = c->wd, eps = c->eps;
    for (size_t i = 0; i < n; i++) {
        float gi = g[i] + wd * w[i];
        float s = sum[i] + gi * gi;
        sum[i] = s;
        w[i] = w[i] - lr * (gi / (sqrtf(s) + eps));
    }
}

/* torch.optim.RMSprop, not centered, no momentum; s1 = square_avg. */
static void rmsprop(const opt_coef *c, size_t n, float *restrict w,
                                  const float *restrict g, float *restrict sq,
                                  float *restrict s2)
{
    const float lr = c->lr, wd = c->wd, eps = c->eps, a = c->alpha, one_a = c->one_alpha;
    for (size_t i = 0; i < n; i++) {
        float gi = g[i] + wd * w[i];
        float s = sq[i] * a + one_a * (gi * gi);
        sq[i] = s;
        w[i] = w[i] - lr * (gi / (sqrtf(s) + eps));
    }
}

/* torch.optim.RMSprop with momentum; s1 = square_avg, s2 = buffer. */
static void rmsprop_momentum(const opt_coef *c, size_t n, float *restrict w,
                                           const float *restrict g, float *restrict sq,
                                           float *restrict buf)
{
    const float lr = c->lr, wd = c->wd, eps = c->eps, a = c->alpha, one_a = c->one_alpha;
    const float mom = c->mom;
    for (size_t i = 0; i < n; i++) {
        float gi = g[i] + wd * w[i];
        float s = sq[i] * a + one_a * (gi * gi);
        sq[i] = s;
        float b = buf[i] * mom + gi / (sqrtf(s) + eps);
        buf[i] = b;
        w[i] = w[i] - lr * b;
    }
}

/* Runs k over [0, n), in OPT_CHUNK pieces across threads when dlt_cpu_par
 * says threads pay (large n, and no OpenBLAS threads spinning on the cores). */
static void run(opt_kernel k, const opt_coef *c, size_t n, float *w, const float *g, float *s1,
                float *s2)
{
    if (!dlt_cpu_par(n)) {
        k(c, n, w, g, s1, s2);
        return;
    }
    const size_t nchunks = (n + OPT_CHUNK - 1) / OPT_CHUNK;
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < nchunks; i++) {
        size_t lo = i * OPT_CHUNK, len = n - lo < OPT_CHUNK ? n - lo : OPT_CHUNK;
        k(c, len, w + lo, g + lo, s1 ? s1 + lo : NULL, s2 ? s2 + lo : NULL);
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
    if (n == 0) return DLT_OK; /* an empty arena has no state arenas either */
    opt_coef c = {.lr = h->lr, .wd = h->weight_decay, .mom = h->momentum, .eps = h->eps,
                  .first = h->t <= 1, .nesterov = h->nesterov, .shrink = 1.0f};
    opt_kernel k = NULL;
    switch (h->kind) {
    case DLT_OPT_SGD:
        if (h->momentum == 0.0f) {
            k = sgd_plain;
        } else {
            if (s1 == NULL)
                return DLT_ERR(DLT_ERR_INVALID, "opt_update: SGD momentum needs a state arena");
            k = sgd_momentum;
        }
        break;
    case DLT_OPT_ADAM:
    case DLT_OPT_ADAMW: {
        if (s1 == NULL || s2 == NULL)
            return DLT_ERR(DLT_ERR_INVALID, "opt_update: Adam needs two state arenas");
        double t = (double)(h->t < 1 ? 1 : h->t);
        c.b1 = h->beta1;
        c.b2 = h->beta2;
        c.one_b1 = (float)(1.0 - (double)h->beta1);
        c.one_b2 = (float)(1.0 - (double)h->beta2);
        c.step_size = (float)((double)h->lr / (1.0 - pow((double)h->beta1, t)));
        c.bc2_sqrt = (float)sqrt(1.0 - pow((double)h->beta2, t));
        if (h->kind == DLT_OPT_ADAMW) {
            c.shrink = (float)(1.0 - (double)h->lr * (double)h->weight_decay);
            c.wd = 0.0f;
        }
        k = adam;
        break;
    }
    case DLT_OPT_ADAGRAD:
        if (s1 == NULL)
            return DLT_ERR(DLT_ERR_INVALID, "opt_update: Adagrad needs a state arena");
        k = adagrad;
        break;
    case DLT_OPT_RMSPROP:
        if (s1 == NULL || (h->momentum > 0.0f && s2 == NULL))
            return DLT_ERR(DLT_ERR_INVALID, "opt_update: RMSprop state arena missing");
        c.alpha = h->alpha;
        c.one_alpha = (float)(1.0 - (double)h->alpha);
        k = h->momentum > 0.0f ? rmsprop_momentum : rmsprop;
        break;
    }
    if (k == NULL)
        return DLT_ERR(DLT_ERR_INVALID, "opt_update: unknown optimizer kind %d", (int)h->kind);
    run(k, &c, n, w, g, s1, s2);
    return DLT_OK;
}
