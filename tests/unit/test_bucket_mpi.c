/* Tests of the gradient buckets (comm/bucket.c), the model's grad-ready hook
 * and accumulation (core/model.c), and the start-up checks (comm/comm_check.c).
 *
 * Runs under `mpirun -np N` (any N >= 1) and as a plain program. As in
 * test_comm_mpi.c, main() initialises MPI (at MPI_THREAD_MULTIPLE, so the
 * buckets' communication thread runs; DLT_COMM_THREAD=0 selects the
 * compute-thread path per test), Check does not fork, only rank 0 prints,
 * and the failure count is summed over ranks. */
#include <check.h>
#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "comm/bucket.h"
#include "comm/comm.h"
#include "tests/unit/testutil.h"
#include "core/backend.h"
#include "core/model.h"
#include "core/status.h"

static dlt_comm_t open_comm(void)
{
    dlt_comm_t c = NULL;
    ck_assert_msg(dlt_comm_init(NULL, NULL, &c) == DLT_OK, "%s", dlt_last_error());
    return c;
}

/* ---- bucket boundaries ---- */

START_TEST(test_plan_boundaries)
{
    size_t ends[16];
    ck_assert_int_eq(dlt_bucket_plan(10, 3, ends, 16), 4);
    ck_assert_uint_eq(ends[0], 3);
    ck_assert_uint_eq(ends[1], 6);
    ck_assert_uint_eq(ends[2], 9);
    ck_assert_uint_eq(ends[3], 10); /* the last bucket is the remainder */
    ck_assert_int_eq(dlt_bucket_plan(9, 3, ends, 16), 3);
    ck_assert_uint_eq(ends[2], 9);  /* exact multiple: no empty bucket */
    ck_assert_int_eq(dlt_bucket_plan(10, 0, ends, 16), 1);
    ck_assert_uint_eq(ends[0], 10); /* 0: one bucket */
    ck_assert_int_eq(dlt_bucket_plan(10, 1000, ends, 16), 1);
    ck_assert_uint_eq(ends[0], 10); /* larger than the arena: one bucket */
    ck_assert_int_eq(dlt_bucket_plan(0, 5, ends, 16), 0);
    ck_assert_int_eq(dlt_bucket_plan(5, 1, ends, 16), 5);
    for (int i = 0; i < 5; i++) ck_assert_uint_eq(ends[i], (size_t)i + 1);
    /* more buckets than room: the count is still right, ends stop at max */
    ends[2] = 12345;
    ck_assert_int_eq(dlt_bucket_plan(100, 10, ends, 2), 10);
    ck_assert_uint_eq(ends[1], 20);
    ck_assert_uint_eq(ends[2], 12345);
}
END_TEST

/* ---- MPI buckets ---- */

