/* See testutil.h. Failures abort via Check's ck_abort_msg. */
#include "tests/unit/testutil.h"

#include <check.h>
#include <hdf5.h>
#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>

#include "core/backend.h"
#include "core/rng.h"

const char *tu_ref_path(const char *name, char *buf, size_t len)
{
    const char *dir = getenv("DLT_REF_DIR");
    snprintf(buf, len, "%s/%s", dir ? dir : "build/ref", name);
    return buf;
}

float *tu_read_f32(const char *path, const char *dset, size_t *n, int64_t *dims, int *ndim)
{
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    ck_assert_msg(f >= 0, "cannot open reference file %s (run the tests/torch generators)", path);
    hid_t d = H5Dopen2(f, dset, H5P_DEFAULT);
    ck_assert_msg(d >= 0, "%s: no dataset %s", path, dset);
    hid_t sp = H5Dget_space(d);
    hsize_t hd[8];
    int nd = H5Sget_simple_extent_dims(sp, hd, NULL);
    size_t count = 1;
    for (int i = 0; i < nd; i++) {
        count *= hd[i];
        if (dims) dims[i] = (int64_t)hd[i];
    }
    if (ndim) *ndim = nd;
    float *buf = malloc((count ? count : 1) * sizeof *buf);
    ck_assert(buf != NULL);
    ck_assert(H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) >= 0);
    H5Sclose(sp);
    H5Dclose(d);
    H5Fclose(f);
    *n = count;
    return buf;
}

double tu_read_attr(const char *path, const char *attr)
{
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    ck_assert_msg(f >= 0, "cannot open %s", path);
    ck_assert_msg(H5Aexists(f, attr) > 0, "%s: no attribute %s", path, attr);
    hid_t a = H5Aopen(f, attr, H5P_DEFAULT);
    double v = 0;
    ck_assert(H5Aread(a, H5T_NATIVE_DOUBLE, &v) >= 0);
    H5Aclose(a);
    H5Fclose(f);
    return v;
}

int tu_has(const char *path, const char *dset)
{
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) return 0;
    int r = H5Lexists(f, dset, H5P_DEFAULT) > 0;
    H5Fclose(f);
    return r;
}

double tu_max_rel_err(const float *a, const float *b, size_t n)
{
    double m = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]) / fmax(1.0, fabs((double)b[i]));
        if (!(d <= m)) m = d; /* NaN propagates as a failure */
    }
    return m;
}

void tu_fill_uniform(float *x, size_t n, uint64_t seed, float lo, float hi)
{
    dlt_rng r = dlt_rng_make(seed);
    for (size_t i = 0; i < n; i++) x[i] = lo + (hi - lo) * (float)dlt_rng_uniform(&r);
}

void tu_fd_check(dlt_backend *be, tu_objective_fn f, void *user, float *t, size_t n,
                 const float *ga, float eps, size_t max_count, uint64_t seed, const char *what)
{
    float *h = malloc(n * sizeof *h + 1);
    ck_assert(h != NULL);
    ck_assert_int_eq(be->download(be, h, t, n * sizeof *h), DLT_OK);
    dlt_rng r = dlt_rng_make(seed);
    size_t count = n < max_count ? n : max_count;
    for (size_t c = 0; c < count; c++) {
        size_t i = n <= max_count ? c : (size_t)dlt_rng_below(&r, n);
        float v = h[i], vp = v + eps, vm = v - eps;
        ck_assert_int_eq(be->upload(be, t + i, &vp, sizeof vp), DLT_OK);
        double fp = f(user);
        ck_assert_int_eq(be->upload(be, t + i, &vm, sizeof vm), DLT_OK);
        double fm = f(user);
        ck_assert_int_eq(be->upload(be, t + i, &v, sizeof v), DLT_OK);
        double num = (fp - fm) / ((double)vp - (double)vm);
        double err = fabs(num - ga[i]) / fmax(0.05, fabs(num));
        ck_assert_msg(err < 2e-2, "%s[%zu]: analytic %.6g numeric %.6g", what, i, (double)ga[i], num);
    }
    free(h);
}

int tu_run_mpi(int *argc, char ***argv, int thread_level, Suite *s)
{
    int provided = 0, rank = 0;
    MPI_Init_thread(argc, argv, thread_level, &provided);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    SRunner *sr = srunner_create(s);
    srunner_set_fork_status(sr, CK_NOFORK);
    srunner_run_all(sr, rank == 0 ? CK_NORMAL : CK_SILENT);
    int failed = srunner_ntests_failed(sr), total = 0;
    srunner_free(sr);
    MPI_Allreduce(&failed, &total, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    MPI_Finalize();
    return total != 0;
}
