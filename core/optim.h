/* Optimizers, learning-rate schedules and gradient clipping.
 *
 * An optimizer updates a whole parameter arena with one fused backend call
 * (backend.h opt_update); its state (momentum, Adam moments) lives in arenas
 * of the same layout, allocated once at init. Semantics follow torch.optim so
 * that PyTorch is the test oracle. */
#ifndef DLT_OPTIM_H
#define DLT_OPTIM_H

#include <stddef.h>
#include <stdint.h>

#include "core/backend.h"

typedef enum {
    DLT_SCHED_CONSTANT,
    DLT_SCHED_STEP,    /* lr * gamma^(floor(step / step_size)) */
    DLT_SCHED_COSINE   /* lr_min + (lr - lr_min) (1 + cos(pi step / total)) / 2 */
} dlt_sched_kind;

typedef struct {
    dlt_sched_kind kind;
    float lr;
    float lr_min;          /* cosine floor */
    int64_t step_size;     /* step */
    float gamma;           /* step */
    int64_t total_steps;   /* cosine */
    int64_t warmup_steps;  /* linear warm-up from lr/warmup to lr, before the schedule */
} dlt_sched;

/* Learning rate for 0-based optimizer step `step`. During warm-up
 * lr * (step + 1) / warmup_steps; afterwards the schedule, counted from the
 * end of warm-up. */
float dlt_sched_lr(const dlt_sched *s, int64_t step);

/* ZeRO-1 (comm/zero.h): this optimizer updates only some segments of the
 * arena, and its state holds only those, packed back to back in segment
 * order. The caller owns the arrays. */
typedef struct {
    size_t count;          /* segments */
    const size_t *off;     /* (count) start of segment i in the arena, increasing */
    const size_t *len;     /* (count) floats of segment i (0 allowed) */
    size_t total;          /* sum of len: floats per state arena */
    /* sums v (k doubles) in place over every rank holding a shard of the
     * arena, identically on all of them (the global gradient norm) */
    dlt_status (*sum)(void *ctx, double *v, size_t k);
    void *ctx;
} dlt_optim_shard;

typedef struct {
    dlt_opt_hparams h;     /* kind and hyper-parameters; h.lr and h.t set per step */
    dlt_sched sched;
    float clip_norm;       /* > 0: scale gradients so their global L2 norm <= clip_norm */
    dlt_backend *be;
    size_t n;              /* the parameter arena's floats */
    const dlt_optim_shard *shard; /* NULL: the whole arena; else set before init */
    float *s1, *s2;        /* state arenas (backend memory, n or shard->total floats), NULL if unused */
    int64_t step;          /* optimizer steps taken */
} dlt_optim;

dlt_status dlt_optim_init(dlt_optim *o, dlt_backend *be, size_t n);
void dlt_optim_free(dlt_optim *o);

/* One update of w (n) from g (n): clipping (g is scaled in place when
 * clip_norm > 0), then the scheduled update. *grad_norm (may be NULL)
 * receives the global gradient norm before clipping. With a shard only its
 * segments of g are read (they must hold the global gradient) and only its
 * segments of w change; the norm is summed over the shards (shard->sum). */
dlt_status dlt_optim_step(dlt_optim *o, float *w, float *g, double *grad_norm);

/* Sum of squares of the gradient g (n) the step reads: the whole arena, or
 * with a shard its segments summed over all shards (collective then).
 * DLT_ERR_UNSUPPORTED without backend sumsq. */
dlt_status dlt_optim_grad_sumsq(const dlt_optim *o, const float *g, double *ss);

/* Floats per state arena (n, or shard->total). */
size_t dlt_optim_state_floats(const dlt_optim *o);

/* Stores values of state arena k (0: s1, 1: s2) given in the full arena
 * layout: src_host holds floats [off, off + len) of the arena; only the
 * part this optimizer keeps (all, or its shard's segments) is uploaded.
 * For checkpoint loading, which reads the full layout whatever the ranks.
 * DLT_ERR_INVALID when arena k is unused or the range exceeds n. */
dlt_status dlt_optim_state_put(dlt_optim *o, int k, size_t off, const float *src_host, size_t len);

/* Name <-> kind, for the config. Return -1 / NULL if unknown. */
int dlt_opt_kind_parse(const char *s);
int dlt_sched_kind_parse(const char *s);

#endif
