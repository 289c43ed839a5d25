/* Batch staging and on-device metric sums (see staging.h).
 *
 * Slots. Slot s pairs a host buffer (backend host_alloc: page-locked on
 * CUDA) with a device buffer. A batch is fetched, uploaded with
 * upload_async(s) and made visible to the compute stream with
 * upload_wait(s). When the loop moves on to the other slot,
 * upload_release(old) marks the compute work queued so far as the old
 * slot's last reader, so the next upload into it cannot overwrite a batch
 * still in use.
 *
 * Sources. The upload reads the rows wherever the data source put them:
 * in the slot's host buffer (text batches are written there) or in the
 * source's own buffer (the image loader's batch, from the backend's
 * host_alloc too, so on CUDA the copy is asynchronous without first
 * copying the batch into the slot). A source's buffer is valid until its
 * next call, i.e. the source may reuse it then; so before any fetch, and
 * before a reset lets the loader restart, upload_host_wait on every slot
 * makes sure no upload still reads a source buffer. That waits for the
 * upload of the batch in use, queued a step earlier behind the compute of
 * the batch two before: done long ago in the steady state (it bounds how
 * far the host may run ahead of the GPU at two steps, more than enough to
 * keep it fed). The host labels a batch came from
 * (dlt_staging_labels_host) stay valid until that same next fetch, i.e.
 * through the batch's forward and backward.
 *
 * Prefetch. The trainer calls dlt_staging_prefetch right after a step's
 * backward is queued and before the gradient reduction is waited for, so
 * the loader's copy (CPU) and the upload (copy engine) overlap the step on
 * the GPU. The batches and their order are unchanged: only the moment the
 * data source is asked moves, within the same epoch (a new epoch or an
 * evaluation resets the prefetch; the batch after the last step is fetched
 * and dropped).
 *
 * Sums. acc holds DLT_SUMS_SETS sets of (loss, correct, count) doubles in
 * backend memory; sum_to adds a batch's per-sample outputs into a set
 * without a sync, a copy of the window at the start of a step lets a
 * skipped step be undone on the device, and only dlt_staging_take reads a
 * set back. Rows of losses without per-sample counts are counted on the
 * host (their number is known there). On the CPU, sum_to adds in index
 * order into the running double, so the sums are bitwise those of the host
 * loops this replaced; and since reading CPU "device" memory costs
 * nothing, step_loss gives the step's exact loss for the non-finite check.
 * On a GPU that check would cost a sync per step; it is left to the
 * gradient norm (the optimizer syncs for it anyway and a NaN loss gives
 * NaN gradients); an infinite loss with finite gradients (a probability
 * that underflowed) is then only seen in the logged loss. */
#include "launcher/staging.h"

#include <string.h>

/* Blocks until no upload reads a host buffer any more: the slots' own and
 * the sources' (which a fetch or a loader restart may then reuse). */
static dlt_status wait_sources(dlt_staging *s)
{
    for (int k = 0; k < DLT_UPLOAD_SLOTS; k++) DLT_CHECK(s->be->upload_host_wait(s->be, k));
    return DLT_OK;
}

/* Contract: staging.h. */
dlt_status dlt_staging_init(dlt_staging *s, dlt_backend *be, int max_local, int64_t sample_numel,
                            int label_numel, dlt_fetch_fn fetch, void *user)
{
    memset(s, 0, sizeof *s);
    s->be = be;
    s->fetch = fetch;
    s->user = user;
    s->max_local = max_local;
    s->cur = -1;
    s->host_visible = strcmp(be->name, "cpu") == 0;
    const char *missing = dlt_backend_missing_op(
        be, (const char *const[]){ "host_alloc", "host_free", "upload_async", "upload_wait",
                                   "upload_release", "upload_host_wait", "sum_to", NULL });
    if (missing)
        return DLT_ERR(DLT_ERR_UNSUPPORTED, "op %s not supported on backend %s", missing, be->name);
    s->x_bytes = (size_t)max_local * (size_t)sample_numel * sizeof(float);
    s->y_bytes = (size_t)max_local * (size_t)label_numel * sizeof(int32_t);
    for (int k = 0; k < DLT_UPLOAD_SLOTS; k++) {
        DLT_CHECK(be->host_alloc(be, s->x_bytes, (void **)&s->x_host[k]));
        DLT_CHECK(be->host_alloc(be, s->y_bytes, (void **)&s->y_host[k]));
        DLT_CHECK(be->alloc(be, s->x_bytes, (void **)&s->x_dev[k]));
        DLT_CHECK(be->alloc(be, s->y_bytes, (void **)&s->y_dev[k]));
    }
    return be->alloc(be, DLT_SUMS_SETS * DLT_SUM_N * sizeof(double), (void **)&s->acc);
}

/* Contract: staging.h. Safe after a failed init. */
void dlt_staging_free(dlt_staging *s)
{
    dlt_backend *be = s->be;
    if (!be) return;
    if (be->upload_host_wait) (void)wait_sources(s);   /* sources may be freed next */
    for (int k = 0; k < DLT_UPLOAD_SLOTS; k++) {
        if (s->x_host[k]) be->host_free(be, s->x_host[k]);
        if (s->y_host[k]) be->host_free(be, s->y_host[k]);
        be->free(be, s->x_dev[k]);
        be->free(be, s->y_dev[k]);
    }
    be->free(be, s->acc);
    memset(s, 0, sizeof *s);
}

/* Fetches the next batch of the split for slot k and queues its upload
 * from wherever the source put the rows. */
