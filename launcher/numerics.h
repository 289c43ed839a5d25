/* Numerical safety and the per-step time breakdown of the training loop.
 *
 * Once per step, between the gradient allreduce and the optimizer, every
 * rank contributes two numbers to one tiny allreduce: "a stop signal
 * (SIGTERM/SIGUSR1) was caught here" and "my loss is not finite". The
 * optimizer then checks the global gradient norm, identical on every rank
 * after the allreduce. So every decision (stop for a signal, stop or skip
 * for a NaN/Inf) is made from globally reduced values and every rank makes
 * the same one at the same step, without further messages. */
#ifndef DLT_NUMERICS_H
#define DLT_NUMERICS_H

#include <stdint.h>
#include <time.h>

#include "comm/comm.h"
#include "core/model.h"
#include "core/optim.h"

enum { DLT_TIME_DATA, DLT_TIME_FORWARD, DLT_TIME_BACKWARD, DLT_TIME_COMM, DLT_TIME_OPTIM, DLT_TIME_N };

typedef struct {
    int skip;                  /* train.nonfinite: 1 skip, 0 stop */
    int max_skips;             /* skipped steps in a row that stop the run */
    int skips;                 /* skipped in a row now (restored on resume) */
    int64_t skipped;           /* skipped in this process's run, for the summary */
    double time[DLT_TIME_N];   /* seconds per phase since the last log line */
    int64_t steps;             /* steps since the last log line */
    int all_ranks_report;      /* 1: every rank prints the skip warning, not only rank 0 (the
                                * fault-injection tests check that the ranks agree) */
} dlt_numerics;

/* Monotonic seconds. */
static inline double dlt_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Adds the time since t0 to *acc and returns now, to chain phases. */
static inline double dlt_tick(double *acc, double t0)
{
    double t = dlt_now();
    *acc += t - t0;
    return t;
}

/* Catches SIGTERM and SIGUSR1 (Slurm's --signal=B:USR1@120) into a flag
 * that dlt_numerics_step reads; a second SIGTERM ends the process at once. */
void dlt_signals_install(void);
/* The stop signal caught (SIGTERM/SIGUSR1), 0 if none. */
int dlt_signal_caught(void);

/* Collective, once per step after the gradient allreduce: agrees on stop
 * signals and non-finite losses, then applies the optimizer step to w from
 * g, or skips it. *applied = 1 if the step was applied; *stop = 1 if some
 * rank caught a stop signal (the caller checkpoints and exits 0).
 * DLT_ERR_NUMERIC (on every rank alike) when the policy says stop: the
 * message names the step, the lowest rank whose loss was not finite, and the
 * first layer (in backward order) with a non-finite gradient, the same on
 * every rank also when o holds a ZeRO-1 shard (then one more collective:
 * the ranks sum per-parameter flags). */
dlt_status dlt_numerics_step(dlt_numerics *nm, dlt_comm_t comm, dlt_model *m, dlt_optim *o, int64_t step,
                             double local_loss, double *grad_norm, int *applied, int *stop);

/* Mean seconds per step of each phase since the last call (out[DLT_TIME_DATA]
 * from data_wait, the loader's seconds in that window); resets the sums. */
void dlt_numerics_times(dlt_numerics *nm, double data_wait, double out[DLT_TIME_N]);

#endif
