/* Batch staging (launcher/staging.c) and the backend ops under it on the CPU
 * backend: sum_to, the upload slot ops, host_alloc; and staging's GPU path
 * on a CPU backend whose uploads run late, as on a copy stream. The CUDA
 * versions are compared with these in tests/gpu/test_cuda_ops.c. */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/backend.h"
#include "launcher/staging.h"
#include "tests/unit/testutil.h"

static dlt_backend *be;

static void be_setup(void) { ck_assert_int_eq(dlt_backend_cpu_create(&be), DLT_OK); }
static void be_teardown(void) { be->destroy(be); }

/* sum_to accumulates across calls bitwise as the host loop `acc += x[i]`
 * the trainer used before: the logged CPU losses must not change. */
START_TEST(test_sum_to_matches_host_loop)
{
    enum { N = 1000 };
    float x[N];
    tu_fill_uniform(x, N, 7, -3.0f, 1e4f);
    double *acc;
    ck_assert_int_eq(be->alloc(be, sizeof(double), (void **)&acc), DLT_OK);
    double ref = 0.0;
    for (int round = 0; round < 3; round++) {
        size_t n = (size_t)(N - 123 * round);
        for (size_t i = 0; i < n; i++) ref += x[i];
        ck_assert_int_eq(be->sum_to(be, n, x, acc), DLT_OK);
    }
    double got;
    ck_assert_int_eq(be->download(be, &got, acc, sizeof got), DLT_OK);
    ck_assert(memcmp(&got, &ref, sizeof got) == 0);
    ck_assert_int_eq(be->sum_to(be, 0, x, acc), DLT_OK);   /* n = 0: nothing */
    ck_assert(memcmp(acc, &ref, sizeof ref) == 0);
    ck_assert_int_eq(be->sum_to(be, 4, x, NULL), DLT_ERR_INVALID);
    be->free(be, acc);
}
END_TEST

START_TEST(test_upload_slots)
{
    float *h, *d;
    ck_assert_int_eq(be->host_alloc(be, 64 * sizeof(float), (void **)&h), DLT_OK);
    ck_assert_int_eq(be->alloc(be, 64 * sizeof(float), (void **)&d), DLT_OK);
    for (int i = 0; i < 64; i++) ck_assert(h[i] == 0.0f);   /* zeroed */
    for (int i = 0; i < 64; i++) h[i] = (float)i;
    for (int k = 0; k < DLT_UPLOAD_SLOTS; k++) {
        ck_assert_int_eq(be->upload_async(be, k, d, h, 64 * sizeof(float)), DLT_OK);
        ck_assert_int_eq(be->upload_wait(be, k), DLT_OK);
        ck_assert_int_eq(be->upload_release(be, k), DLT_OK);
        ck_assert_int_eq(be->upload_host_wait(be, k), DLT_OK);
    }
    ck_assert(memcmp(h, d, 64 * sizeof(float)) == 0);
    ck_assert_int_eq(be->upload_async(be, DLT_UPLOAD_SLOTS, d, h, 4), DLT_ERR_INVALID);
    ck_assert_int_eq(be->upload_wait(be, -1), DLT_ERR_INVALID);
    ck_assert_int_eq(be->upload_release(be, 2), DLT_ERR_INVALID);
    ck_assert_int_eq(be->upload_host_wait(be, 9), DLT_ERR_INVALID);
    be->host_free(be, h);
    be->free(be, d);
}
END_TEST

/* A data source of `batches` batches of 3 rows x 2 floats whose values
 * name the batch and row; odd batches come by reference (a loader's own
 * buffer), even ones are written into the staging buffer. */
typedef struct {
    int calls, batches;
    float own_x[6];
    int32_t own_y[3];
} source;

