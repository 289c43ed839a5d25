/* Tests of comm/comm.c on MPI: rank discovery, in-place sums, broadcast,
 * failure agreement and MPI error reporting.
 *
 * Runs under `mpirun -np N` (any N >= 1) and as a plain program (an Open MPI
 * singleton). Check must not fork under MPI (CK_NOFORK): a forked child's
 * collectives would break the parent's shared-memory transport. main()
 * initialises MPI itself, so dlt_comm_init finds it running and every test
 * may create and free its own communicator; only rank 0 prints, and the
 * failure count is summed over ranks so that every rank exits alike. */
#include <check.h>
#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "comm/comm.h"
#include "tests/unit/testutil.h"
#include "core/status.h"

static dlt_comm_t open_comm(void)
{
    dlt_comm_t c = NULL;
    dlt_status st = dlt_comm_init(NULL, NULL, &c);
    ck_assert_msg(st == DLT_OK, "dlt_comm_init: %s", dlt_last_error());
    ck_assert_ptr_nonnull(c);
    return c;
}

START_TEST(test_rank_size_host)
{
    int wr = -1, ws = -1;
    MPI_Comm_rank(MPI_COMM_WORLD, &wr);
    MPI_Comm_size(MPI_COMM_WORLD, &ws);
    dlt_comm_t c = open_comm();
    ck_assert_int_eq(dlt_comm_rank(c), wr);
    ck_assert_int_eq(dlt_comm_size(c), ws);
    /* all ranks of a test run share one machine, so local rank == rank */
    ck_assert_int_eq(dlt_comm_local_rank(c), wr);
    ck_assert(strlen(dlt_comm_host(c)) > 0);
    ck_assert_int_eq(dlt_comm_barrier(c), DLT_OK);
    dlt_comm_free(c);
}
END_TEST

START_TEST(test_allreduce_f32)
{
    dlt_comm_t c = open_comm();
    int r = dlt_comm_rank(c), s = dlt_comm_size(c);
    enum { N = 1000 };
    float *buf = malloc(N * sizeof *buf);
    for (int i = 0; i < N; i++) buf[i] = (float)(r + 1) * (float)(i % 7) + 0.25f;
    ck_assert_int_eq(dlt_comm_allreduce_f32(c, buf, N), DLT_OK);
    float ranks = (float)(s * (s + 1) / 2); /* sum of r + 1 */
    for (int i = 0; i < N; i++) {
        float want = ranks * (float)(i % 7) + 0.25f * (float)s;
        ck_assert_msg(fabsf(buf[i] - want) <= 1e-5f * fabsf(want) + 1e-6f,
                      "buf[%d] = %g, want %g", i, (double)buf[i], (double)want);
    }
    ck_assert_int_eq(dlt_comm_allreduce_f32(c, buf, 0), DLT_OK);
    free(buf);
    dlt_comm_free(c);
}
END_TEST

START_TEST(test_allreduce_f64)
{
    dlt_comm_t c = open_comm();
    int r = dlt_comm_rank(c), s = dlt_comm_size(c);
    double v[3] = { 1.0, (double)r, 1e-12 * (double)(r + 1) };
    ck_assert_int_eq(dlt_comm_allreduce_f64(c, v, 3), DLT_OK);
    ck_assert(v[0] == (double)s);
    ck_assert(v[1] == (double)(s * (s - 1) / 2));
    ck_assert(fabs(v[2] - 1e-12 * (double)(s * (s + 1) / 2)) < 1e-24);
    dlt_comm_free(c);
}
END_TEST

START_TEST(test_bcast)
{
    dlt_comm_t c = open_comm();
    int r = dlt_comm_rank(c), s = dlt_comm_size(c);
    int root = s - 1;
    char buf[64];
    memset(buf, 0, sizeof buf);
    if (r == root) snprintf(buf, sizeof buf, "hello from %d", root);
    ck_assert_int_eq(dlt_comm_bcast(c, buf, sizeof buf, root), DLT_OK);
    char want[64];
    snprintf(want, sizeof want, "hello from %d", root);
    ck_assert_str_eq(buf, want);
    dlt_comm_free(c);
}
END_TEST