START_TEST(test_buckets_start_when_ready_and_sum)
{
    setenv("DLT_COMM_THREAD", "0", 1); /* the compute thread drives: times are synchronous */
    dlt_comm_t c = open_comm();
    int r = dlt_comm_rank(c), s = dlt_comm_size(c);
    enum { N = 1000 };
    float *g = malloc(N * sizeof *g);
    for (int i = 0; i < N; i++) g[i] = (float)(r + 1) * (float)(i % 11) - 0.5f;
    dlt_buckets_t b = NULL;
    ck_assert_int_eq(dlt_buckets_init(c, g, N, 300, NULL, &b), DLT_OK);
    unsetenv("DLT_COMM_THREAD");
    ck_assert_int_eq(dlt_buckets_threaded(b), 0);
    ck_assert_int_eq(dlt_buckets_count(b), 4);
    size_t off, len;
    dlt_buckets_range(b, 3, &off, &len);
    ck_assert_uint_eq(off, 900);
    ck_assert_uint_eq(len, 100);

    for (int round = 0; round < 2; round++) {
        if (round == 1) /* a second round on fresh data, as every step */
            for (int i = 0; i < N; i++) g[i] = (float)(r + 1) * (float)(i % 11) - 0.5f;
        ck_assert_int_eq(dlt_buckets_begin(b), DLT_OK);
        ck_assert_int_eq(dlt_buckets_ready(b, 299), DLT_OK);
        double t0, t1;
        dlt_buckets_times(b, 0, &t0, &t1);
        ck_assert(t0 == 0);              /* 299 < 300: bucket 0 not complete */
        ck_assert_int_eq(dlt_buckets_ready(b, 650), DLT_OK);
        dlt_buckets_times(b, 0, &t0, &t1);
        ck_assert(t0 > 0);
        dlt_buckets_times(b, 1, &t0, &t1);
        ck_assert(t0 > 0);
        dlt_buckets_times(b, 2, &t0, &t1);
        ck_assert(t0 == 0);              /* ends at 900 */
        ck_assert_int_eq(dlt_buckets_ready(b, 100), DLT_OK); /* smaller: harmless */
        ck_assert_int_eq(dlt_buckets_finish(b), DLT_OK);
        for (int i = 0; i < 4; i++) {
            dlt_buckets_times(b, i, &t0, &t1);
            ck_assert(t0 > 0 && t1 >= t0);
        }
        float ranks = (float)(s * (s + 1) / 2);
        for (int i = 0; i < N; i++) {
            float want = ranks * (float)(i % 11) - 0.5f * (float)s;
            ck_assert_msg(fabsf(g[i] - want) <= 1e-5f * (fabsf(want) + 1),
                          "round %d g[%d] = %g, want %g", round, i, (double)g[i], (double)want);
        }
    }
    /* misuse is an error, not a hang */
    ck_assert_int_eq(dlt_buckets_ready(b, N), DLT_ERR_INVALID);
    ck_assert_int_eq(dlt_buckets_finish(b), DLT_ERR_INVALID);
    ck_assert_int_eq(dlt_buckets_begin(b), DLT_OK);
    ck_assert_int_eq(dlt_buckets_begin(b), DLT_ERR_INVALID);
    ck_assert_int_eq(dlt_buckets_finish(b), DLT_OK);
    dlt_buckets_free(b);
    free(g);
    dlt_comm_free(c);
}
END_TEST

/* Fills g (n) with values whose float sums depend on the order of
 * addition, different on every rank and round. */
static void fill_rough(float *g, int n, int rank, int round)
{
    for (int i = 0; i < n; i++) g[i] = sinf(0.37f * (float)i + (float)rank) * powf(10.0f, (float)((i + round) % 9 - 4));
}

/* The communication thread (MPI_THREAD_MULTIPLE, as main() asks): buckets
 * start only once ready, on the worker, and the sums are bitwise those of
 * the compute-thread path. */
