/* Gradient buckets over MPI_Iallreduce or device ops (see bucket.h).
 *
 * State per round: `next` is the first bucket not yet handed over; buckets
 * start strictly in arena order, on every rank, so the non-blocking
 * collectives are issued in the same order everywhere, which MPI requires of
 * collectives on one communicator, even though ranks reach a given bucket at
 * different times.
 *
 * Progress. Open MPI (like most MPIs without an asynchronous progress
 * thread) advances a non-blocking collective only inside MPI calls. Made
 * from the compute thread between layers, those calls are too rare: a long
 * layer's backward holds every reduction started before it. So when MPI
 * provides MPI_THREAD_MULTIPLE, the buckets have a communication thread of
 * their own (the "worker") that drives every bucket reduction:
 *   - ready() starts each complete bucket at once on the compute thread
 *     (MPI_Iallreduce only posts the first round: microseconds), so the
 *     start never waits for the worker to be scheduled and the collectives
 *     are issued in arena order by one thread, on a private duplicate of
 *     the communicator (the compute thread's other collectives, e.g. the
 *     loss sums, run on the group's communicator and must never be matched
 *     against these); then it hands the requests over under a mutex and
 *     signals a condition variable;
 *   - the worker drives them with MPI_Testsome, napping between tests
 *     (10 us doubling to NAP_MAX_NS, back to 10 us whenever one completes)
 *     and sleeping in a plain condition wait when nothing is in flight, so
 *     that with as many ranks as cores it costs little CPU instead of
 *     spinning against backward;
 *   - each bucket has an MPI generalized request that the worker completes
 *     (MPI_Grequest_complete) once the bucket's sum is in place; finish()
 *     waits for those with dlt_comm_wait, exactly as before: same deadline
 *     (comm.timeout_s), same failure notices from other ranks, same
 *     messages naming the bucket and where this rank is.
 * Results are bitwise those of the single-threaded path: the same
 * MPI_Iallreduce on the same slices, only called from another thread.
 *
 * Without MPI_THREAD_MULTIPLE (a program that initialised MPI itself at a
 * lower level), or with DLT_COMM_THREAD=0 on any rank, the compute thread
 * drives the reductions itself: every ready() ends with an MPI_Testsome over
 * the requests in flight, one round of each reduction's algorithm per
 * layer. The choice is agreed over all ranks at init.
 *
 * ZeRO-1 (dlt_buckets_init_zero, bucket_zero.c): the same machinery, each
 * bucket an in-place MPI_Ireduce_scatter instead of an MPI_Iallreduce; the
 * pieces' placement and the parameter all-gather live in bucket_zero.c.
 *
 * Finish waits for each bucket in turn with dlt_comm_wait (comm/guard.c),
 * after recording the bucket being waited for: a dead or failed peer becomes
 * an error naming the bucket instead of a hang. Nothing here allocates per
 * step: MPI allocates its own request objects, as it did before. */
#include "comm/bucket.h"

#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "comm/bucket_internal.h"
#include "comm/comm_internal.h"
#include "comm/guard.h"
#include "comm/zero.h"

#define NAP_MIN_NS 10000L
#define NAP_MAX_NS 200000L

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

/* ---- the worker ---- */

/* Generalized-request callbacks: the request carries no data, only "done";
 * errors are reported through b->werr, read by finish(). */
static int greq_query(void *state, MPI_Status *s)
{
    (void)state;
    MPI_Status_set_elements(s, MPI_BYTE, 0);
    MPI_Status_set_cancelled(s, 0);
    s->MPI_SOURCE = MPI_UNDEFINED;
    s->MPI_TAG = MPI_UNDEFINED;
    return MPI_SUCCESS;
}
static int greq_free(void *state)
{
    (void)state;
    return MPI_SUCCESS;
}
static int greq_cancel(void *state, int complete)
{
    (void)state;
    (void)complete;
    return MPI_SUCCESS;
}

/* Records the worker's failure and completes every generalized request not
 * yet completed (from bucket `first` on), so finish() stops waiting at once
 * and reports it. */
static void worker_fail(dlt_buckets_t b, int rc, const char *call, int bucket, int first)
{
    pthread_mutex_lock(&b->mu);
    if (b->werr == MPI_SUCCESS) {
        b->werr = rc;
        b->werr_call = call;
        b->werr_bucket = bucket;
    }
    pthread_mutex_unlock(&b->mu);
    for (int i = first; i < b->count; i++)
        if (!b->done[i]) MPI_Grequest_complete(b->greq[i]);
}

/* Tests the reductions [first, started); completes the generalized request
 * of each one done. Advances *first past the completed prefix; *moved is
 * set when anything completed. Returns an MPI error code. */