static dlt_status fetch(void *user, int test, float *x_host, int32_t *y_host, const float **x,
                        const int32_t **y, dlt_staged_batch *b)
{
    source *src = user;
    int k = src->calls++;
    *b = (dlt_staged_batch){ .n = 3, .global_n = 6, .sample0 = 3 * k, .count = 6 };
    if (k >= src->batches) *b = (dlt_staged_batch){ 0 };
    float *xo = k % 2 ? src->own_x : x_host;
    int32_t *yo = k % 2 ? src->own_y : y_host;
    for (int i = 0; i < 6; i++) xo[i] = (float)(100 * k + i) + (test ? 0.5f : 0.0f);
    for (int i = 0; i < 3; i++) yo[i] = 10 * k + i;
    *x = xo;
    *y = yo;
    return DLT_OK;
}

static void expect_batch(dlt_staging *s, int k, int test)
{
    dlt_staged_batch b;
    float *x;
    int32_t *y;
    ck_assert_int_eq(dlt_staging_next(s, test, &b, &x, &y), DLT_OK);
    ck_assert_int_eq(b.n, 3);
    ck_assert_int_eq(b.sample0, 3 * k);
    for (int i = 0; i < 6; i++) ck_assert(x[i] == (float)(100 * k + i) + (test ? 0.5f : 0.0f));
    for (int i = 0; i < 3; i++) ck_assert_int_eq(y[i], 10 * k + i);
}

/* next/prefetch alternate slots and give the batches in order; a prefetched
 * batch is not refetched; the end of the epoch arrives as global_n = 0. */
START_TEST(test_prefetch_order)
{
    source src = { .batches = 3 };
    dlt_staging s;
    ck_assert_int_eq(dlt_staging_init(&s, be, 4, 2, 1, fetch, &src), DLT_OK);
    ck_assert_int_eq(dlt_staging_prefetch(&s), DLT_ERR_INVALID);   /* nothing in use yet */
    expect_batch(&s, 0, 0);
    int first = s.cur;
    ck_assert_int_eq(dlt_staging_prefetch(&s), DLT_OK);
    ck_assert_int_eq(src.calls, 2);
    expect_batch(&s, 1, 0);
    ck_assert_int_eq(src.calls, 2);                    /* taken, not fetched again */
    ck_assert_int_ne(s.cur, first);
    ck_assert_int_eq(dlt_staging_prefetch(&s), DLT_OK);
    expect_batch(&s, 2, 0);
    ck_assert_int_eq(dlt_staging_prefetch(&s), DLT_OK);
    dlt_staged_batch b;
    float *x;
    int32_t *y;
    ck_assert_int_eq(dlt_staging_next(&s, 0, &b, &x, &y), DLT_OK);
    ck_assert_int_eq(b.global_n, 0);
    /* an evaluation ignores a pending training batch and fetches its own */
    src.calls = 0;
    src.batches = 9;
    ck_assert_int_eq(dlt_staging_prefetch(&s), DLT_OK);
    ck_assert_int_eq(dlt_staging_reset(&s), DLT_OK);
    expect_batch(&s, 1, 1);
    float *sx;
    int32_t *sy;
    ck_assert_int_eq(dlt_staging_scratch(&s, &sx, &sy), DLT_OK);
    ck_assert_ptr_ne(sx, s.x_host[s.cur]);            /* never the slot in use */
    dlt_staging_free(&s);
}
END_TEST

/* ---- a GPU-like backend on the CPU: uploads run late ----
 * upload_async only records the copy; it runs when the host waits for it
 * (upload_host_wait) or when the test says the compute stream got there
 * (late_run), as on a copy stream behind a busy GPU; upload_wait blocks
 * nothing. Backend memory is host memory, but the name is not "cpu", so
 * staging takes the GPU path. */
enum { PENDING = 4 };
static struct {
    void *dst[DLT_UPLOAD_SLOTS][PENDING];
    const void *src[DLT_UPLOAD_SLOTS][PENDING];
    size_t bytes[DLT_UPLOAD_SLOTS][PENDING];
    int n[DLT_UPLOAD_SLOTS];
    const void *last_src[2];   /* sources of the last two uploads (x, y) */
    int uploads;
} late;

