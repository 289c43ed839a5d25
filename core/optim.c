/* Optimizer driver: schedule, clipping, and the fused backend update.
 *
 * The numeric work lives in the backend (opt_update, sumsq, scale) so this
 * file never touches parameter memory itself and runs unchanged on CPU and
 * GPU. One step is: global L2 norm of the gradient arena (one sumsq, the only
 * host sync), clipping by one scale when that norm exceeds clip_norm, then
 * one opt_update with the learning rate the schedule gives for this step.
 *
 * Semantics follow PyTorch so torch is the test oracle:
 *  - clipping is torch.nn.utils.clip_grad_norm_: scale = clip / (norm + 1e-6),
 *    applied only when it is < 1 (torch multiplies by the clamped factor,
 *    which is a no-op at 1);
 *  - the schedule is a closed form (no recursion, so a resumed run recomputes
 *    the same rate from the step number alone):
 *      warm-up   step < W:  lr * (step + 1) / W
 *      then s = step - W:
 *      constant  lr
 *      step      lr * gamma^floor(s / step_size)       (torch StepLR)
 *      cosine    lr_min + (lr - lr_min) (1 + cos(pi s / T)) / 2, T = total - W,
 *                lr_min once s >= T                     (torch CosineAnnealingLR
 *                                                        up to T; torch then
 *                                                        rises again, we stay)
 *    Warm-up followed by the schedule equals torch's SequentialLR of
 *    LinearLR(1/W, 1, W - 1) and the schedule, milestone W.
 *
 * A non-finite gradient norm makes the step fail with DLT_ERR_NUMERIC before
 * anything is modified, so weights and optimizer state stay usable and the
 * caller decides (skip the step, lower a loss scale, abort). */
#include "core/optim.h"

#include <math.h>
#include <stddef.h>
#include <strings.h>

#include "core/status.h"

/* torch.nn.utils.clip_grad_norm_ adds this to the norm before dividing. */
#define CLIP_EPS 1e-6

float dlt_sched_lr(const dlt_sched *s, int64_t step)
{
    double lr = s->lr;
    int64_t w = s->warmup_steps > 0 ? s->warmup_steps : 0;
    if (step < 0) step = 0;
    if (step < w) return (float)(lr * (double)(step + 1) / (double)w);
    int64_t k = step - w;
    switch (s->kind) {
    case DLT_SCHED_CONSTANT:
        break;
    case DLT_SCHED_STEP:
        if (s->step_size > 0) lr *= pow((double)s->gamma, (double)(k / s->step_size));
        break;
    case DLT_SCHED_COSINE: {
        int64_t total = s->total_steps - w;
        double lo = s->lr_min;
        if (total <= 0 || k >= total) return (float)lo;
        lr = lo + (lr - lo) * (1.0 + cos(M_PI * (double)k / (double)total)) / 2.0;
        break;
    }
    }
    return (float)lr;
}

/* Which state arenas kind h needs: *n1, *n2 set to 1 when s1, s2 are used. */
static void state_needs(const dlt_opt_hparams *h, int *n1, int *n2)
{
    *n1 = *n2 = 0;
    switch (h->kind) {
    case DLT_OPT_SGD: *n1 = h->momentum != 0.0f; break;
    case DLT_OPT_ADAM:
    case DLT_OPT_ADAMW: *n1 = *n2 = 1; break;
    case DLT_OPT_ADAGRAD: *n1 = 1; break;
    case DLT_OPT_RMSPROP:
        *n1 = 1;
        *n2 = h->momentum > 0.0f;
        break;
    }
}

/* Rejects hyper-parameters torch.optim would reject (same bounds), plus a
 * schedule that cannot be evaluated. */