static int worker_test(dlt_buckets_t b, int *first, int started, int *moved)
{
    int idx[64];
    for (int base = *first; base < started; base += 64) {
        int k = started - base < 64 ? started - base : 64, outcount = 0;
        int rc = MPI_Testsome(k, b->req + base, &outcount, idx, MPI_STATUSES_IGNORE);
        if (rc != MPI_SUCCESS) return rc;
        if (outcount == MPI_UNDEFINED || outcount == 0) continue;
        double t = dlt_buckets_now();
        pthread_mutex_lock(&b->mu);
        for (int j = 0; j < outcount; j++) b->t_end[base + idx[j]] = t;
        b->inflight -= outcount;
        pthread_mutex_unlock(&b->mu);
        for (int j = 0; j < outcount; j++) {
            b->done[base + idx[j]] = 1;
            MPI_Grequest_complete(b->greq[base + idx[j]]);
        }
        *moved = 1;
    }
    while (*first < started && b->done[*first]) (*first)++;
    return MPI_SUCCESS;
}

/* The communication thread: drives the reductions in flight, completes
 * their generalized requests, sleeps when there is nothing to do. In
 * threaded mode only this thread tests req[] entries the compute thread has
 * posted, and only it touches done[]. */
static void *worker_main(void *arg)
{
    dlt_buckets_t b = arg;
    unsigned round = 0;
    int first = 0, failed = 0;
    long nap = NAP_MIN_NS;
    pthread_mutex_lock(&b->mu);
    for (;;) {
        if (b->quit) break;
        if (b->round != round) { /* begin() ran: the previous round is complete */
            round = b->round;
            first = failed = 0;
            for (int i = 0; i < b->count; i++) b->done[i] = 0;
        }
        int target = b->posted;
        if (first == target || failed) {
            pthread_cond_wait(&b->cv, &b->mu);
            nap = NAP_MIN_NS;
            continue;
        }
        pthread_mutex_unlock(&b->mu);

        int moved = 0;
        int rc = worker_test(b, &first, target, &moved);
        if (rc != MPI_SUCCESS) {
            worker_fail(b, rc, "MPI_Testsome", first, first);
            failed = 1;
        }

        pthread_mutex_lock(&b->mu);
        if (moved) nap = NAP_MIN_NS;
        if (!b->quit && !failed && first < target && b->posted == target) {
            /* in flight, nothing new: nap, unless new buckets arrive */
            struct timespec ts;
            clock_gettime(CLOCK_MONOTONIC, &ts);
            ts.tv_nsec += nap;
            if (ts.tv_nsec >= 1000000000L) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000L;
            }
            pthread_cond_timedwait(&b->cv, &b->mu, &ts);
            nap = nap * 2 > NAP_MAX_NS ? NAP_MAX_NS : nap * 2;
        }
    }
    pthread_mutex_unlock(&b->mu);
    return NULL;
}

/* Decides, alike on every rank, whether this process uses the worker: MPI
 * at MPI_THREAD_MULTIPLE on every rank and DLT_COMM_THREAD != "0" on every
 * rank. Collective. */
static dlt_status agree_threaded(dlt_comm_t c, int *out)
{
    int level = MPI_THREAD_SINGLE;
    DLT_MPI_CHECK(MPI_Query_thread(&level));
    const char *env = getenv("DLT_COMM_THREAD");
    int mine = level >= MPI_THREAD_MULTIPLE && !(env && !strcmp(env, "0")), all = 0;
    MPI_Request req;
    DLT_MPI_CHECK(MPI_Iallreduce(&mine, &all, 1, MPI_INT, MPI_MIN, dlt_comm_mpi(c), &req));
    DLT_CHECK(dlt_comm_wait(c, &req, "gradient bucket setup"));
    *out = all;
    return DLT_OK;
}

