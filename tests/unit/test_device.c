/* Tests of core/device.c: device names, the CPU fallback of "auto", and the
 * one-line errors of "cuda" when the CUDA library is missing or unloadable.
 * The library path is steered with DLT_CUDA_LIB. (Loading the real library
 * and the "no GPU is visible" path are exercised by tests/gpu/test_cuda_ops,
 * which `make test-gpu` runs.) */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/device.h"
#include "core/status.h"

START_TEST(test_cpu)
{
    dlt_backend *be = NULL;
    ck_assert_int_eq(dlt_device_open("cpu", 0, &be), DLT_OK);
    ck_assert_ptr_nonnull(be);
    ck_assert_str_eq(be->name, "cpu");
    ck_assert_int_eq(be->abi, DLT_BACKEND_ABI);
    char buf[64];
    ck_assert(strncmp(dlt_device_describe(be, buf, sizeof buf), "cpu (", 5) == 0);
    be->destroy(be);
}
END_TEST

START_TEST(test_unknown_name)
{
    dlt_backend *be = (dlt_backend *)1;
    ck_assert_int_eq(dlt_device_open("tpu", 0, &be), DLT_ERR_INVALID);
    ck_assert_ptr_null(be);
    ck_assert_ptr_nonnull(strstr(dlt_last_error(), "unknown device 'tpu'"));
}
END_TEST

START_TEST(test_cuda_missing_library)
{
    setenv("DLT_CUDA_LIB", "/nonexistent/libdltcuda.so", 1);
    dlt_backend *be = NULL;
    ck_assert_int_eq(dlt_device_open("cuda", 0, &be), DLT_ERR_DEVICE);
    ck_assert_ptr_null(be);
    ck_assert_str_eq(dlt_last_error(), "device: cuda requested but /nonexistent/libdltcuda.so "
                                       "was not built (make CUDA=1)");
    unsetenv("DLT_CUDA_LIB");
}
END_TEST

START_TEST(test_auto_falls_back_to_cpu)
{
    setenv("DLT_CUDA_LIB", "/nonexistent/libdltcuda.so", 1);
    dlt_backend *be = NULL;
    dlt_clear_error();
    ck_assert_int_eq(dlt_device_open("auto", 3, &be), DLT_OK);
    ck_assert_str_eq(be->name, "cpu");
    ck_assert_str_eq(dlt_last_error(), ""); /* silently */
    be->destroy(be);
    unsetenv("DLT_CUDA_LIB");
}
END_TEST

START_TEST(test_unloadable_library)
{
    /* a file that exists but is no shared object */
    char path[] = "/tmp/dlt_test_device_XXXXXX";
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    FILE *f = fdopen(fd, "w");
    fputs("not an ELF file\n", f);
    fclose(f);
    setenv("DLT_CUDA_LIB", path, 1);

    dlt_backend *be = NULL;
    ck_assert_int_eq(dlt_device_open("cuda", 0, &be), DLT_ERR_DEVICE);
    ck_assert_ptr_null(be);
    ck_assert_ptr_nonnull(strstr(dlt_last_error(), "cannot be loaded"));
    ck_assert_ptr_null(strchr(dlt_last_error(), '\n')); /* one line */

    ck_assert_int_eq(dlt_device_open("auto", 0, &be), DLT_OK);
    ck_assert_str_eq(be->name, "cpu");
    be->destroy(be);
    unsetenv("DLT_CUDA_LIB");
    remove(path);
}
END_TEST

static Suite *device_suite(void)
{
    Suite *s = suite_create("device");
    TCase *tc = tcase_create("open");
    tcase_add_test(tc, test_cpu);
    tcase_add_test(tc, test_unknown_name);
    tcase_add_test(tc, test_cuda_missing_library);
    tcase_add_test(tc, test_auto_falls_back_to_cpu);
    tcase_add_test(tc, test_unloadable_library);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(device_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed != 0;
}
