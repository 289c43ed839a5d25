/* Gradient buckets: the gradient arena summed over all ranks in slices that
 * start while backward is still running.
 *
 * The arena is laid out in backward order (core/model.h), so its leading
 * floats become final first. The caller reports progress with
 * dlt_buckets_ready(n_ready) ("the first n_ready floats are final"), usually
 * from the model's grad-ready hook after each layer; every bucket that lies
 * entirely inside the final prefix starts its reduction at once.
 * dlt_buckets_finish starts the rest and waits for all of them, with a
 * deadline, so the optimizer sees the sum.
 *
 * On the CPU a bucket is an MPI_Iallreduce in place. MPI progresses a
 * non-blocking collective only while some thread is inside MPI, so when MPI
 * runs at MPI_THREAD_MULTIPLE (dlt_comm_init asks for it) a communication
 * thread owned by the buckets starts and drives the reductions while
 * backward computes; otherwise, or with env DLT_COMM_THREAD=0 on any rank,
 * each dlt_buckets_ready() call drives them (once per layer). On a GPU the caller
 * passes device ops (NCCL on a communication stream ordered after the
 * compute stream by an event); the buckets then only decide when to start. */
#ifndef DLT_BUCKET_H
#define DLT_BUCKET_H

#include <stddef.h>

#include "comm/comm.h"
#include "core/status.h"

typedef struct dlt_buckets *dlt_buckets_t;
struct dlt_zero; /* comm/zero.h */

/* Collectives on device memory (NULL: MPI on host memory). */
typedef struct {
    void *ctx;
    /* queue the in-place sum over all ranks of buf (n floats), ordered after
     * the compute work queued so far; returns without waiting */
    dlt_status (*start)(void *ctx, float *buf, size_t n);
    /* wait until every started sum is complete */
    dlt_status (*wait_all)(void *ctx);
    /* ZeRO-1 only (dlt_buckets_init_zero), NULL otherwise: queue, like
     * start, the reduce-scatter of buf (n floats) leaving the sum of each
     * rank's piece (dlt_zero_piece) in place, and the all-gather of every
     * rank's piece of buf in place; wait_all waits for them too */
    dlt_status (*reduce_scatter)(void *ctx, float *buf, size_t n);
    dlt_status (*all_gather)(void *ctx, float *buf, size_t n);
} dlt_bucket_device_ops;

/* Splits n floats into consecutive buckets of bucket_floats (the last one
 * shorter); bucket_floats == 0 means one bucket of everything. Writes the
 * end offset of bucket i into ends[i] for i < max and returns the number of
 * buckets (0 when n == 0), which may exceed max. */
int dlt_bucket_plan(size_t n, size_t bucket_floats, size_t *ends, int max);

/* Buckets over grads (n floats, host memory for MPI, device memory with
 * dev). bucket_floats as for dlt_bucket_plan; at most INT_MAX. dev is
 * copied. Collective without dev (the ranks agree on the communication
 * thread). Returns DLT_ERR_INVALID, DLT_ERR_NOMEM or DLT_ERR_COMM. */
dlt_status dlt_buckets_init(dlt_comm_t c, float *grads, size_t n, size_t bucket_floats,
                            const dlt_bucket_device_ops *dev, dlt_buckets_t *out);
void dlt_buckets_free(dlt_buckets_t b);

/* ZeRO-1 (comm/zero.h): buckets of plan z over grads (dlt_zero_arena(z)
 * floats) that reduce-scatter instead of allreduce: after finish, each
 * rank's piece of every bucket holds the sum over all ranks (in place), the
 * rest of the arena its own local values. dev needs reduce_scatter and
 * all_gather. z must outlive the buckets. Collective as dlt_buckets_init. */
dlt_status dlt_buckets_init_zero(dlt_comm_t c, float *grads, const struct dlt_zero *z,
                                 const dlt_bucket_device_ops *dev, dlt_buckets_t *out);
/* ZeRO-1 buckets only, outside a round: all-gathers w (an arena of the
 * gradient arena's layout, e.g. the parameters) so that every rank's piece
 * of every bucket reaches all ranks. Collective; waits with the deadline and
 * failure notices of dlt_comm_wait. DLT_ERR_INVALID on buckets without
 * ZeRO or inside a round. */
dlt_status dlt_buckets_gather(dlt_buckets_t b, float *w);

/* 1 when a communication thread drives the reductions (see above). */
int dlt_buckets_threaded(dlt_buckets_t b);

int dlt_buckets_count(dlt_buckets_t b);
/* Offset and length (floats) of bucket i. */
void dlt_buckets_range(dlt_buckets_t b, int i, size_t *offset, size_t *len);

/* Starts a round: no bucket started yet. Fails (DLT_ERR_INVALID) if the
 * previous round was not finished. */
dlt_status dlt_buckets_begin(dlt_buckets_t b);
/* The first n_ready floats of the arena are final: starts every complete
 * bucket not yet started, in order, and tests those in flight. Calls with a
 * smaller n_ready than before are harmless. Collective in effect: every rank
 * must start the same buckets in the same order (they do, whatever their
 * timing, because buckets start in arena order). */
dlt_status dlt_buckets_ready(dlt_buckets_t b, size_t n_ready);
/* Starts the buckets not yet started and waits for every one, with the
 * deadline and failure notices of dlt_comm_wait (comm.timeout_s; on a GPU
 * the NCCL communicator's timeout). DLT_ERR_COMM naming the bucket on an MPI
 * error, a peer's failure or the deadline. */
dlt_status dlt_buckets_finish(dlt_buckets_t b);

/* Times (seconds, CLOCK_MONOTONIC) of the last round: start of bucket i and
 * when it was seen complete (by the communication thread; without it by
 * MPI_Test while backward ran, or in finish; on a GPU: when finish
 * returned). 0 for not yet. Safe while the round runs. */
void dlt_buckets_times(dlt_buckets_t b, int i, double *start, double *end);
/* Seconds, CLOCK_MONOTONIC (the clock of the bucket times). */
double dlt_buckets_now(void);

#endif
