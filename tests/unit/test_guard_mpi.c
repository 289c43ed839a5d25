/* Tests of comm/guard.c under MPI (mpirun -np 2 or more; a world of one
 * checks only the local parts): a collective that a peer joins late times
 * out with a message saying where this rank is, and then still completes;
 * a failure notice from rank 1 ends rank 0's wait at once, naming rank 1
 * and its message, and the notify exchange reports no silent rank.
 *
 * Run with CK_NOFORK (see test_comm_mpi.c); every test makes its own
 * communicator because a notified guard is spent. */
#include <check.h>
#include <mpi.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "comm/comm.h"
#include "tests/unit/testutil.h"
#include "comm/comm_internal.h"
#include "comm/guard.h"
#include "core/status.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static dlt_comm_t open_comm(void)
{
    dlt_comm_t c = NULL;
    ck_assert_msg(dlt_comm_init(NULL, NULL, &c) == DLT_OK, "dlt_comm_init: %s", dlt_last_error());
    return c;
}

START_TEST(test_timeout_then_complete)
{
    dlt_comm_t c = open_comm();
    int r = dlt_comm_rank(c), s = dlt_comm_size(c);
    if (s < 2) {
        dlt_comm_free(c);
        return;
    }
    dlt_comm_set_where(c, 7, "backward");
    dlt_comm_set_bucket(c, 2);
    MPI_Request req;
    if (r == 1) usleep(600000); /* rank 1 joins 0.6 s late */
    ck_assert_int_eq(MPI_Ibarrier(dlt_comm_mpi(c), &req), MPI_SUCCESS);
    if (r == 0) {
        dlt_comm_set_timeout(c, 0.2);
        double t0 = now_s();
        dlt_status st = dlt_comm_wait(c, &req, "barrier");
        double dt = now_s() - t0;
        ck_assert_int_eq(st, DLT_ERR_COMM);
        const char *m = dlt_last_error();
        ck_assert_msg(strstr(m, "timeout") && strstr(m, "step 7") && strstr(m, "phase backward") &&
                          strstr(m, "bucket 2") && strstr(m, "collective #1"),
                      "message: %s", m);
        ck_assert_msg(dt >= 0.19 && dt < 0.5, "timed out after %.3f s", dt);
        dlt_comm_set_timeout(c, 10);
    }
    /* the request survives a timeout: waiting again completes it */
    ck_assert_int_eq(dlt_comm_wait(c, &req, "barrier"), DLT_OK);
    ck_assert_int_eq(dlt_comm_barrier(c), DLT_OK);
    dlt_comm_free(c);
}
END_TEST

START_TEST(test_notice_ends_wait)
{
    dlt_comm_t c = open_comm();
    int r = dlt_comm_rank(c), s = dlt_comm_size(c);
    char silent[64] = "x";
    if (s < 2) {
        dlt_comm_notify_failure(c, "nothing to tell", silent, sizeof silent);
        ck_assert_str_eq(silent, "");
        dlt_comm_free(c);
        return;
    }
    dlt_comm_set_timeout(c, 10);
    MPI_Request req;
    if (r == 1) {
        dlt_comm_set_where(c, 3, "forward");
        dlt_comm_notify_failure(c, "rank 1: bad batch", silent, sizeof silent);
        ck_assert_msg(silent[0] == '\0', "silent ranks: %s", silent);
        /* now join the barrier the others are stuck in, so all can clean up */
        ck_assert_int_eq(MPI_Ibarrier(dlt_comm_mpi(c), &req), MPI_SUCCESS);
    } else {
        ck_assert_int_eq(MPI_Ibarrier(dlt_comm_mpi(c), &req), MPI_SUCCESS);
        double t0 = now_s();
        dlt_status st = dlt_comm_wait(c, &req, "allreduce");
        ck_assert_int_eq(st, DLT_ERR_COMM);
        const char *m = dlt_last_error();
        ck_assert_msg(strstr(m, "rank 1 failed") && strstr(m, "step 3, phase forward") && strstr(m, ": bad batch") &&
                          !strstr(m, "rank 1: bad"),
                      "message: %s", m);
        ck_assert_msg(now_s() - t0 < 5, "the notice took %.1f s", now_s() - t0);
        char msg[64];
        snprintf(msg, sizeof msg, "rank %d: rank 1 failed", r);
        dlt_comm_notify_failure(c, msg, silent, sizeof silent);
        ck_assert_msg(silent[0] == '\0', "silent ranks: %s", silent);
    }
    dlt_comm_set_timeout(c, 10);
    ck_assert_int_eq(dlt_comm_wait(c, &req, "barrier"), DLT_OK);
    dlt_comm_free(c);
}
END_TEST

static Suite *guard_suite(void)
{
    Suite *s = suite_create("guard");
    TCase *tc = tcase_create("mpi");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_timeout_then_complete);
    tcase_add_test(tc, test_notice_ends_wait);
    suite_add_tcase(s, tc);
    return s;
}

int main(int argc, char **argv)
{
    return tu_run_mpi(&argc, &argv, MPI_THREAD_FUNNELED, guard_suite());
}
