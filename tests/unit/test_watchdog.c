/* Tests of comm/watchdog.c: an armed deadline that passes ends the process
 * with DLT_EXIT_WATCHDOG (an exit test: Check forks, the child must die
 * with that code); a disarmed or re-armed one does not fire early; stop
 * joins cleanly while armed. */
#include <check.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "comm/comm.h"
#include "comm/watchdog.h"

static void sleep_s(double s)
{
    struct timespec ts = { (time_t)s, (long)((s - (double)(time_t)s) * 1e9) };
    while (nanosleep(&ts, &ts) != 0) {}
}

START_TEST(test_fires)
{
    dlt_watchdog *w = NULL;
    ck_assert_int_eq(dlt_watchdog_start(&w), DLT_OK);
    dlt_watchdog_arm(w, 0.1, "a section that hangs");
    sleep_s(5); /* the watchdog must end us long before this returns */
    exit(0);
}
END_TEST

START_TEST(test_disarm)
{
    dlt_watchdog *w = NULL;
    ck_assert_int_eq(dlt_watchdog_start(&w), DLT_OK);
    dlt_watchdog_arm(w, 0.1, "a section that finishes");
    dlt_watchdog_disarm(w);
    sleep_s(0.3);
    /* re-arming moves the deadline: 0.1 s, then 1 s from now */
    dlt_watchdog_arm(w, 0.1, "first");
    dlt_watchdog_arm(w, 1.0, "second");
    sleep_s(0.3);
    dlt_watchdog_stop(w); /* while armed: no firing, clean join */
    sleep_s(1.0);
    exit(0);
}
END_TEST

static Suite *watchdog_suite(void)
{
    Suite *s = suite_create("watchdog");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 10);
    tcase_add_exit_test(tc, test_fires, DLT_EXIT_WATCHDOG);
    tcase_add_exit_test(tc, test_disarm, 0);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(watchdog_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed != 0;
}
