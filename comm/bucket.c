/* Gradient buckets over MPI_Iallreduce or device ops (see bucket.h).
 *
 * State per round: `next` is the first bucket not yet started; buckets
 * [0, next) are in flight or done. Buckets start strictly in arena order, on
 * every rank, so the non-blocking collectives are issued in the same order
 * everywhere, which MPI requires of collectives on one communicator, even
 * though ranks reach a given bucket at different times.
 *
 * Progress: Open MPI (like most MPIs without an asynchronous progress
 * thread) advances a non-blocking collective only inside MPI calls, so every
 * dlt_buckets_ready() ends with an MPI_Testsome over the requests in flight.
 * Called after each layer's backward, that gives a reduction one round of
 * its algorithm per layer, which is what lets it finish behind backward.
 *
 * Finish waits for each bucket in turn with dlt_comm_wait (comm/guard.c), the
 * polling wait with a deadline and failure notices that every collective of
 * comm/ ends with, after recording the bucket being waited for: a dead or
 * failed peer becomes an error naming the bucket instead of a hang. */
#include "comm/bucket.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "comm/comm_internal.h"
#include "comm/guard.h"

struct dlt_buckets {
    dlt_comm_t comm;
    float *grads;               /* (n) the gradient arena */
    size_t n;
    int count;
    size_t *ends;               /* (count) end offset of each bucket */
    MPI_Request *req;           /* (count) MPI_REQUEST_NULL when not in flight */
    double *t_start, *t_end;    /* (count) last round's times */
    int *done;                  /* (count) 1 once complete in this round */
    int next;                   /* first bucket not started this round */
    int open;                   /* a round has begun and not finished */
    int use_dev;
    dlt_bucket_device_ops dev;
};

double dlt_buckets_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Contract: see bucket.h. */
int dlt_bucket_plan(size_t n, size_t bucket_floats, size_t *ends, int max)
{
    if (n == 0) return 0;
    if (bucket_floats == 0 || bucket_floats > n) bucket_floats = n;
    size_t count = (n + bucket_floats - 1) / bucket_floats;
    if (count > INT_MAX) return INT_MAX;
    for (size_t i = 0; i < count && (int)i < max; i++) {
        size_t end = (i + 1) * bucket_floats;
        ends[i] = end < n ? end : n;
    }
    return (int)count;
}

/* Contract: see bucket.h. */
dlt_status dlt_buckets_init(dlt_comm_t c, float *grads, size_t n, size_t bucket_floats,
                            const dlt_bucket_device_ops *dev, dlt_buckets_t *out)
{
    if (!out) return DLT_ERR(DLT_ERR_INVALID, "dlt_buckets_init: NULL output");
    *out = NULL;
    if (!c || (n > 0 && !grads))
        return DLT_ERR(DLT_ERR_INVALID, "dlt_buckets_init: NULL communicator or arena");
    if (bucket_floats > INT_MAX)
        return DLT_ERR(DLT_ERR_INVALID, "gradient bucket of %zu floats exceeds MPI's int count",
                       bucket_floats);
    if (bucket_floats == 0 && n > INT_MAX)
        bucket_floats = INT_MAX; /* "one bucket" still has to fit an MPI count */
    if (dev && (!dev->start || !dev->wait_all))
        return DLT_ERR(DLT_ERR_INVALID, "dlt_buckets_init: device ops without start/wait_all");

    struct dlt_buckets *b = calloc(1, sizeof *b);
    if (!b) return DLT_ERR(DLT_ERR_NOMEM, "out of memory for gradient buckets");
    b->comm = c;
    b->grads = grads;
    b->n = n;
    if (dev) {
        b->use_dev = 1;
        b->dev = *dev;
    }
    b->count = dlt_bucket_plan(n, bucket_floats, NULL, 0);
    size_t k = b->count > 0 ? (size_t)b->count : 1;
    b->ends = calloc(k, sizeof *b->ends);
    b->req = calloc(k, sizeof *b->req);
    b->t_start = calloc(k, sizeof *b->t_start);
    b->t_end = calloc(k, sizeof *b->t_end);
    b->done = calloc(k, sizeof *b->done);
    if (!b->ends || !b->req || !b->t_start || !b->t_end || !b->done) {
        int count = b->count;
        dlt_buckets_free(b);
        return DLT_ERR(DLT_ERR_NOMEM, "out of memory for %d gradient buckets", count);
    }
    dlt_bucket_plan(n, bucket_floats, b->ends, b->count);
    for (int i = 0; i < b->count; i++) b->req[i] = MPI_REQUEST_NULL;
    *out = b;
    return DLT_OK;
}

