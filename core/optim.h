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

typedef struct {
    dlt_opt_hparams h;     /* kind and hyper-parameters; h.lr and h.t set per step */
    dlt_sched sched;
    float clip_norm;       /* > 0: scale gradients so their global L2 norm <= clip_norm */
    dlt_backend *be;
    size_t n;
    float *s1, *s2;        /* state arenas (backend memory), NULL if unused */
    int64_t step;          /* optimizer steps taken */
} dlt_optim;

dlt_status dlt_optim_init(dlt_optim *o, dlt_backend *be, size_t n);
void dlt_optim_free(dlt_optim *o);

/* One update of w (n) from g (n): clipping (g is scaled in place when
 * clip_norm > 0), then the scheduled update. *grad_norm (may be NULL)
 * receives the global gradient norm before clipping. */
dlt_status dlt_optim_step(dlt_optim *o, float *w, float *g, double *grad_norm);

/* Name <-> kind, for the config. Return -1 / NULL if unknown. */
int dlt_opt_kind_parse(const char *s);
int dlt_sched_kind_parse(const char *s);

#endif