static dlt_status load(dlt_staging *s, int k, int test, dlt_staged_batch *b)
{
    dlt_backend *be = s->be;
    DLT_CHECK(wait_sources(s));
    const float *x = NULL;
    const int32_t *y = NULL;
    s->y_src[k] = NULL;
    DLT_CHECK(s->fetch(s->user, test, s->x_host[k], s->y_host[k], &x, &y, b));
    if (b->n < 0 || b->n > s->max_local)
        return DLT_ERR(DLT_ERR_INVALID, "staging: a batch of %d rows does not fit %d", b->n,
                       s->max_local);
    if (b->n == 0) return DLT_OK;
    size_t xb = s->x_bytes / (size_t)s->max_local * (size_t)b->n;
    size_t yb = s->y_bytes / (size_t)s->max_local * (size_t)b->n;
    s->y_src[k] = y;
    DLT_CHECK(be->upload_async(be, k, s->x_dev[k], x, xb));
    return be->upload_async(be, k, s->y_dev[k], y, yb);
}

/* Contract: staging.h. */
dlt_status dlt_staging_next(dlt_staging *s, int test, dlt_staged_batch *b, float **x_dev,
                            int32_t **y_dev)
{
    dlt_backend *be = s->be;
    int k = s->cur < 0 ? 0 : s->cur ^ 1;
    if (!s->pending || test) DLT_CHECK(load(s, k, test, &s->next));
    s->pending = 0;
    if (s->cur >= 0) DLT_CHECK(be->upload_release(be, s->cur));
    s->cur = k;
    DLT_CHECK(be->upload_wait(be, k));
    *b = s->next;
    *x_dev = s->x_dev[k];
    *y_dev = s->y_dev[k];
    return DLT_OK;
}

/* Contract: staging.h. */
dlt_status dlt_staging_prefetch(dlt_staging *s)
{
    if (s->cur < 0) return DLT_ERR(DLT_ERR_INVALID, "staging: prefetch before the first batch");
    DLT_CHECK(load(s, s->cur ^ 1, 0, &s->next));
    s->pending = 1;
    return DLT_OK;
}

/* Contract: staging.h. */
dlt_status dlt_staging_reset(dlt_staging *s)
{
    s->pending = 0;
    return wait_sources(s);
}

/* Contract: staging.h. */
const int32_t *dlt_staging_labels_host(const dlt_staging *s)
{
    return s->cur < 0 ? NULL : s->y_src[s->cur];
}

/* Contract: staging.h. The slot not in use; no upload reads any source. */
dlt_status dlt_staging_scratch(dlt_staging *s, float **x_host, int32_t **y_host)
{
    int k = s->cur < 0 ? 0 : s->cur ^ 1;
    s->pending = 0;
    DLT_CHECK(wait_sources(s));
    *x_host = s->x_host[k];
    *y_host = s->y_host[k];
    return DLT_OK;
}

/* Contract: staging.h. */
dlt_status dlt_staging_add(dlt_staging *s, int set, const dlt_model_out *out, int n,
                           int with_correct)
{
    dlt_backend *be = s->be;
    double *a = s->acc + set * DLT_SUM_N;
    if (n <= 0) return DLT_OK;
    DLT_CHECK(be->sum_to(be, (size_t)n, out->loss, a + DLT_SUM_LOSS));
    if (with_correct && out->correct)
        DLT_CHECK(be->sum_to(be, (size_t)n, out->correct, a + DLT_SUM_CORRECT));
    if (out->count) return be->sum_to(be, (size_t)n, out->count, a + DLT_SUM_COUNT);
    s->host_count[set] += n;
    return DLT_OK;
}

/* Contract: staging.h. */
dlt_status dlt_staging_step_begin(dlt_staging *s)
{
    s->host_count[DLT_SUMS_SAVED] = s->host_count[DLT_SUMS_TRAIN];
    return s->be->copy(s->be, s->acc + DLT_SUMS_SAVED * DLT_SUM_N,
                       s->acc + DLT_SUMS_TRAIN * DLT_SUM_N, DLT_SUM_N * sizeof(double));
}

/* Contract: staging.h. */
dlt_status dlt_staging_step_undo(dlt_staging *s)
{
    s->host_count[DLT_SUMS_TRAIN] = s->host_count[DLT_SUMS_SAVED];
    return s->be->copy(s->be, s->acc + DLT_SUMS_TRAIN * DLT_SUM_N,
                       s->acc + DLT_SUMS_SAVED * DLT_SUM_N, DLT_SUM_N * sizeof(double));
}

/* Contract: staging.h. The same subtraction the loop made on its host
 * sums (window now minus window at the step's start). */
dlt_status dlt_staging_step_loss(dlt_staging *s, double *loss)
{
    *loss = 0.0;
    if (!s->host_visible) return DLT_OK;
    double now, before;
    DLT_CHECK(s->be->download(s->be, &now, s->acc + DLT_SUMS_TRAIN * DLT_SUM_N + DLT_SUM_LOSS,
                              sizeof now));
    DLT_CHECK(s->be->download(s->be, &before, s->acc + DLT_SUMS_SAVED * DLT_SUM_N + DLT_SUM_LOSS,
                              sizeof before));
    *loss = now - before;
    return DLT_OK;
}

/* Contract: staging.h. */
dlt_status dlt_staging_take(dlt_staging *s, int set, double out[DLT_SUM_N])
{
    double *a = s->acc + set * DLT_SUM_N;
    DLT_CHECK(s->be->download(s->be, out, a, DLT_SUM_N * sizeof(double)));
    out[DLT_SUM_COUNT] += s->host_count[set];
    s->host_count[set] = 0;
    /* all-zero bits are 0.0 as a double too */
    return s->be->fill(s->be, (float *)a, DLT_SUM_N * sizeof(double) / sizeof(float), 0.0f);
}
