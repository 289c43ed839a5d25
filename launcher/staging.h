/* Batch staging and on-device metric sums for the training loop.
 *
 * Batches reach the backend through two slots (double buffering): while
 * the step on slot A computes, the next batch is fetched and its upload to
 * slot B runs on the backend's copy stream (backend.h "input staging"),
 * straight from the source's host buffer (page-locked on a GPU), so on a
 * GPU neither a host copy nor the PCIe transfer sits between two steps. The per-sample losses and
 * correct counts are summed where they are computed (backend sum_to) and
 * read back only when a log line or an evaluation needs them, so a step
 * queues its work without waiting for the device. On the CPU the same
 * code runs (every backend call completes at once) and the sums are
 * bitwise those of the host loops they replace. */
#ifndef DLT_STAGING_H
#define DLT_STAGING_H

#include <stddef.h>
#include <stdint.h>

#include "core/backend.h"
#include "core/model.h"
#include "core/status.h"

/* One batch as the data source hands it over. */
typedef struct {
    int n;          /* this rank's rows (may be 0) */
    int global_n;   /* rows over all ranks; 0: the epoch is over */
    int64_t sample0; /* global index of this rank's first sample */
    double count;   /* global number of counted targets (scales the loss) */
} dlt_staged_batch;

/* Supplies the next batch of the training (test = 0) or test split: *b,
 * and its rows in *x (rows, sample) and *y (rows, labels per sample):
 * either written into x_host / y_host (room for max_local rows), or
 * pointing at the source's own memory, unchanged until its next call (a
 * loader's buffer: uploaded from there, no copy; on a GPU it should come
 * from the backend's host_alloc so that the upload is asynchronous). */
typedef dlt_status (*dlt_fetch_fn)(void *user, int test, float *x_host, int32_t *y_host,
                                   const float **x, const int32_t **y, dlt_staged_batch *b);

/* Sum sets: the training window since the last log line, the copy of it
 * taken when a step began (to undo a skipped step), and an evaluation. */
enum { DLT_SUMS_TRAIN, DLT_SUMS_SAVED, DLT_SUMS_EVAL, DLT_SUMS_SETS };
/* Within a set: loss, correct, counted samples or targets. */
enum { DLT_SUM_LOSS, DLT_SUM_CORRECT, DLT_SUM_COUNT, DLT_SUM_N };

typedef struct {
    dlt_backend *be;
    dlt_fetch_fn fetch;
    void *user;
    int max_local;
    size_t x_bytes, y_bytes;                  /* per slot */
    float *x_host[DLT_UPLOAD_SLOTS];          /* (max_local, sample) host_alloc memory */
    const int32_t *y_src[DLT_UPLOAD_SLOTS];   /* (n, label_numel) host labels the slot's
                                                 batch was uploaded from, or NULL */
    int32_t *y_host[DLT_UPLOAD_SLOTS];        /* (max_local, label_numel) */
    float *x_dev[DLT_UPLOAD_SLOTS];           /* (max_local, sample) backend memory */
    int32_t *y_dev[DLT_UPLOAD_SLOTS];         /* (max_local, label_numel) */
    int cur;                                  /* slot of the batch in use, -1 none yet */
    int pending;                              /* slot cur^1 holds the next training batch */
    dlt_staged_batch next;                           /* that batch */
    double *acc;                              /* (DLT_SUMS_SETS, DLT_SUM_N) backend memory */
    double host_count[DLT_SUMS_SETS];         /* rows counted on the host (no per-sample counts) */
    int host_visible;                         /* backend memory is host memory (the CPU) */
} dlt_staging;

/* Allocates both slots for batches of up to max_local samples of
 * sample_numel floats and label_numel int32 labels, and the sums.
 * fetch(user, ...) supplies batches. */
dlt_status dlt_staging_init(dlt_staging *s, dlt_backend *be, int max_local, int64_t sample_numel,
                            int label_numel, dlt_fetch_fn fetch, void *user);
void dlt_staging_free(dlt_staging *s);

/* The next batch of the split: the prefetched one when there is one (train
 * only), else fetched now. On return *b describes it and x_dev / y_dev
 * (backend memory) hold it for every op queued from now on. */
dlt_status dlt_staging_next(dlt_staging *s, int test, dlt_staged_batch *b, float **x_dev,
                            int32_t **y_dev);

/* Fetches the next training batch into the other slot and queues its
 * upload; call once the current batch's forward and backward are queued. */
dlt_status dlt_staging_prefetch(dlt_staging *s);

/* Forgets a prefetched batch (a new epoch or split starts) and waits until
 * no upload reads a source's buffer, so the source may restart. */
dlt_status dlt_staging_reset(dlt_staging *s);

/* The host labels (n, label_numel) of the batch dlt_staging_next gave last,
 * or NULL before the first: what the device labels were uploaded from,
 * valid until the next fetch (dlt_staging_prefetch, or next without a
 * prefetched batch). For dlt_step_ctx.labels_host. */
const int32_t *dlt_staging_labels_host(const dlt_staging *s);

/* Host buffers that may be overwritten now (a loader's skip scratch);
 * no upload reads any source's buffer any more. */
dlt_status dlt_staging_scratch(dlt_staging *s, float **x_host, int32_t **y_host);

/* Adds a forward pass's per-sample outputs (n rows) to sum set `set`:
 * loss, correct when with_correct and out->correct, and counted targets
 * (out->count, or n rows). Queued; nothing is read back. */
dlt_status dlt_staging_add(dlt_staging *s, int set, const dlt_model_out *out, int n,
                           int with_correct);

/* A training step begins: remembers the window so that undo can drop it. */
dlt_status dlt_staging_step_begin(dlt_staging *s);
/* Drops what the step added to the window (a skipped step). */
dlt_status dlt_staging_step_undo(dlt_staging *s);

/* This step's loss sum on this rank when it can be read without waiting
 * for the device (the CPU), else 0 (on a GPU a non-finite loss shows up
 * in the gradient norm the optimizer reads anyway; see staging.c). */
dlt_status dlt_staging_step_loss(dlt_staging *s, double *loss);

/* Reads set `set` back (a sync on a GPU) into out (DLT_SUM_N) and zeroes it. */
dlt_status dlt_staging_take(dlt_staging *s, int set, double out[DLT_SUM_N]);

#endif
