/* GPU checks of the input-staging ops (backend.h "input staging"): sum_to
 * against a host sum in double, pinned host memory, and slot uploads on the
 * copy stream ordered against the compute stream: a compute op queued
 * after upload_wait sees the upload, and an upload queued after
 * upload_release does not overwrite a buffer an earlier op still reads.
 * Part of the test_cuda_ops program (gpu_test.h). */
#include <math.h>
#include <string.h>

#include "tests/gpu/gpu_test.h"

static void test_sum_to(size_t n)
{
    float *x = rnd(n ? n : 1, -2.0f, 5.0f);
    double want = 0.0;
    for (int r = 0; r < 2; r++)
        for (size_t i = 0; i < n; i++) want += x[i];
    float *d_x = up(x, (n ? n : 1) * sizeof(float));
    double *acc = NULL, got = 0.0;
    MUST(G->alloc(G, sizeof(double), (void **)&acc));
    MUST(G->sum_to(G, n, d_x, acc));
    MUST(G->sum_to(G, n, d_x, acc));   /* accumulates */
    MUST(G->download(G, &got, acc, sizeof got));
    char what[64], detail[96];
    snprintf(what, sizeof what, "sum_to n=%zu (twice)", n);
    snprintf(detail, sizeof detail, "got %.17g want %.17g", got, want);
    check_true(what, fabs(got - want) <= 1e-12 * (fabs(want) + 1.0), detail);
    G->free(G, acc);
    G->free(G, d_x);
    free(x);
}

/* Batches of n floats through both slots, each read by a queued compute op
 * (scale by 2 into the slot's own buffer, then a copy out) before the next
 * upload into the same slot, host buffers refilled after upload_host_wait:
 * the sequence the trainer runs, with a large n so that copies and kernels
 * really overlap. */
static void test_slots(size_t n)
{
    float *h[DLT_UPLOAD_SLOTS], *d[DLT_UPLOAD_SLOTS], *out[6];
    for (int k = 0; k < DLT_UPLOAD_SLOTS; k++) {
        MUST(G->host_alloc(G, n * sizeof(float), (void **)&h[k]));
        MUST(G->alloc(G, n * sizeof(float), (void **)&d[k]));
    }
    int zero = 1;
    for (size_t i = 0; i < n; i++) zero &= h[0][i] == 0.0f;
    check_true("host_alloc memory is zeroed", zero, NULL);
    for (int b = 0; b < 6; b++) MUST(G->alloc(G, n * sizeof(float), (void **)&out[b]));
    int cur = -1;
    for (int b = 0; b < 6; b++) {
        int k = b % DLT_UPLOAD_SLOTS;
        MUST(G->upload_host_wait(G, k));
        for (size_t i = 0; i < n; i++) h[k][i] = (float)b + (float)(i % 97) * 0.25f;
        MUST(G->upload_async(G, k, d[k], h[k], n * sizeof(float)));
        if (cur >= 0) MUST(G->upload_release(G, cur));
        cur = k;
        MUST(G->upload_wait(G, k));
        MUST(G->scale(G, n, 2.0f, d[k]));
        MUST(G->copy(G, out[b], d[k], n * sizeof(float)));
    }
    MUST(G->sync(G));
    for (int b = 0; b < 6; b++) {
        float *got = down(out[b], n);
        int ok = 1;
        for (size_t i = 0; i < n && ok; i++) ok = got[i] == 2.0f * ((float)b + (float)(i % 97) * 0.25f);
        char what[64];
        snprintf(what, sizeof what, "slot upload ordering, batch %d of 6 (n=%zu)", b, n);
        check_true(what, ok, NULL);
        free(got);
        G->free(G, out[b]);
    }
    for (int k = 0; k < DLT_UPLOAD_SLOTS; k++) {
        G->host_free(G, h[k]);
        G->free(G, d[k]);
    }
    check_true("upload slot out of range is DLT_ERR_INVALID",
               G->upload_wait(G, DLT_UPLOAD_SLOTS) == DLT_ERR_INVALID &&
                   G->upload_release(G, -1) == DLT_ERR_INVALID,
               dlt_last_error());
}

/* The orderings test_slots cannot see (there the host refills each buffer
 * for tens of milliseconds, so every earlier op has long finished): each
 * batch gets its own pinned source, filled beforehand, so all uploads are
 * queued at once, and each batch's compute is a long chain of in-place
 * passes (PASSES x 128 MiB of traffic, ~10 ms) against ~2 ms per copy.
 * Without the wait on upload_release, batch b + 2's upload would overwrite
 * the slot while batch b's chain still reads it. Then one more upload is
 * held back behind the last chain and its source overwritten as soon as
 * upload_host_wait returns: the device must still get the old values. */
static void test_slot_overlap(size_t n)
{
    enum { B = 4, PASSES = 200 };
    const size_t bytes = n * sizeof(float);
    float *h[B + 1], *d[DLT_UPLOAD_SLOTS], *out[B + 1];
    for (int b = 0; b <= B; b++) {
        MUST(G->host_alloc(G, bytes, (void **)&h[b]));
        for (size_t i = 0; i < n; i++) h[b][i] = (float)b + (float)(i % 89);
        MUST(G->alloc(G, bytes, (void **)&out[b]));
    }
    for (int k = 0; k < DLT_UPLOAD_SLOTS; k++) MUST(G->alloc(G, bytes, (void **)&d[k]));
    MUST(G->sync(G));
    int cur = -1;
    for (int b = 0; b < B; b++) {
        const int k = b % DLT_UPLOAD_SLOTS;
        MUST(G->upload_async(G, k, d[k], h[b], bytes));
        if (cur >= 0) MUST(G->upload_release(G, cur));
        cur = k;
        MUST(G->upload_wait(G, k));
        for (int r = 0; r < PASSES; r++) MUST(G->scale(G, n, -1.0f, d[k])); /* even: exact */
        MUST(G->copy(G, out[b], d[k], bytes));
    }
    MUST(G->upload_release(G, cur));
    MUST(G->upload_async(G, cur, d[cur], h[B], bytes)); /* behind the last chain */
    MUST(G->upload_host_wait(G, cur));
    for (size_t i = 0; i < n; i++) h[B][i] = -1.0f;      /* the source may be reused now */
    MUST(G->upload_wait(G, cur));
    MUST(G->copy(G, out[B], d[cur], bytes));
    MUST(G->sync(G));
    for (int b = 0; b <= B; b++) {
        float *got = down(out[b], n);
        int ok = 1;
        for (size_t i = 0; i < n && ok; i++) ok = got[i] == (float)b + (float)(i % 89);
        char what[96];
        snprintf(what, sizeof what, "%s, batch %d of %d (n=%zu)",
                 b < B ? "slot reuse waits for the slot's readers" : "upload_host_wait waits for the copy",
                 b, B + 1, n);
        check_true(what, ok, NULL);
        free(got);
    }
    for (int b = 0; b <= B; b++) {
        G->host_free(G, h[b]);
        G->free(G, out[b]);
    }
    for (int k = 0; k < DLT_UPLOAD_SLOTS; k++) G->free(G, d[k]);
}

/* Contract: gpu_test.h. */
void test_cuda_staging_all(void)
{
    test_sum_to(0);
    test_sum_to(3);
    test_sum_to(1000);
    test_sum_to(100003);
    test_slots(1000);
    test_slots((size_t)16 << 20); /* 64 MiB: copies take milliseconds */
    test_slot_overlap((size_t)16 << 20);
}
