/* Tests of launcher/fault.c: the DLTRAIN_FAULT grammar, and that an error
 * fault fires only on its rank and step (kill and hang are exercised by
 * tests/integration/test_failure.sh, where a real launcher watches them). */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "launcher/fault.h"

START_TEST(test_parse_ok)
{
    dlt_fault f;
    ck_assert_int_eq(dlt_fault_parse("rank:1,step:3,kill", &f), DLT_OK);
    ck_assert_int_eq(f.kind, DLT_FAULT_KILL);
    ck_assert_int_eq(f.rank, 1);
    ck_assert_int_eq(f.step, 3);
    ck_assert_int_eq(dlt_fault_parse("hang,step:0,rank:2", &f), DLT_OK);
    ck_assert_int_eq(f.kind, DLT_FAULT_HANG);
    ck_assert_int_eq(f.rank, 2);
    ck_assert_int_eq(f.step, 0);
    ck_assert_int_eq(dlt_fault_parse("rank:0,step:12,error", &f), DLT_OK);
    ck_assert_int_eq(f.kind, DLT_FAULT_ERROR);
    ck_assert_int_eq(dlt_fault_parse("rank:0,step:1,crash", &f), DLT_OK);
    ck_assert_int_eq(f.kind, DLT_FAULT_CRASH);
    ck_assert_int_eq(dlt_fault_parse("rank:1,step:2,nan", &f), DLT_OK);
    ck_assert_int_eq(f.kind, DLT_FAULT_NAN);
    ck_assert_int_eq(dlt_fault_parse("", &f), DLT_OK);
    ck_assert_int_eq(f.kind, DLT_FAULT_NONE);
    ck_assert_int_eq(dlt_fault_parse(NULL, &f), DLT_OK);
    ck_assert_int_eq(f.kind, DLT_FAULT_NONE);
}
END_TEST

START_TEST(test_parse_bad)
{
    dlt_fault f;
    const char *bad[] = { "rank:1,step:3", "rank:1,kill", "step:2,kill", "rank:x,step:1,kill", "rank:1,step:-1,kill",
                          "rank:1,step:1,explode", "rank:1,step:1,kil", "rank:1,step:1,kill,zzz" };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ck_assert_msg(dlt_fault_parse(bad[i], &f) == DLT_ERR_CONFIG, "'%s' must be rejected", bad[i]);
        ck_assert_msg(strstr(dlt_last_error(), "DLTRAIN_FAULT") != NULL, "message: %s", dlt_last_error());
        ck_assert_int_eq(f.kind, DLT_FAULT_NONE);
    }
}
END_TEST

START_TEST(test_error_fires_only_there)
{
    dlt_fault f;
    setenv("DLTRAIN_FAULT", "rank:2,step:5,error", 1);
    ck_assert_int_eq(dlt_fault_from_env(&f), DLT_OK);
    unsetenv("DLTRAIN_FAULT");
    ck_assert_int_eq(dlt_fault_maybe(&f, 2, 4), DLT_OK);
    ck_assert_int_eq(dlt_fault_maybe(&f, 1, 5), DLT_OK);
    ck_assert_int_eq(dlt_fault_maybe(&f, 2, 5), DLT_ERR_INVALID);
    ck_assert_ptr_nonnull(strstr(dlt_last_error(), "injected fault"));
}
END_TEST

/* nan is acted out by the trainer: dlt_fault_maybe lets it pass, and
 * dlt_fault_nan says when, on its rank and step only. */
START_TEST(test_nan_only_there)
{
    dlt_fault f;
    ck_assert_int_eq(dlt_fault_parse("rank:1,step:2,nan", &f), DLT_OK);
    ck_assert_int_eq(dlt_fault_maybe(&f, 1, 2), DLT_OK);
    ck_assert_int_eq(dlt_fault_nan(&f, 1, 2), 1);
    ck_assert_int_eq(dlt_fault_nan(&f, 0, 2), 0);
    ck_assert_int_eq(dlt_fault_nan(&f, 1, 3), 0);
    ck_assert_int_eq(dlt_fault_parse("rank:1,step:2,error", &f), DLT_OK);
    ck_assert_int_eq(dlt_fault_nan(&f, 1, 2), 0);
}
END_TEST

static Suite *fault_suite(void)
{
    Suite *s = suite_create("fault");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_parse_ok);
    tcase_add_test(tc, test_parse_bad);
    tcase_add_test(tc, test_error_fires_only_there);
    tcase_add_test(tc, test_nan_only_there);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(fault_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed != 0;
}