static dlt_status late_async(dlt_backend *b, int slot, void *dst, const void *src, size_t bytes)
{
    ck_assert(slot >= 0 && slot < DLT_UPLOAD_SLOTS && late.n[slot] < PENDING);
    int i = late.n[slot]++;
    late.dst[slot][i] = dst;
    late.src[slot][i] = src;
    late.bytes[slot][i] = bytes;
    late.last_src[late.uploads++ % 2] = src;
    return DLT_OK;
}

static dlt_status late_nop(dlt_backend *b, int slot) { return DLT_OK; }

static dlt_status late_run(dlt_backend *b, int slot)
{
    for (int i = 0; i < late.n[slot]; i++)
        memcpy(late.dst[slot][i], late.src[slot][i], late.bytes[slot][i]);
    late.n[slot] = 0;
    return DLT_OK;
}

/* A source that hands out every batch by reference in one buffer of its
 * own, and scribbles over it when called again (a loader may reuse its
 * buffer then): an upload still pending at that point gets garbage. */
static dlt_status fetch_reused(void *user, int test, float *x_host, int32_t *y_host,
                               const float **x, const int32_t **y, dlt_staged_batch *b)
{
    source *src = user;
    for (int i = 0; i < 6; i++) src->own_x[i] = -1.0f;
    for (int i = 0; i < 3; i++) src->own_y[i] = -1;
    int k = src->calls++;
    *b = (dlt_staged_batch){ .n = 3, .global_n = 6, .sample0 = 3 * k, .count = 6 };
    if (k >= src->batches) *b = (dlt_staged_batch){ 0 };
    for (int i = 0; i < 6; i++) src->own_x[i] = (float)(100 * k + i) + (test ? 0.5f : 0.0f);
    for (int i = 0; i < 3; i++) src->own_y[i] = 10 * k + i;
    *x = src->own_x;
    *y = src->own_y;
    return DLT_OK;
}

/* On the GPU path, batches are uploaded straight from the source's buffer
 * (no copy into the staging buffers: the upload's source is the source's
 * memory), every batch arrives intact although the source reuses its
 * buffer at each call and the copies run late, and the host labels of the
 * batch in use are the source's. */
START_TEST(test_upload_from_source)
{
    dlt_backend fake = *be;
    fake.name = "fake-gpu";
    fake.upload_async = late_async;
    fake.upload_wait = late_nop;
    fake.upload_host_wait = late_run;
    memset(&late, 0, sizeof late);
    source src = { .batches = 40 };
    dlt_staging s;
    ck_assert_int_eq(dlt_staging_init(&s, &fake, 4, 2, 1, fetch_reused, &src), DLT_OK);
    ck_assert_ptr_null(dlt_staging_labels_host(&s));
    for (int k = 0; k < 30; k++) {
        dlt_staged_batch b;
        float *x;
        int32_t *y;
        ck_assert_int_eq(dlt_staging_next(&s, 0, &b, &x, &y), DLT_OK);
        ck_assert_int_eq(b.sample0, 3 * k);
        ck_assert_ptr_eq(dlt_staging_labels_host(&s), src.own_y);
        ck_assert_int_eq(src.own_y[1], 10 * k + 1);   /* the host labels are this batch's */
        /* the trainer queues the step, then fetches the next batch; the
         * GPU reaches this batch's upload only now */
        ck_assert_int_eq(dlt_staging_prefetch(&s), DLT_OK);
        ck_assert_ptr_eq(late.last_src[0], src.own_x);   /* no staging copy on the way */
        ck_assert_ptr_eq(late.last_src[1], src.own_y);
        late_run(&fake, s.cur);
        for (int i = 0; i < 6; i++) ck_assert_float_eq(x[i], (float)(100 * k + i));
        for (int i = 0; i < 3; i++) ck_assert_int_eq(y[i], 10 * k + i);
    }
    /* an evaluation in between: the pending training batch is dropped */
    ck_assert_int_eq(dlt_staging_reset(&s), DLT_OK);
    int calls = src.calls;
    for (int k = 0; k < 3; k++) {
        dlt_staged_batch b;
        float *x;
        int32_t *y;
        ck_assert_int_eq(dlt_staging_next(&s, 1, &b, &x, &y), DLT_OK);
        late_run(&fake, s.cur);
        ck_assert_float_eq(x[5], (float)(100 * (calls + k) + 5) + 0.5f);
    }
    dlt_staging_free(&s);
}
END_TEST