START_TEST(test_buckets_thread_bitwise)
{
    dlt_comm_t c = open_comm();
    int r = dlt_comm_rank(c);
    enum { N = 5000, B = 700 };
    float *g = malloc(N * sizeof *g), *want = malloc(N * sizeof *want);
    dlt_buckets_t inl = NULL, thr = NULL;
    setenv("DLT_COMM_THREAD", "0", 1);
    ck_assert_int_eq(dlt_buckets_init(c, want, N, B, NULL, &inl), DLT_OK);
    unsetenv("DLT_COMM_THREAD");
    ck_assert_int_eq(dlt_buckets_init(c, g, N, B, NULL, &thr), DLT_OK);
    int level = 0;
    MPI_Query_thread(&level);
    ck_assert_int_eq(dlt_buckets_threaded(thr), level == MPI_THREAD_MULTIPLE);
    ck_assert_int_eq(dlt_buckets_threaded(inl), 0);
    int nb = dlt_buckets_count(thr);
    ck_assert_int_eq(nb, 8);
    for (int round = 0; round < 3; round++) {
        fill_rough(want, N, r, round);
        memcpy(g, want, N * sizeof *g);
        ck_assert_int_eq(dlt_buckets_begin(inl), DLT_OK);
        ck_assert_int_eq(dlt_buckets_finish(inl), DLT_OK);

        ck_assert_int_eq(dlt_buckets_begin(thr), DLT_OK);
        double t0, t1;
        for (int i = 0; i < nb; i++) {
            dlt_buckets_times(thr, i, &t0, &t1);
            ck_assert(t0 == 0 && t1 == 0); /* a new round starts clean */
        }
        ck_assert_int_eq(dlt_buckets_ready(thr, 2 * B), DLT_OK);
        /* the worker starts buckets 0 and 1 on its own, without a further call */
        double give_up = dlt_buckets_now() + 5.0;
        do dlt_buckets_times(thr, 1, &t0, &t1);
        while (t0 == 0 && dlt_buckets_now() < give_up);
        ck_assert_msg(t0 > 0, "round %d: bucket 1 not started by the communication thread", round);
        dlt_buckets_times(thr, 2, &t0, &t1);
        ck_assert(t0 == 0); /* not ready: not started */
        ck_assert_int_eq(dlt_buckets_finish(thr), DLT_OK);
        for (int i = 0; i < nb; i++) {
            dlt_buckets_times(thr, i, &t0, &t1);
            ck_assert(t0 > 0 && t1 >= t0);
        }
        ck_assert_msg(memcmp(g, want, N * sizeof *g) == 0, "round %d: threaded sums differ from inline", round);
    }
    dlt_buckets_free(thr);
    dlt_buckets_free(inl);
    free(g);
    free(want);
    dlt_comm_free(c);
}
END_TEST

/* Fake device ops: record the slices started and the waits. */
typedef struct {
    float *base;
    size_t off[8], len[8];
    int n_start, n_wait;
} fake_dev;

static dlt_status fake_start(void *ctx, float *buf, size_t n)
{
    fake_dev *f = ctx;
    if (f->n_start < 8) {
        f->off[f->n_start] = (size_t)(buf - f->base);
        f->len[f->n_start] = n;
    }
    f->n_start++;
    return DLT_OK;
}

static dlt_status fake_wait(void *ctx)
{
    ((fake_dev *)ctx)->n_wait++;
    return DLT_OK;
}

START_TEST(test_buckets_device_ops_in_order)
{
    dlt_comm_t c = open_comm();
    float g[50];
    fake_dev f = { .base = g };
    dlt_bucket_device_ops ops = { .ctx = &f, .start = fake_start, .wait_all = fake_wait };
    dlt_buckets_t b = NULL;
    ck_assert_int_eq(dlt_buckets_init(c, g, 50, 20, &ops, &b), DLT_OK);
    ck_assert_int_eq(dlt_buckets_begin(b), DLT_OK);
    ck_assert_int_eq(dlt_buckets_ready(b, 45), DLT_OK);
    ck_assert_int_eq(f.n_start, 2);
    ck_assert_int_eq(f.n_wait, 0);
    ck_assert_int_eq(dlt_buckets_finish(b), DLT_OK);
    ck_assert_int_eq(f.n_start, 3);
    ck_assert_int_eq(f.n_wait, 1);
    size_t want_off[3] = { 0, 20, 40 }, want_len[3] = { 20, 20, 10 };
    for (int i = 0; i < 3; i++) {
        ck_assert_uint_eq(f.off[i], want_off[i]);
        ck_assert_uint_eq(f.len[i], want_len[i]);
    }
    dlt_buckets_free(b);
    dlt_comm_free(c);
}
END_TEST

/* ---- the model's grad-ready hook and accumulation ---- */

static dlt_layer_spec spec(const char *type, const char *name, const char *key, const char *val)
{
    dlt_layer_spec s;
    memset(&s, 0, sizeof s);
    snprintf(s.type, sizeof s.type, "%s", type);
    snprintf(s.name, sizeof s.name, "%s", name);
    if (key) {
        snprintf(s.kv[0].key, sizeof s.kv[0].key, "%s", key);
        snprintf(s.kv[0].val, sizeof s.kv[0].val, "%s", val);
        s.n_kv = 1;
    }
    s.file = "test";
    return s;
}