static dlt_status check_hparams(const dlt_optim *o)
{
    const dlt_opt_hparams *h = &o->h;
    const dlt_sched *s = &o->sched;
    if ((unsigned)h->kind > DLT_OPT_RMSPROP)
        return DLT_ERR(DLT_ERR_INVALID, "optimizer: unknown kind %d", (int)h->kind);
    if (!(s->lr >= 0.0f) || !isfinite(s->lr))
        return DLT_ERR(DLT_ERR_INVALID, "optimizer: learning rate %g must be >= 0", s->lr);
    if (!(h->weight_decay >= 0.0f))
        return DLT_ERR(DLT_ERR_INVALID, "optimizer: weight_decay %g must be >= 0",
                       h->weight_decay);
    if (!(h->momentum >= 0.0f))
        return DLT_ERR(DLT_ERR_INVALID, "optimizer: momentum %g must be >= 0", h->momentum);
    if (!(o->clip_norm >= 0.0f))
        return DLT_ERR(DLT_ERR_INVALID, "optimizer: clip_norm %g must be >= 0", o->clip_norm);
    if (h->kind == DLT_OPT_SGD && h->nesterov && h->momentum <= 0.0f)
        return DLT_ERR(DLT_ERR_INVALID, "optimizer: Nesterov momentum requires momentum > 0");
    if (h->kind == DLT_OPT_ADAM || h->kind == DLT_OPT_ADAMW) {
        if (!(h->beta1 >= 0.0f && h->beta1 < 1.0f) || !(h->beta2 >= 0.0f && h->beta2 < 1.0f))
            return DLT_ERR(DLT_ERR_INVALID, "optimizer: betas (%g, %g) must lie in [0, 1)",
                           h->beta1, h->beta2);
    }
    if (h->kind == DLT_OPT_RMSPROP && !(h->alpha >= 0.0f && h->alpha <= 1.0f))
        return DLT_ERR(DLT_ERR_INVALID, "optimizer: RMSprop alpha %g must lie in [0, 1]",
                       h->alpha);
    if (h->kind != DLT_OPT_SGD && !(h->eps >= 0.0f))
        return DLT_ERR(DLT_ERR_INVALID, "optimizer: eps %g must be >= 0", h->eps);
    if (s->warmup_steps < 0)
        return DLT_ERR(DLT_ERR_INVALID, "optimizer: warmup_steps must be >= 0");
    if (s->kind == DLT_SCHED_STEP && (s->step_size <= 0 || !(s->gamma >= 0.0f)))
        return DLT_ERR(DLT_ERR_INVALID, "optimizer: step schedule needs step_size > 0 and "
                                        "gamma >= 0");
    if (s->kind == DLT_SCHED_COSINE && s->total_steps <= s->warmup_steps)
        return DLT_ERR(DLT_ERR_INVALID,
                       "optimizer: cosine schedule needs total_steps (%lld) > warmup_steps (%lld)",
                       (long long)s->total_steps, (long long)s->warmup_steps);
    return DLT_OK;
}

/* Contract: the caller fills o->h (kind and hyper-parameters; lr and t are
 * overwritten per step), o->sched (sched.lr is the base rate; when it is 0
 * init takes h.lr) and o->clip_norm, then calls init, which
 * validates them, allocates the zeroed state arenas the kind needs for n
 * parameters on be, and sets step to 0. On failure nothing stays allocated
 * and o->s1/s2 are NULL. Returns DLT_ERR_INVALID for bad hyper-parameters,
 * the allocator's status otherwise. */
dlt_status dlt_optim_init(dlt_optim *o, dlt_backend *be, size_t n)
{
    if (o == NULL || be == NULL) return DLT_ERR(DLT_ERR_INVALID, "optimizer: NULL argument");
    o->be = be;
    o->n = n;
    o->s1 = o->s2 = NULL;
    o->step = 0;
    /* A caller that set only h.lr means a constant rate of h.lr. */
    if (o->sched.lr == 0.0f && o->h.lr != 0.0f) o->sched.lr = o->h.lr;
    DLT_CHECK(check_hparams(o));
    if (be->opt_update == NULL)
        return DLT_ERR(DLT_ERR_UNSUPPORTED, "op opt_update not supported on backend %s",
                       be->name ? be->name : "?");
    int need1, need2;
    state_needs(&o->h, &need1, &need2);
    if (n == 0) return DLT_OK;
    dlt_status st = DLT_OK;
    if (need1) DLT_CHECK_GOTO(be->alloc(be, n * sizeof(float), (void **)&o->s1), st, fail);
    if (need2) DLT_CHECK_GOTO(be->alloc(be, n * sizeof(float), (void **)&o->s2), st, fail);
    return DLT_OK;
fail:
    dlt_optim_free(o);
    return st;
}