/* Sums: add, undo of a skipped step, the step's loss, take and reset. */
START_TEST(test_sums)
{
    source src = { .batches = 1 };
    dlt_staging s;
    ck_assert_int_eq(dlt_staging_init(&s, be, 4, 2, 1, fetch, &src), DLT_OK);
    float loss[3] = { 0.5f, 1.25f, 2.0f }, correct[3] = { 1, 0, 1 }, count[3] = { 4, 5, 6 };
    dlt_model_out img = { .loss = loss, .correct = correct, .count = NULL };
    dlt_model_out tok = { .loss = loss, .correct = correct, .count = count };

    ck_assert_int_eq(dlt_staging_step_begin(&s), DLT_OK);
    ck_assert_int_eq(dlt_staging_add(&s, DLT_SUMS_TRAIN, &img, 3, 1), DLT_OK);
    double l;
    ck_assert_int_eq(dlt_staging_step_loss(&s, &l), DLT_OK);
    ck_assert(l == 3.75);
    ck_assert_int_eq(dlt_staging_step_begin(&s), DLT_OK);      /* a step that is skipped */
    ck_assert_int_eq(dlt_staging_add(&s, DLT_SUMS_TRAIN, &img, 2, 1), DLT_OK);
    ck_assert_int_eq(dlt_staging_step_undo(&s), DLT_OK);
    ck_assert_int_eq(dlt_staging_add(&s, DLT_SUMS_TRAIN, &img, 3, 0), DLT_OK); /* no accuracy */
    ck_assert_int_eq(dlt_staging_add(&s, DLT_SUMS_EVAL, &tok, 3, 1), DLT_OK);
    double out[DLT_SUM_N];
    ck_assert_int_eq(dlt_staging_take(&s, DLT_SUMS_TRAIN, out), DLT_OK);
    ck_assert(out[DLT_SUM_LOSS] == 7.5 && out[DLT_SUM_CORRECT] == 2 && out[DLT_SUM_COUNT] == 6);
    ck_assert_int_eq(dlt_staging_take(&s, DLT_SUMS_TRAIN, out), DLT_OK);   /* zeroed */
    ck_assert(out[0] == 0 && out[1] == 0 && out[2] == 0);
    ck_assert_int_eq(dlt_staging_take(&s, DLT_SUMS_EVAL, out), DLT_OK);
    ck_assert(out[DLT_SUM_LOSS] == 3.75 && out[DLT_SUM_CORRECT] == 2 && out[DLT_SUM_COUNT] == 15);
    dlt_staging_free(&s);
}
END_TEST

/* A backend without the staging ops is refused with the op's name. */
START_TEST(test_missing_op)
{
    dlt_backend copy = *be;
    copy.sum_to = NULL;
    source src = { .batches = 1 };
    dlt_staging s;
    ck_assert_int_eq(dlt_staging_init(&s, &copy, 4, 2, 1, fetch, &src), DLT_ERR_UNSUPPORTED);
    ck_assert_ptr_nonnull(strstr(dlt_last_error(), "sum_to"));
    dlt_staging_free(&s);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("staging");
    TCase *tc = tcase_create("staging");
    tcase_add_checked_fixture(tc, be_setup, be_teardown);
    tcase_add_test(tc, test_sum_to_matches_host_loop);
    tcase_add_test(tc, test_upload_slots);
    tcase_add_test(tc, test_prefetch_order);
    tcase_add_test(tc, test_upload_from_source);
    tcase_add_test(tc, test_sums);
    tcase_add_test(tc, test_missing_op);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed != 0;
}
