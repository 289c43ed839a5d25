/* Background batch preparation (prefetch.h).
 *
 * Design. One mutex and two condition variables guard a small state
 * machine per buffer: FREE -> FILLING (a worker claimed step s) -> READY ->
 * TAKEN (the consumer holds it until its next take) -> FREE. Workers claim
 * steps in increasing order, only when the buffer of that step is FREE, so
 * at most `depth` batches exist ahead of the consumer and memory is fixed
 * at init. A generation counter makes restarts safe: a worker that finishes
 * a batch of an older generation drops it. Restart waits until no worker is
 * busy before letting the loader change the permutation the workers read.
 *
 * Scheduling: workers sleep on a condition variable (never spin) and run
 * under SCHED_BATCH. The consumer wakes a worker inside dlt_prefetch_take
 * when it frees a buffer; with the default policy the kernel lets a
 * freshly woken, long-sleeping thread preempt the waker on its core at
 * once, so on a machine whose cores are all busy (ranks x compute threads
 * = cores) the consumer sat descheduled inside take while the worker made
 * the next batch, which the trainer counts as data wait (2-3% of step time
 * for a small CNN on 2 cores, more than loading synchronously). A
 * SCHED_BATCH thread never preempts on wakeup: it takes a free core if
 * there is one, else its fair share at the next scheduler tick, i.e.
 * during the step's compute, which is what reading ahead is for (0.1%).
 *
 * Errors: a worker's failure travels with its batch (status and message,
 * since dlt_last_error is per thread) and is raised when the consumer takes
 * that batch, i.e. at the same step a synchronous loader would fail. */
#include "data/prefetch.h"

#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { FREE, FILLING, READY, TAKEN };

typedef struct {
    dlt_prefetch *p;
    int id;
} worker_arg;

struct dlt_prefetch {
    dlt_backend *mem;        /* host allocator of the batch buffers; NULL: malloc */
    int depth, threads;
    dlt_batch *b;            /* (depth) */
    dlt_produce_fn produce;
    void *ctx;
    pthread_t *tid;          /* (threads) */
    worker_arg *args;        /* (threads) */
    int started;             /* threads created */
    pthread_mutex_t mu;
    pthread_cond_t work, ready;
    int quit, paused, busy, held;
    uint64_t gen;
    int64_t next, consumer, steps;
};