typedef struct {
    int calls, layers[16];
    size_t ready[16];
} hook_log;

static dlt_status log_hook(void *user, int layer, size_t n_ready)
{
    hook_log *h = user;
    if (h->calls < 16) {
        h->layers[h->calls] = layer;
        h->ready[h->calls] = n_ready;
    }
    h->calls++;
    return DLT_OK;
}

START_TEST(test_model_hook_and_accumulate)
{
    dlt_backend *be = NULL;
    ck_assert_int_eq(dlt_backend_cpu_create(&be), DLT_OK);
    /* dense 6->5 (35 floats), tanh, dense 5->3 (18 floats), + loss */
    dlt_layer_spec s[3] = { spec("dense", "fc1", "units", "5"), spec("tanh", "t", NULL, NULL),
                            spec("dense", "fc2", "units", "3") };
    dlt_model_cfg mc = { .layers = s, .n_layers = 3, .loss = "softmax_cross_entropy",
                         .input = { 1, { 6 } }, .n_classes = 3, .max_batch = 4, .seed = 3 };
    dlt_model *m = NULL;
    ck_assert_msg(dlt_model_build(&mc, be, &m) == DLT_OK, "%s", dlt_last_error());
    size_t n;
    float *g = dlt_model_grads(m, &n);
    ck_assert_uint_eq(n, 53);

    float x[24];
    for (int i = 0; i < 24; i++) x[i] = sinf((float)i);
    int32_t y[4] = { 0, 2, 1, 2 };
    dlt_step_ctx ctx = { .train = 1, .labels = y };
    hook_log h;
    memset(&h, 0, sizeof h);
    dlt_model_set_grad_hook(m, log_hook, &h);
    ck_assert_int_eq(dlt_model_forward(m, x, 4, &ctx, NULL), DLT_OK);
    ck_assert_int_eq(dlt_model_backward(m, 4, &ctx, 0.25f), DLT_OK);
    /* loss, fc2, tanh, fc1: backward order, prefix lengths in arena order */
    ck_assert_int_eq(h.calls, 4);
    int want_layer[4] = { 3, 2, 1, 0 };
    size_t want_ready[4] = { 0, 18, 18, 53 };
    for (int i = 0; i < 4; i++) {
        ck_assert_int_eq(h.layers[i], want_layer[i]);
        ck_assert_uint_eq(h.ready[i], want_ready[i]);
    }
    float once[53];
    memcpy(once, g, sizeof once);

    /* the same batch twice, accumulated: twice the gradient */
    dlt_model_set_grad_hook(m, NULL, NULL);
    ck_assert_int_eq(dlt_model_forward(m, x, 4, &ctx, NULL), DLT_OK);
    ck_assert_int_eq(dlt_model_backward_accumulate(m, 4, &ctx, 0.25f), DLT_OK);
    ck_assert_int_eq(h.calls, 4); /* hook removed */
    for (int i = 0; i < 53; i++)
        ck_assert_msg(fabsf(g[i] - 2 * once[i]) <= 1e-6f * (1 + fabsf(once[i])), "g[%d] = %g, want %g", i,
                      (double)g[i], 2.0 * once[i]);
    /* plain backward zeroes first again */
    ck_assert_int_eq(dlt_model_backward(m, 4, &ctx, 0.25f), DLT_OK);
    for (int i = 0; i < 53; i++) ck_assert(fabsf(g[i] - once[i]) <= 1e-6f * (1 + fabsf(once[i])));
    dlt_model_free(m);
    be->destroy(be);
}
END_TEST

/* ---- start-up checks ---- */

