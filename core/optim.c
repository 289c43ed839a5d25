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
 * ZeRO-1 (o->shard, comm/zero.h): the update is elementwise, so a rank
 * that owns some segments of the arena runs the same opt_update once per
 * segment, with its packed state at the segment's place in the pack; the
 * result is bitwise that of the whole-arena update on those floats. Only the
 * norm needs the other ranks: the segments' sums of squares are added by
 * shard->sum (one scalar allreduce), so every rank clips and checks finiteness
 * with the same global value.
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

/* A shard's segments must be increasing, disjoint, inside the arena, and
 * add up to its total; its sum must exist. */
static dlt_status check_shard(const dlt_optim *o)
{
    const dlt_optim_shard *sh = o->shard;
    if (!sh) return DLT_OK;
    if (!sh->sum || (sh->count > 0 && (!sh->off || !sh->len)))
        return DLT_ERR(DLT_ERR_INVALID, "optimizer: shard without segments or sum");
    size_t end = 0, total = 0;
    for (size_t i = 0; i < sh->count; i++) {
        if (sh->off[i] < end || sh->len[i] > o->n || sh->off[i] > o->n - sh->len[i])
            return DLT_ERR(DLT_ERR_INVALID, "optimizer: shard segment %zu [%zu, +%zu) overlaps or "
                           "leaves the arena of %zu", i, sh->off[i], sh->len[i], o->n);
        end = sh->off[i] + sh->len[i];
        total += sh->len[i];
    }
    if (total != sh->total)
        return DLT_ERR(DLT_ERR_INVALID, "optimizer: shard segments add up to %zu, not %zu", total, sh->total);
    return DLT_OK;
}

/* Contract: see optim.h. */
size_t dlt_optim_state_floats(const dlt_optim *o) { return o->shard ? o->shard->total : o->n; }

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
    DLT_CHECK(check_shard(o));
    int need1, need2;
    state_needs(&o->h, &need1, &need2);
    size_t ns = dlt_optim_state_floats(o);
    if (ns == 0 && !o->shard) return DLT_OK;
    /* an empty shard still gets its arenas, so which arenas exist (and so
     * which collectives a checkpoint runs) is alike on every rank */
    size_t bytes = (ns ? ns : 1) * sizeof(float);
    dlt_status st = DLT_OK;
    if (need1) DLT_CHECK_GOTO(be->alloc(be, bytes, (void **)&o->s1), st, fail);
    if (need2) DLT_CHECK_GOTO(be->alloc(be, bytes, (void **)&o->s2), st, fail);
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
    const dlt_optim_shard *sh = o->shard;
    if (o->clip_norm > 0.0f || grad_norm != NULL) {
        if (be->sumsq == NULL || be->scale == NULL)
            return DLT_ERR(DLT_ERR_UNSUPPORTED, "op sumsq/scale not supported on backend %s",
                           be->name ? be->name : "?");
        double ss = 0.0;
        DLT_CHECK(dlt_optim_grad_sumsq(o, g, &ss));
        double norm = sqrt(ss);
        if (grad_norm) *grad_norm = norm;
        if (!isfinite(norm))
            return DLT_ERR(DLT_ERR_NUMERIC, "optimizer: gradient norm is %g at step %lld", norm,
                           (long long)o->step);
        if (o->clip_norm > 0.0f) {
            double coef = (double)o->clip_norm / (norm + CLIP_EPS);
            if (coef < 1.0 && !sh) DLT_CHECK(be->scale(be, o->n, (float)coef, g));
            for (size_t i = 0; coef < 1.0 && sh && i < sh->count; i++)
                if (sh->len[i]) DLT_CHECK(be->scale(be, sh->len[i], (float)coef, g + sh->off[i]));
        }
    }
    o->h.lr = dlt_sched_lr(&o->sched, o->step);
    o->h.t = o->step + 1;
    if (!sh) {
        DLT_CHECK(be->opt_update(be, &o->h, o->n, w, g, o->s1, o->s2));
    } else {
        size_t at = 0; /* the segment's place in the packed state */
        for (size_t i = 0; i < sh->count; i++) {
            size_t k = sh->len[i], off = sh->off[i];
            if (k) DLT_CHECK(be->opt_update(be, &o->h, k, w + off, g + off, o->s1 ? o->s1 + at : NULL,
                                            o->s2 ? o->s2 + at : NULL));
            at += k;
        }
    }
    o->step++;
    return DLT_OK;
}

/* Contract: see optim.h. */
dlt_status dlt_optim_grad_sumsq(const dlt_optim *o, const float *g, double *ss)
{
    dlt_backend *be = o->be;
    *ss = 0.0;
    if (be == NULL || be->sumsq == NULL)
        return DLT_ERR(DLT_ERR_UNSUPPORTED, "op sumsq not supported on backend %s",
                       be && be->name ? be->name : "?");
    const dlt_optim_shard *sh = o->shard;
    if (!sh) return be->sumsq(be, o->n, g, ss);
    for (size_t i = 0; i < sh->count; i++) {
        double part = 0.0;
        if (sh->len[i]) DLT_CHECK(be->sumsq(be, sh->len[i], g + sh->off[i], &part));
        *ss += part;
    }
    return sh->sum(sh->ctx, ss, 1);
}

/* Contract: see optim.h. */
dlt_status dlt_optim_state_put(dlt_optim *o, int k, size_t off, const float *src_host, size_t len)
{
    float *arena = k == 0 ? o->s1 : k == 1 ? o->s2 : NULL;
    if (!arena || off > o->n || len > o->n - off)
        return DLT_ERR(DLT_ERR_INVALID, "optimizer: state %d [%zu, +%zu) is unused or outside the arena of %zu",
                       k + 1, off, len, o->n);
    dlt_backend *be = o->be;
    const dlt_optim_shard *sh = o->shard;
    if (!sh) return be->upload(be, arena + off, src_host, len * sizeof(float));
    size_t at = 0, end = off + len;
    for (size_t i = 0; i < sh->count; i++) {
        size_t lo = sh->off[i], hi = lo + sh->len[i];
        size_t a = lo > off ? lo : off, b = hi < end ? hi : end;
        if (a < b) DLT_CHECK(be->upload(be, arena + at + (a - lo), src_host + (a - off), (b - a) * sizeof(float)));
        at += sh->len[i];
    }
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
