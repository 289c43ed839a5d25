/* Tests of ZeRO-1 in comm/: the shard plan (comm/zero.c), the reduce-
 * scattering buckets and the parameter all-gather (comm/bucket.c), and the
 * optimizer-state gather for checkpoints.
 *
 * Runs under `mpirun -np N` (any N >= 1) and as a plain program, like
 * test_bucket_mpi.c: main() initialises MPI at MPI_THREAD_MULTIPLE, Check
 * does not fork, only rank 0 prints, failures are summed over ranks. Values
 * are small integers and halves, so every sum is exact and results are
 * compared with ==. */
#include <check.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "comm/bucket.h"
#include "comm/comm.h"
#include "comm/zero.h"
#include "core/status.h"
#include "tests/unit/testutil.h"

static dlt_comm_t open_comm(void)
{
    dlt_comm_t c = NULL;
    ck_assert_msg(dlt_comm_init(NULL, NULL, &c) == DLT_OK, "%s", dlt_last_error());
    return c;
}

START_TEST(test_piece_rule)
{
    size_t off, cnt;
    dlt_zero_piece(10, 3, 0, &off, &cnt);
    ck_assert(off == 0 && cnt == 3);
    dlt_zero_piece(10, 3, 1, &off, &cnt);
    ck_assert(off == 3 && cnt == 3);
    dlt_zero_piece(10, 3, 2, &off, &cnt); /* the last rank takes the remainder */
    ck_assert(off == 6 && cnt == 4);
    dlt_zero_piece(2, 3, 0, &off, &cnt); /* fewer floats than ranks: all on the last */
    ck_assert(cnt == 0);
    dlt_zero_piece(2, 3, 2, &off, &cnt);
    ck_assert(off == 0 && cnt == 2);
    dlt_zero_piece(7, 1, 0, &off, &cnt);
    ck_assert(off == 0 && cnt == 7);
}
END_TEST

/* Every bucket is cut into pieces that tile it in rank order; the shard of
 * this rank is its piece of each bucket; the floats of all ranks add up. */
START_TEST(test_plan_tiles_buckets)
{
    dlt_comm_t c = open_comm();
    int r = dlt_comm_rank(c), s = dlt_comm_size(c);
    dlt_zero *z = NULL;
    ck_assert_int_eq(dlt_zero_init(c, 1000, 300, &z), DLT_OK);
    ck_assert_int_eq(dlt_zero_count(z), 4);
    ck_assert_int_eq(dlt_zero_world(z), s);
    const dlt_optim_shard *sh = dlt_zero_shard(z);
    ck_assert_uint_eq(sh->count, 4);
    size_t all = 0, mine = 0;
    for (int p = 0; p < s; p++) all += dlt_zero_floats(z, p);
    ck_assert_uint_eq(all, 1000);
    for (int i = 0; i < 4; i++) {
        size_t off, len, end = 0;
        dlt_zero_bucket(z, i, &off, &len);
        ck_assert_uint_eq(off, (size_t)i * 300);
        ck_assert_uint_eq(len, i < 3 ? 300 : 100);
        for (int p = 0; p < s; p++) {
            size_t po, pc;
            dlt_zero_piece(len, s, p, &po, &pc);
            ck_assert_uint_eq(po, end); /* contiguous, in rank order */
            end = po + pc;
            if (p == r) {
                ck_assert_uint_eq(sh->off[i], off + po);
                ck_assert_uint_eq(sh->len[i], pc);
            }
        }
        ck_assert_uint_eq(end, len);
        mine += sh->len[i];
    }
    ck_assert_uint_eq(mine, sh->total);
    ck_assert_uint_eq(mine, dlt_zero_floats(z, r));
    double v[2] = { 1.0, (double)r };
    ck_assert_int_eq(sh->sum(sh->ctx, v, 2), DLT_OK); /* the norm's allreduce */
    ck_assert(v[0] == (double)s && v[1] == (double)s * (s - 1) / 2);
    dlt_zero_free(z);
    dlt_comm_free(c);
}
END_TEST

/* Rank q's gradient value at float i. */
static float grad_of(int q, size_t i) { return (float)(q + 1) * (float)(i % 11) - 0.5f; }

/* Reduce-scatter leaves the global sum in this rank's pieces, in place
 * (also when buckets are ready one layer at a time); the all-gather then
 * brings every rank's pieces to all. Both progress modes, two rounds; N
 * floats in buckets of B (B = 2 on 3 or more ranks: pieces of 0 floats). */