/* Contract: releases the state arenas; safe on a zeroed or already freed
 * optimizer. */
void dlt_optim_free(dlt_optim *o)
{
    if (o == NULL || o->be == NULL) return;
    if (o->s1) o->be->free(o->be, o->s1);
    if (o->s2) o->be->free(o->be, o->s2);
    o->s1 = o->s2 = NULL;
}

/* Contract: see optim.h. w, g: (n) backend memory. The norm is computed (one
 * host sync) only when clipping is on or grad_norm is wanted. Returns
 * DLT_ERR_NUMERIC, with w, g, state and step untouched, when that norm is not
 * finite; DLT_ERR_UNSUPPORTED when the backend lacks sumsq/scale. */
dlt_status dlt_optim_step(dlt_optim *o, float *w, float *g, double *grad_norm)
{
    dlt_backend *be = o->be;
    if (be == NULL) return DLT_ERR(DLT_ERR_INVALID, "optimizer: step before init");
    if (o->clip_norm > 0.0f || grad_norm != NULL) {
        if (be->sumsq == NULL || be->scale == NULL)
            return DLT_ERR(DLT_ERR_UNSUPPORTED, "op sumsq/scale not supported on backend %s",
                           be->name ? be->name : "?");
        double ss = 0.0;
        DLT_CHECK(be->sumsq(be, o->n, g, &ss));
        double norm = sqrt(ss);
        if (grad_norm) *grad_norm = norm;
        if (!isfinite(norm))
            return DLT_ERR(DLT_ERR_NUMERIC, "optimizer: gradient norm is %g at step %lld", norm,
                           (long long)o->step);
        if (o->clip_norm > 0.0f) {
            double coef = (double)o->clip_norm / (norm + CLIP_EPS);
            if (coef < 1.0) DLT_CHECK(be->scale(be, o->n, (float)coef, g));
        }
    }
    o->h.lr = dlt_sched_lr(&o->sched, o->step);
    o->h.t = o->step + 1;
    DLT_CHECK(be->opt_update(be, &o->h, o->n, w, g, o->s1, o->s2));
    o->step++;
    return DLT_OK;
}

int dlt_opt_kind_parse(const char *s)
{
    static const struct { const char *name; dlt_opt_kind kind; } tab[] = {
        {"sgd", DLT_OPT_SGD},         {"adam", DLT_OPT_ADAM},
        {"adamw", DLT_OPT_ADAMW},     {"adagrad", DLT_OPT_ADAGRAD},
        {"rmsprop", DLT_OPT_RMSPROP},
    };
    if (s == NULL) return -1;
    for (size_t i = 0; i < sizeof tab / sizeof tab[0]; i++)
        if (strcasecmp(s, tab[i].name) == 0) return (int)tab[i].kind;
    return -1;
}

int dlt_sched_kind_parse(const char *s)
{
    static const struct { const char *name; dlt_sched_kind kind; } tab[] = {
        {"constant", DLT_SCHED_CONSTANT},
        {"step", DLT_SCHED_STEP},
        {"cosine", DLT_SCHED_COSINE},
    };
    if (s == NULL) return -1;
    for (size_t i = 0; i < sizeof tab / sizeof tab[0]; i++)
        if (strcasecmp(s, tab[i].name) == 0) return (int)tab[i].kind;
    return -1;
}