/* Creates the worker's communicator, requests' array, lock and thread. */
static dlt_status start_worker(dlt_buckets_t b)
{
    size_t k = b->count > 0 ? (size_t)b->count : 1;
    b->greq = calloc(k, sizeof *b->greq);
    if (!b->greq) return DLT_ERR(DLT_ERR_NOMEM, "out of memory for %d gradient buckets", b->count);
    for (int i = 0; i < b->count; i++) b->greq[i] = MPI_REQUEST_NULL;
    DLT_MPI_CHECK(MPI_Comm_dup(dlt_comm_mpi(b->comm), &b->wcomm));
    DLT_MPI_CHECK(MPI_Comm_set_errhandler(b->wcomm, MPI_ERRORS_RETURN));
    pthread_condattr_t ca;
    if (pthread_condattr_init(&ca) != 0)
        return DLT_ERR(DLT_ERR_NOMEM, "gradient buckets: cannot create a condition variable");
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    int rc = pthread_cond_init(&b->cv, &ca);
    pthread_condattr_destroy(&ca);
    if (rc != 0) return DLT_ERR(DLT_ERR_NOMEM, "gradient buckets: cannot create a condition variable");
    if (pthread_mutex_init(&b->mu, NULL) != 0) {
        pthread_cond_destroy(&b->cv);
        return DLT_ERR(DLT_ERR_NOMEM, "gradient buckets: cannot create a mutex");
    }
    b->locks_ok = 1;
    b->werr = MPI_SUCCESS;
    if (pthread_create(&b->thread, NULL, worker_main, b) != 0)
        return DLT_ERR(DLT_ERR_NOMEM, "gradient buckets: cannot start the communication thread");
    b->thread_ok = 1;
    return DLT_OK;
}

/* Contract: see bucket.h. */
dlt_status dlt_buckets_init(dlt_comm_t c, float *grads, size_t n, size_t bucket_floats,
                            const dlt_bucket_device_ops *dev, dlt_buckets_t *out)
{
    return dlt_buckets_init_plan(c, grads, n, bucket_floats, dev, NULL, out);
}

/* Contract: see bucket_internal.h. */
dlt_status dlt_buckets_init_plan(dlt_comm_t c, float *grads, size_t n, size_t bucket_floats,
                                 const dlt_bucket_device_ops *dev, const dlt_zero *z, dlt_buckets_t *out)
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
    b->wcomm = MPI_COMM_NULL;
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
    b->zero = z;
    b->rank = dlt_comm_rank(c);
    b->world = dlt_comm_size(c);
    dlt_status st = z ? dlt_buckets_zero_plan(b) : DLT_OK;
    if (st == DLT_OK && !dev) st = agree_threaded(c, &b->threaded);
    if (st == DLT_OK && b->threaded) st = start_worker(b);
    if (st != DLT_OK) {
        dlt_buckets_free(b);
        return st;
    }
    *out = b;
    return DLT_OK;
}

/* Contract: releases b (NULL is a no-op), stopping the communication
 * thread. Requests still in flight are left to MPI (and so is the worker's
 * communicator then): freeing memory under them would be worse. */
void dlt_buckets_free(dlt_buckets_t b)
{
    if (!b) return;
    int inflight = 0;
    if (b->thread_ok) {
        pthread_mutex_lock(&b->mu);
        b->quit = 1;
        pthread_cond_signal(&b->cv);
        pthread_mutex_unlock(&b->mu);
        pthread_join(b->thread, NULL);
        inflight = b->inflight;
    }
    if (b->locks_ok) {
        pthread_mutex_destroy(&b->mu);
        pthread_cond_destroy(&b->cv);
    }
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (b->wcomm != MPI_COMM_NULL && !inflight && !finalized) MPI_Comm_free(&b->wcomm);
    free(b->greq);
    free(b->ends);
    free(b->req);
    free(b->t_start);
    free(b->t_end);
    free(b->done);
    free(b->counts);
    free(b->displs);
    free(b->areq);
    free(b);
}

int dlt_buckets_count(dlt_buckets_t b) { return b->count; }

/* Contract: see bucket.h. Only reads the plan: safe from any thread. */
void dlt_buckets_range(dlt_buckets_t b, int i, size_t *offset, size_t *len)
{
    size_t lo = i > 0 ? b->ends[i - 1] : 0;
    if (offset) *offset = lo;
    if (len) *len = b->ends[i] - lo;
}

/* Contract: see bucket.h. */
void dlt_buckets_times(dlt_buckets_t b, int i, double *start, double *end)
{
    if (b->threaded) pthread_mutex_lock(&b->mu);
    if (start) *start = b->t_start[i];
    if (end) *end = b->t_end[i];
    if (b->threaded) pthread_mutex_unlock(&b->mu);
}

/* Contract: see bucket.h. */
dlt_status dlt_buckets_begin(dlt_buckets_t b)
{
    if (b->open)
        return DLT_ERR(DLT_ERR_INVALID, "gradient buckets: a round began before the last finished");
    if (b->threaded) /* the worker is idle: finish() saw every bucket complete */
        for (int i = 0; i < b->count; i++)
            DLT_MPI_CHECK(MPI_Grequest_start(greq_query, greq_free, greq_cancel, b, &b->greq[i]));
    b->open = 1;
    b->next = 0;
    if (b->threaded) pthread_mutex_lock(&b->mu);
    for (int i = 0; i < b->count; i++) {
        if (!b->threaded) b->done[i] = 0;
        b->t_start[i] = b->t_end[i] = 0;
    }
    if (b->threaded) {
        b->round++;
        b->posted = 0;
        pthread_mutex_unlock(&b->mu);
    }
    return DLT_OK;
}