START_TEST(test_check_same_names_rank)
{
    dlt_comm_t c = open_comm();
    int r = dlt_comm_rank(c), s = dlt_comm_size(c);
    ck_assert_int_eq(dlt_comm_check_same(c, "config", 42), DLT_OK);
    uint64_t h = dlt_hash_bytes(DLT_HASH_INIT, "abc", 3);
    ck_assert(h != dlt_hash_bytes(DLT_HASH_INIT, "abd", 3));
    dlt_status st = dlt_comm_check_same(c, "config", r == s - 1 ? h + 1 : h);
    if (s == 1) {
        ck_assert_int_eq(st, DLT_OK);
    } else {
        ck_assert_int_eq(st, DLT_ERR_CONFIG);
        char want[64];
        snprintf(want, sizeof want, "rank %d runs a different config than rank 0", s - 1);
        ck_assert_msg(strstr(dlt_last_error(), want), "%s", dlt_last_error());
    }
    uint64_t hf = 0;
    ck_assert_int_eq(dlt_hash_file("/proc/self/exe", &hf), DLT_OK);
    ck_assert(hf != 0 && hf != DLT_HASH_INIT);
    ck_assert_int_eq(dlt_hash_file("/nonexistent/x", &hf), DLT_ERR_IO);
    dlt_comm_free(c);
}
END_TEST

START_TEST(test_rank_table_and_shared_gpu)
{
    dlt_comm_t c = open_comm();
    int s = dlt_comm_size(c);
    char *table = NULL;
    ck_assert_int_eq(dlt_comm_rank_table(c, "cpu (1 threads)", "", &table), DLT_OK);
    ck_assert_ptr_nonnull(table);
    char want[64];
    snprintf(want, sizeof want, "rank %d: host %s, local rank", s - 1, dlt_comm_host(c));
    ck_assert_msg(strstr(table, want), "%s", table);
    free(table);
    /* every rank claims the same GPU: refused when there are two ranks */
    dlt_status st = dlt_comm_rank_table(c, "cuda:0", "0000:3B:00.0", &table);
    free(table);
    if (s == 1) {
        ck_assert_int_eq(st, DLT_OK);
    } else {
        ck_assert_int_eq(st, DLT_ERR_DEVICE);
        ck_assert_msg(strstr(dlt_last_error(), "ranks 0 and 1 both use the GPU at PCI bus id 0000:3B:00.0"),
                      "%s", dlt_last_error());
    }
    dlt_comm_free(c);
}
END_TEST

START_TEST(test_singleton_launch)
{
    dlt_comm_t c = open_comm();
    setenv("SLURM_NTASKS", "4", 1);
    dlt_status st = dlt_comm_check_launch(c);
    unsetenv("SLURM_NTASKS");
    if (dlt_comm_size(c) == 1) {
        ck_assert_int_eq(st, DLT_ERR_COMM);
        ck_assert_msg(strstr(dlt_last_error(), "started as 4 singletons: launch with srun --mpi=pmix or mpirun"),
                      "%s", dlt_last_error());
    } else {
        ck_assert_int_eq(st, DLT_OK); /* a real world of 4 or 2: nothing wrong */
    }
    setenv("SLURM_NTASKS", "1", 1);
    ck_assert_int_eq(dlt_comm_check_launch(c), DLT_OK);
    unsetenv("SLURM_NTASKS");
    dlt_comm_free(c);
}
END_TEST

static Suite *bucket_suite(void)
{
    Suite *s = suite_create("bucket");
    TCase *tc = tcase_create("bucket");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_plan_boundaries);
    tcase_add_test(tc, test_buckets_start_when_ready_and_sum);
    tcase_add_test(tc, test_buckets_thread_bitwise);
    tcase_add_test(tc, test_buckets_device_ops_in_order);
    tcase_add_test(tc, test_model_hook_and_accumulate);
    tcase_add_test(tc, test_check_same_names_rank);
    tcase_add_test(tc, test_rank_table_and_shared_gpu);
    tcase_add_test(tc, test_singleton_launch);
    suite_add_tcase(s, tc);
    return s;
}

int main(int argc, char **argv)
{
    return tu_run_mpi(&argc, &argv, MPI_THREAD_MULTIPLE, bucket_suite());
}