static void *worker(void *arg)
{
    worker_arg *wa = arg;
    dlt_prefetch *p = wa->p;
    /* SCHED_BATCH: no wakeup preemption (see the file comment); best effort,
     * a refusal only costs the stalls it avoids */
    struct sched_param sp = { 0 };
    pthread_setschedparam(pthread_self(), SCHED_BATCH, &sp);
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (!p->quit &&
               (p->paused || p->next >= p->steps || p->b[p->next % p->depth].state != FREE))
            pthread_cond_wait(&p->work, &p->mu);
        if (p->quit) break;
        int64_t s = p->next++;
        dlt_batch *b = &p->b[s % p->depth];
        b->state = FILLING;
        p->busy++;
        uint64_t gen = p->gen;
        pthread_mutex_unlock(&p->mu);

        dlt_status st = p->produce(p->ctx, wa->id, s, b);
        b->st = st;
        if (st != DLT_OK) snprintf(b->msg, sizeof b->msg, "%s", dlt_last_error());

        pthread_mutex_lock(&p->mu);
        p->busy--;
        if (gen == p->gen) {
            b->step = s;
            b->state = READY;
        } else {
            b->state = FREE;
        }
        pthread_cond_broadcast(&p->ready);
        pthread_cond_broadcast(&p->work);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

/* Batch buffers come from the backend's host allocator when one is given
 * (page-locked memory on CUDA), else from malloc. */
static void *buf_alloc(dlt_backend *be, size_t bytes)
{
    void *ptr = NULL;
    if (be && be->host_alloc) return be->host_alloc(be, bytes, &ptr) == DLT_OK ? ptr : NULL;
    return malloc(bytes);
}

static void buf_free(dlt_backend *be, void *ptr)
{
    if (!ptr) return;
    if (be && be->host_free)
        be->host_free(be, ptr);
    else
        free(ptr);
}

/* Contract (prefetch.h). */
dlt_status dlt_prefetch_init(dlt_backend *mem, int depth, int threads, size_t x_elems, size_t y_elems,
                             dlt_produce_fn produce, void *ctx, dlt_prefetch **out)
{
    *out = NULL;
    if (depth < 1 || threads < 1 || threads > 64)
        return DLT_ERR(DLT_ERR_INVALID, "prefetch depth %d and threads %d must be >= 1 (threads <= 64)",
                       depth, threads);
    dlt_prefetch *p = calloc(1, sizeof *p);
    if (!p) return DLT_ERR(DLT_ERR_NOMEM, "out of memory for the prefetch queue");
    p->mem = mem;
    p->depth = depth;
    p->threads = threads;
    p->produce = produce;
    p->ctx = ctx;
    p->paused = 1;
    p->held = -1;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->work, NULL);
    pthread_cond_init(&p->ready, NULL);
    p->b = calloc((size_t)depth, sizeof *p->b);
    p->tid = calloc((size_t)threads, sizeof *p->tid);
    p->args = calloc((size_t)threads, sizeof *p->args);
    int ok = p->b && p->tid && p->args;
    for (int i = 0; ok && i < depth; i++) {
        p->b[i].x = buf_alloc(mem, (x_elems ? x_elems : 1) * sizeof(float));
        p->b[i].y = buf_alloc(mem, (y_elems ? y_elems : 1) * sizeof(int32_t));
        ok = p->b[i].x && p->b[i].y;
        /* touch the pages now: first-touch faults belong to init, not to the
         * first `depth` steps */
        if (ok) memset(p->b[i].x, 0, (x_elems ? x_elems : 1) * sizeof(float));
    }
    if (!ok) {
        dlt_prefetch_free(p);
        return DLT_ERR(DLT_ERR_NOMEM, "out of memory for %d prefetch batches of %.1f MiB", depth,
                       (double)x_elems * sizeof(float) / 1048576.0);
    }
    for (int i = 0; i < threads; i++) {
        p->args[i] = (worker_arg){ p, i };
        if (pthread_create(&p->tid[i], NULL, worker, &p->args[i]) != 0) {
            dlt_prefetch_free(p);
            return DLT_ERR(DLT_ERR_NOMEM, "cannot start prefetch thread %d", i);
        }
        p->started = i + 1;
    }
    *out = p;
    return DLT_OK;
}

void dlt_prefetch_free(dlt_prefetch *p)
{
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    p->quit = 1;
    pthread_cond_broadcast(&p->work);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < p->started; i++) pthread_join(p->tid[i], NULL);
    for (int i = 0; p->b && i < p->depth; i++) {
        buf_free(p->mem, p->b[i].x);
        buf_free(p->mem, p->b[i].y);
    }
    free(p->b);
    free(p->tid);
    free(p->args);
    pthread_cond_destroy(&p->work);
    pthread_cond_destroy(&p->ready);
    pthread_mutex_destroy(&p->mu);
    free(p);
}

/* Contract (prefetch.h). */
void dlt_prefetch_restart(dlt_prefetch *p, int64_t step, int64_t steps, void (*reset)(void *),
                          void *ctx)
{
    pthread_mutex_lock(&p->mu);
    p->gen++;
    p->paused = 1;
    while (p->busy > 0) pthread_cond_wait(&p->ready, &p->mu);
    for (int i = 0; i < p->depth; i++) p->b[i].state = FREE;
    p->held = -1;
    if (reset) reset(ctx);
    p->next = p->consumer = step;
    p->steps = steps;
    p->paused = 0;
    pthread_cond_broadcast(&p->work);
    pthread_mutex_unlock(&p->mu);
}

/* Contract (prefetch.h). */
dlt_status dlt_prefetch_take(dlt_prefetch *p, dlt_batch **out)
{
    pthread_mutex_lock(&p->mu);
    if (p->held >= 0) {
        p->b[p->held].state = FREE;
        p->held = -1;
        pthread_cond_broadcast(&p->work);
    }
    if (p->consumer >= p->steps) {
        pthread_mutex_unlock(&p->mu);
        *out = NULL;
        return DLT_OK;
    }
    int i = (int)(p->consumer % p->depth);
    dlt_batch *b = &p->b[i];
    while (!(b->state == READY && b->step == p->consumer)) pthread_cond_wait(&p->ready, &p->mu);
    b->state = TAKEN;
    p->held = i;
    p->consumer++;
    pthread_mutex_unlock(&p->mu);
    *out = b;
    if (b->st != DLT_OK) return DLT_ERR(b->st, "%s", b->msg);
    return DLT_OK;
}
