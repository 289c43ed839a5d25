/* comm/ internals of the gradient buckets: their state, shared by
 * bucket.c (the rounds and the communication thread) and bucket_zero.c
 * (ZeRO-1's pieces and parameter all-gather). Not for use outside comm/. */
#ifndef DLT_BUCKET_INTERNAL_H
#define DLT_BUCKET_INTERNAL_H

#include <mpi.h>
#include <pthread.h>

#include "comm/bucket.h"
#include "comm/zero.h"

struct dlt_buckets {
    dlt_comm_t comm;
    float *grads;               /* (n) the gradient arena */
    size_t n;
    int count;
    size_t *ends;               /* (count) end offset of each bucket */
    MPI_Request *req;           /* (count) MPI_REQUEST_NULL when not in flight; the worker's when threaded */
    double *t_start, *t_end;    /* (count) last round's times; under mu when threaded */
    int *done;                  /* (count) 1 once complete in this round; the worker's when threaded */
    int next;                   /* first bucket not handed over (started) this round */
    int open;                   /* a round has begun and not finished */
    int use_dev;
    dlt_bucket_device_ops dev;

    /* ZeRO-1 only */
    const dlt_zero *zero;       /* NULL: allreduce */
    int rank, world;
    int *counts;                /* (count * world) piece sizes per bucket, for MPI */
    int *displs;                /* (count * world) piece offsets per bucket */
    MPI_Request *areq;          /* (count) the parameter all-gathers */

    /* the communication thread (threaded mode only) */
    int threaded;
    MPI_Comm wcomm;             /* duplicate the worker's reductions run on */
    MPI_Request *greq;          /* (count) completed by the worker when bucket i is summed */
    pthread_t thread;
    int thread_ok;
    pthread_mutex_t mu;
    pthread_cond_t cv;          /* new work, a new round, or quit */
    int locks_ok;
    /* under mu */
    unsigned round;             /* bumped by begin() */
    int posted;                 /* buckets the worker may start this round */
    int inflight;               /* reductions the worker has started and not seen complete */
    int quit;
    int werr;                   /* MPI error the worker hit (MPI_SUCCESS: none) */
    int werr_bucket;
    const char *werr_call;
};

/* bucket.c: dlt_buckets_init, with the ZeRO-1 plan z (NULL: allreduce). */
dlt_status dlt_buckets_init_plan(dlt_comm_t c, float *grads, size_t n, size_t bucket_floats,
                                 const dlt_bucket_device_ops *dev, const dlt_zero *z, dlt_buckets_t *out);

/* bucket_zero.c: allocates and fills b->counts, b->displs and b->areq from
 * b->zero. DLT_ERR_NOMEM. */
dlt_status dlt_buckets_zero_plan(dlt_buckets_t b);

/* bucket_zero.c: after every bucket's in-place MPI reduce-scatter, moves
 * this rank's summed piece from the bucket start to its own place. A no-op
 * without ZeRO or on device ops (NCCL leaves it in place). */
void dlt_buckets_zero_place(dlt_buckets_t b);

#endif