START_TEST(test_bcast_bad_root_is_comm_error)
{
    dlt_comm_t c = open_comm();
    int x = 0;
    dlt_status st = dlt_comm_bcast(c, &x, sizeof x, dlt_comm_size(c) + 3);
    ck_assert_int_eq(st, DLT_ERR_COMM);
    ck_assert_msg(strstr(dlt_last_error(), "MPI_Ibcast") != NULL, "message: %s",
                  dlt_last_error());
    /* the communicator still works afterwards */
    ck_assert_int_eq(dlt_comm_barrier(c), DLT_OK);
    dlt_comm_free(c);
}
END_TEST

START_TEST(test_agree_all_ok)
{
    dlt_comm_t c = open_comm();
    dlt_clear_error();
    ck_assert_int_eq(dlt_comm_agree(c, DLT_OK), DLT_OK);
    ck_assert_str_eq(dlt_last_error(), "");
    dlt_comm_free(c);
}
END_TEST

START_TEST(test_agree_one_fails)
{
    dlt_comm_t c = open_comm();
    int r = dlt_comm_rank(c), s = dlt_comm_size(c);
    int bad = s - 1; /* the last rank fails, the others are fine */
    dlt_status mine = DLT_OK;
    dlt_clear_error();
    if (r == bad) mine = DLT_ERR(DLT_ERR_IO, "cannot read shard-%d.h5", r);
    dlt_status st = dlt_comm_agree(c, mine);
    ck_assert_int_eq(st, DLT_ERR_IO);
    char want[128];
    if (s > 1)
        snprintf(want, sizeof want, "rank %d: cannot read shard-%d.h5", bad, bad);
    else /* a world of one names no rank */
        snprintf(want, sizeof want, "cannot read shard-%d.h5", bad);
    ck_assert_msg(strncmp(dlt_last_error(), want, strlen(want)) == 0, "rank %d got '%s'", r,
                  dlt_last_error());
    /* agreeing again on the agreed status keeps a single prefix */
    st = dlt_comm_agree(c, st);
    ck_assert_int_eq(st, DLT_ERR_IO);
    ck_assert_msg(strncmp(dlt_last_error(), want, strlen(want)) == 0, "second agree: '%s'",
                  dlt_last_error());
    dlt_comm_free(c);
}
END_TEST

START_TEST(test_agree_lowest_wins)
{
    dlt_comm_t c = open_comm();
    int r = dlt_comm_rank(c);
    /* every rank fails with its own status; rank 0's must win everywhere */
    dlt_status mine = r == 0 ? DLT_ERR(DLT_ERR_NUMERIC, "loss is NaN at step 7")
                             : DLT_ERR(DLT_ERR_SHAPE, "rank-specific shape problem");
    dlt_status st = dlt_comm_agree(c, mine);
    ck_assert_int_eq(st, DLT_ERR_NUMERIC);
    const char *want = dlt_comm_size(c) > 1 ? "rank 0: loss is NaN at step 7" : "loss is NaN at step 7";
    ck_assert_msg(strcmp(dlt_last_error(), want) == 0, "got '%s'", dlt_last_error());
    dlt_comm_free(c);
}
END_TEST

START_TEST(test_agree_empty_message)
{
    dlt_comm_t c = open_comm();
    int r = dlt_comm_rank(c);
    dlt_clear_error();
    dlt_status st = dlt_comm_agree(c, r == 0 ? DLT_ERR_NOMEM : DLT_OK);
    ck_assert_int_eq(st, DLT_ERR_NOMEM);
    const char *want = dlt_comm_size(c) > 1 ? "rank 0: out of memory" : "out of memory";
    ck_assert_msg(strcmp(dlt_last_error(), want) == 0, "got '%s'", dlt_last_error());
    dlt_comm_free(c);
}
END_TEST

static Suite *comm_suite(void)
{
    Suite *s = suite_create("comm_mpi");
    TCase *tc = tcase_create("mpi");
    tcase_add_test(tc, test_rank_size_host);
    tcase_add_test(tc, test_allreduce_f32);
    tcase_add_test(tc, test_allreduce_f64);
    tcase_add_test(tc, test_bcast);
    tcase_add_test(tc, test_bcast_bad_root_is_comm_error);
    tcase_add_test(tc, test_agree_all_ok);
    tcase_add_test(tc, test_agree_one_fails);
    tcase_add_test(tc, test_agree_lowest_wins);
    tcase_add_test(tc, test_agree_empty_message);
    suite_add_tcase(s, tc);
    return s;
}

int main(int argc, char **argv)
{
    return tu_run_mpi(&argc, &argv, MPI_THREAD_FUNNELED, comm_suite());
}