/* Starts bucket i's reduction (device ops, or MPI on the worker's
 * communicator when threaded). */
static dlt_status start_bucket(dlt_buckets_t b, int i)
{
    size_t off, len;
    dlt_buckets_range(b, i, &off, &len);
    double t = dlt_buckets_now();
    if (b->threaded) {
        pthread_mutex_lock(&b->mu);
        b->t_start[i] = t;
        pthread_mutex_unlock(&b->mu);
    } else {
        b->t_start[i] = t;
    }
    MPI_Comm mc = b->threaded ? b->wcomm : dlt_comm_mpi(b->comm);
    if (b->zero) {
        if (b->use_dev) return b->dev.reduce_scatter(b->dev.ctx, b->grads + off, len);
        DLT_MPI_CHECK(MPI_Ireduce_scatter(MPI_IN_PLACE, b->grads + off, b->counts + (size_t)i * (size_t)b->world,
                                          MPI_FLOAT, MPI_SUM, mc, &b->req[i]));
        return DLT_OK;
    }
    if (b->use_dev) return b->dev.start(b->dev.ctx, b->grads + off, len);
    DLT_MPI_CHECK(MPI_Iallreduce(MPI_IN_PLACE, b->grads + off, (int)len, MPI_FLOAT, MPI_SUM, mc, &b->req[i]));
    return DLT_OK;
}

/* Hands the reductions of buckets [0, b->next) to the worker. */
static void post(dlt_buckets_t b)
{
    pthread_mutex_lock(&b->mu);
    if (b->posted < b->next) {
        b->inflight += b->next - b->posted;
        b->posted = b->next;
        pthread_cond_signal(&b->cv);
    }
    pthread_mutex_unlock(&b->mu);
}

/* Tests the MPI requests in flight (single-threaded mode); records
 * completion times. */
static dlt_status test_some(dlt_buckets_t b)
{
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
    return DLT_OK;
}

/* Contract: see bucket.h. */
dlt_status dlt_buckets_ready(dlt_buckets_t b, size_t n_ready)
{
    if (!b->open) return DLT_ERR(DLT_ERR_INVALID, "gradient buckets: ready() outside a round");
    int before = b->next;
    while (b->next < b->count && b->ends[b->next] <= n_ready) {
        DLT_CHECK(start_bucket(b, b->next));
        b->next++;
    }
    if (!b->threaded) return test_some(b);
    if (b->next > before) post(b);
    return DLT_OK;
}

/* Threaded finish: hands over the rest and waits for each bucket's
 * generalized request with the deadline and notices of dlt_comm_wait. */
static dlt_status finish_threaded(dlt_buckets_t b)
{
    dlt_status st = DLT_OK;
    while (st == DLT_OK && b->next < b->count) {
        st = start_bucket(b, b->next);
        if (st == DLT_OK) b->next++;
    }
    post(b); /* what started, even after a failure: the worker completes it */
    DLT_CHECK(st);
    for (int i = 0; i < b->count; i++) {
        char what[48];
        snprintf(what, sizeof what, "gradient bucket %d of %d", i, b->count);
        dlt_comm_set_bucket(b->comm, i);
        DLT_CHECK(dlt_comm_wait(b->comm, &b->greq[i], what));
    }
    pthread_mutex_lock(&b->mu);
    int rc = b->werr, bucket = b->werr_bucket;
    const char *call = b->werr_call;
    pthread_mutex_unlock(&b->mu);
    if (rc != MPI_SUCCESS) {
        char what[64];
        snprintf(what, sizeof what, "%s (gradient bucket %d of %d)", call, bucket, b->count);
        return dlt_comm_mpi_error(rc, what, __FILE__, __LINE__);
    }
    dlt_comm_set_bucket(b->comm, -1);
    dlt_buckets_zero_place(b);
    b->open = 0;
    return DLT_OK;
}

/* Contract: see bucket.h. */
dlt_status dlt_buckets_finish(dlt_buckets_t b)
{
    if (!b->open) return DLT_ERR(DLT_ERR_INVALID, "gradient buckets: finish() outside a round");
    if (b->threaded) return finish_threaded(b);
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
    dlt_buckets_zero_place(b);
    b->open = 0;
    return DLT_OK;
}

/* Contract: see bucket.h. */
int dlt_buckets_threaded(dlt_buckets_t b) { return b->threaded; }