/* Contract: releases b (NULL is a no-op). Requests still in flight are left
 * to MPI: freeing memory under them would be worse. */
void dlt_buckets_free(dlt_buckets_t b)
{
    if (!b) return;
    free(b->ends);
    free(b->req);
    free(b->t_start);
    free(b->t_end);
    free(b->done);
    free(b);
}

int dlt_buckets_count(dlt_buckets_t b) { return b->count; }

void dlt_buckets_range(dlt_buckets_t b, int i, size_t *offset, size_t *len)
{
    size_t lo = i > 0 ? b->ends[i - 1] : 0;
    if (offset) *offset = lo;
    if (len) *len = b->ends[i] - lo;
}

void dlt_buckets_times(dlt_buckets_t b, int i, double *start, double *end)
{
    if (start) *start = b->t_start[i];
    if (end) *end = b->t_end[i];
}

/* Contract: see bucket.h. */
dlt_status dlt_buckets_begin(dlt_buckets_t b)
{
    if (b->open)
        return DLT_ERR(DLT_ERR_INVALID, "gradient buckets: a round began before the last finished");
    b->open = 1;
    b->next = 0;
    for (int i = 0; i < b->count; i++) {
        b->done[i] = 0;
        b->t_start[i] = b->t_end[i] = 0;
    }
    return DLT_OK;
}

/* Starts bucket i's reduction. */
static dlt_status start_bucket(dlt_buckets_t b, int i)
{
    size_t off, len;
    dlt_buckets_range(b, i, &off, &len);
    b->t_start[i] = dlt_buckets_now();
    if (b->use_dev) return b->dev.start(b->dev.ctx, b->grads + off, len);
    DLT_MPI_CHECK(MPI_Iallreduce(MPI_IN_PLACE, b->grads + off, (int)len, MPI_FLOAT, MPI_SUM,
                                 dlt_comm_mpi(b->comm), &b->req[i]));
    return DLT_OK;
}

/* Tests the MPI requests in flight; records completion times. *left gets
 * the number still in flight. */
static dlt_status test_some(dlt_buckets_t b, int *left)
{
    *left = 0;
    if (b->use_dev || b->next == 0) return DLT_OK;
    int idx[64], outcount = 0;
    /* only [0, next) can be active; Testsome reports at most that many */
    for (int base = 0; base < b->next; base += 64) {
        int k = b->next - base < 64 ? b->next - base : 64;
        DLT_MPI_CHECK(MPI_Testsome(k, b->req + base, &outcount, idx, MPI_STATUSES_IGNORE));
        if (outcount == MPI_UNDEFINED) continue;
        double t = dlt_buckets_now();
        for (int j = 0; j < outcount; j++) {
            b->done[base + idx[j]] = 1;
            b->t_end[base + idx[j]] = t;
        }
    }
    for (int i = 0; i < b->next; i++) *left += !b->done[i];
    return DLT_OK;
}

/* Contract: see bucket.h. */
dlt_status dlt_buckets_ready(dlt_buckets_t b, size_t n_ready)
{
    if (!b->open) return DLT_ERR(DLT_ERR_INVALID, "gradient buckets: ready() outside a round");
    while (b->next < b->count && b->ends[b->next] <= n_ready) {
        DLT_CHECK(start_bucket(b, b->next));
        b->next++;
    }
    int left;
    return test_some(b, &left);
}

/* Contract: see bucket.h. */
dlt_status dlt_buckets_finish(dlt_buckets_t b)
{
    if (!b->open) return DLT_ERR(DLT_ERR_INVALID, "gradient buckets: finish() outside a round");
    while (b->next < b->count) {
        DLT_CHECK(start_bucket(b, b->next));
        b->next++;
    }
    if (b->use_dev) {
        DLT_CHECK(b->dev.wait_all(b->dev.ctx));
        double t = dlt_buckets_now();
        for (int i = 0; i < b->count; i++) b->t_end[i] = t;
        b->open = 0;
        return DLT_OK;
    }
    for (int i = 0; i < b->count; i++) {
        if (b->done[i]) continue;
        char what[48];
        snprintf(what, sizeof what, "gradient bucket %d of %d", i, b->count);
        dlt_comm_set_bucket(b->comm, i);
        DLT_CHECK(dlt_comm_wait(b->comm, &b->req[i], what));
        b->done[i] = 1;
        b->t_end[i] = dlt_buckets_now();
    }
    dlt_comm_set_bucket(b->comm, -1);
    b->open = 0;
    return DLT_OK;
}
