/* Dynamic loss scaling for train.precision fp16 (the PyTorch GradScaler
 * scheme): the loss gradient is multiplied by a scale S before backward so
 * that small gradients survive the fp16 rounding inside the GEMMs; after the
 * gradient allreduce the arena is multiplied by 1/S. A non-finite gradient
 * (overflow) skips the step and halves S; 2000 good steps in a row double
 * it. Every rank holds the same reduced gradients, so every rank makes the
 * same decision without a message. Other precisions: S = 1, no check. */
#ifndef DLT_LOSSSCALE_H
#define DLT_LOSSSCALE_H

#include <stddef.h>
#include <stdint.h>

#include "core/backend.h"
#include "core/status.h"

typedef struct {
    int on;            /* fp16 on a GPU */
    float scale;       /* S */
    int good;          /* finite steps in a row since the last change */
    int interval;      /* good steps before S doubles */
    int64_t overflows; /* skipped steps, for the summary */
} dlt_lossscale;

/* Scaler for precision (train.precision) on backend be: on only for fp16
 * on a non-CPU backend; S starts at 65536. */
void dlt_lossscale_init(dlt_lossscale *ls, const char *precision, const dlt_backend *be);

/* Factor to multiply the loss gradient's scale by (S, or 1 when off). */
float dlt_lossscale_factor(const dlt_lossscale *ls);

/* After the allreduce: g (n) *= 1/S and *overflow = 1 if any gradient was
 * non-finite (then the caller skips the optimizer step; S was halved).
 * Off: *overflow = 0 and nothing runs. One sync (sumsq) per step when on. */
dlt_status dlt_lossscale_unscale(dlt_lossscale *ls, dlt_backend *be, float *g, size_t n,
                                 int *overflow);
/* The same, deciding from ss, the sum of squares of the gradients the
 * optimizer reads, computed by the caller: under ZeRO-1 a rank holds only
 * its pieces of the summed gradient, so ss must be the global sum
 * (dlt_optim_grad_sumsq) for every rank to decide alike. */
dlt_status dlt_lossscale_unscale_ss(dlt_lossscale *ls, dlt_backend *be, float *g, size_t n, double ss,
                                    int *overflow);

#endif
