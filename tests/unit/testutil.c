/* See testutil.h. Failures abort via Check's ck_abort_msg. */
#include "tests/unit/testutil.h"

#include <check.h>
#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

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
