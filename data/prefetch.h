/* Private to data/: background batch preparation for the loader.
 *
 * A ring of `depth` pre-allocated batch buffers and `threads` worker
 * threads. Workers claim steps in order and fill the buffer of step s
 * (s mod depth) through the loader's produce callback once the consumer has
 * released the batch that used it before; the consumer takes batches
 * strictly in step order. produce is a pure function of (epoch, step), so
 * what the consumer receives does not depend on threads or depth. */
#ifndef DLT_PREFETCH_H
#define DLT_PREFETCH_H

#include <stddef.h>
#include <stdint.h>

#include "core/backend.h"
#include "core/status.h"

typedef struct {
    float *x;          /* (max_local, C, H, W) */
    int32_t *y;        /* (max_local) */
    int n, global_n;
    int64_t sample0;
    /* owned by prefetch.c */
    int64_t step;
    int state;
    dlt_status st;
    char msg[1024];
} dlt_batch;

/* Fills b with global batch `step` of the current epoch; worker in [0, threads)
 * names the caller's scratch. */
typedef dlt_status (*dlt_produce_fn)(void *ctx, int worker, int64_t step, dlt_batch *b);

typedef struct dlt_prefetch dlt_prefetch;

/* Allocates depth batches of x_elems floats and y_elems labels (with mem's
 * host_alloc if mem is not NULL, else malloc) and starts the threads (idle
 * until dlt_prefetch_restart). */
dlt_status dlt_prefetch_init(dlt_backend *mem, int depth, int threads, size_t x_elems, size_t y_elems,
                             dlt_produce_fn produce, void *ctx, dlt_prefetch **out);
/* Stops and joins the threads, frees the buffers; NULL is a no-op. */
void dlt_prefetch_free(dlt_prefetch *p);

/* Discards queued batches, waits until no worker is busy, calls reset(ctx)
 * (with no worker running: it may change what produce reads), and resumes
 * at `step` of an epoch of `steps` batches. */
void dlt_prefetch_restart(dlt_prefetch *p, int64_t step, int64_t steps, void (*reset)(void *),
                          void *ctx);

/* Releases the batch taken last and waits for the next one: *b = NULL at
 * the end of the epoch. A failed batch returns its status with its message
 * recorded on this thread. */
dlt_status dlt_prefetch_take(dlt_prefetch *p, dlt_batch **b);

#endif