static void run_reduce_scatter(int threaded, size_t N, size_t B)
{
    if (!threaded) setenv("DLT_COMM_THREAD", "0", 1);
    dlt_comm_t c = open_comm();
    int r = dlt_comm_rank(c), s = dlt_comm_size(c);
    dlt_zero *z = NULL;
    ck_assert_int_eq(dlt_zero_init(c, N, B, &z), DLT_OK);
    float *g = malloc(N * sizeof *g), *w = malloc(N * sizeof *w);
    dlt_buckets_t b = NULL;
    ck_assert_msg(dlt_buckets_init_zero(c, g, z, NULL, &b) == DLT_OK, "%s", dlt_last_error());
    unsetenv("DLT_COMM_THREAD");
    int level = 0;
    MPI_Query_thread(&level);
    ck_assert_int_eq(dlt_buckets_threaded(b), threaded && level == MPI_THREAD_MULTIPLE);
    ck_assert_int_eq(dlt_buckets_count(b), dlt_zero_count(z));
    const dlt_optim_shard *sh = dlt_zero_shard(z);
    for (int round = 0; round < 2; round++) {
        for (size_t i = 0; i < N; i++) g[i] = grad_of(r, i) + (float)round;
        ck_assert_int_eq(dlt_buckets_begin(b), DLT_OK);
        for (size_t ready = N / 20; ready < N; ready += N / 4 + 1) ck_assert_int_eq(dlt_buckets_ready(b, ready), DLT_OK);
        ck_assert_int_eq(dlt_buckets_gather(b, w), DLT_ERR_INVALID); /* inside a round */
        ck_assert_msg(dlt_buckets_finish(b) == DLT_OK, "%s", dlt_last_error());
        for (size_t k = 0; k < sh->count; k++)
            for (size_t i = sh->off[k]; i < sh->off[k] + sh->len[k]; i++) {
                float want = 0;
                for (int q = 0; q < s; q++) want += grad_of(q, i) + (float)round;
                ck_assert_msg(g[i] == want, "round %d, float %zu: %g, want %g", round, i, g[i], want);
            }
        /* parameters: this rank's pieces hold i, the rest garbage */
        for (size_t i = 0; i < N; i++) w[i] = -1.0f - (float)r;
        for (size_t k = 0; k < sh->count; k++)
            for (size_t i = sh->off[k]; i < sh->off[k] + sh->len[k]; i++) w[i] = (float)i + (float)round;
        ck_assert_msg(dlt_buckets_gather(b, w) == DLT_OK, "%s", dlt_last_error());
        for (size_t i = 0; i < N; i++)
            ck_assert_msg(w[i] == (float)i + (float)round, "round %d, parameter %zu: %g", round, i, w[i]);
    }
    dlt_buckets_free(b);
    dlt_zero_free(z);
    free(g);
    free(w);
    dlt_comm_free(c);
}

START_TEST(test_reduce_scatter_gather_threaded) { run_reduce_scatter(1, 2000, 333); }
END_TEST

START_TEST(test_reduce_scatter_gather_inline) { run_reduce_scatter(0, 2000, 333); }
END_TEST

START_TEST(test_reduce_scatter_gather_tiny_buckets) { run_reduce_scatter(1, 21, 2); }
END_TEST

/* Buckets without ZeRO refuse the all-gather. */
START_TEST(test_gather_needs_zero)
{
    dlt_comm_t c = open_comm();
    float g[10] = { 0 };
    dlt_buckets_t b = NULL;
    ck_assert_int_eq(dlt_buckets_init(c, g, 10, 4, NULL, &b), DLT_OK);
    ck_assert_int_eq(dlt_buckets_gather(b, g), DLT_ERR_INVALID);
    dlt_buckets_free(b);
    dlt_comm_free(c);
}
END_TEST

/* The checkpoint gather: packed shards become the full layout on the root. */
START_TEST(test_state_gather_to_root)
{
    dlt_comm_t c = open_comm();
    int r = dlt_comm_rank(c), s = dlt_comm_size(c);
    enum { N = 1234 };
    dlt_zero *z = NULL;
    ck_assert_int_eq(dlt_zero_init(c, N, 100, &z), DLT_OK);
    const dlt_optim_shard *sh = dlt_zero_shard(z);
    float *packed = malloc((sh->total + 1) * sizeof *packed), *full = malloc(N * sizeof *full);
    size_t at = 0;
    for (size_t k = 0; k < sh->count; k++)
        for (size_t i = 0; i < sh->len[k]; i++) packed[at++] = (float)(sh->off[k] + i);
    for (size_t i = 0; i < N; i++) full[i] = -1.0f;
    int root = s - 1; /* any root */
    ck_assert_msg(dlt_zero_gather(z, packed, full, root) == DLT_OK, "%s", dlt_last_error());
    for (size_t i = 0; i < N; i++) ck_assert_msg(full[i] == (r == root ? (float)i : -1.0f), "float %zu: %g", i, full[i]);
    free(packed);
    free(full);
    dlt_zero_free(z);
    dlt_comm_free(c);
}
END_TEST

static Suite *zero_suite(void)
{
    Suite *s = suite_create("zero");
    TCase *tc = tcase_create("zero");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_piece_rule);
    tcase_add_test(tc, test_plan_tiles_buckets);
    tcase_add_test(tc, test_reduce_scatter_gather_threaded);
    tcase_add_test(tc, test_reduce_scatter_gather_inline);
    tcase_add_test(tc, test_reduce_scatter_gather_tiny_buckets);
    tcase_add_test(tc, test_gather_needs_zero);
    tcase_add_test(tc, test_state_gather_to_root);
    suite_add_tcase(s, tc);
    return s;
}

int main(int argc, char **argv)
{
    return tu_run_mpi(&argc, &argv, MPI_THREAD_MULTIPLE, zero_suite());
}
