/* Shared helpers for the Check suites: reference files written by PyTorch
 * (tests/torch/gen_*.py, HDF5 via h5py into $DLT_REF_DIR) and comparisons. */
#ifndef DLT_TESTUTIL_H
#define DLT_TESTUTIL_H

#include <stddef.h>
#include <stdint.h>

/* Path of a reference file: $DLT_REF_DIR/name (default build/ref/name). */
const char *tu_ref_path(const char *name, char *buf, size_t len);

/* Reads float dataset `dset` of file `path` into a malloc'd array (any float
 * or integer dtype is converted to float); *n gets the element count and
 * dims (up to 8) its shape if not NULL. Aborts the test on failure. */
float *tu_read_f32(const char *path, const char *dset, size_t *n, int64_t *dims, int *ndim);
/* Reads a scalar attribute (float or int) of the root group; aborts if absent. */
double tu_read_attr(const char *path, const char *attr);
/* 1 if the file has dataset dset. */
int tu_has(const char *path, const char *dset);

/* Max over i of |a-b| / max(1, |b|), i.e. absolute near 0, relative above 1. */
double tu_max_rel_err(const float *a, const float *b, size_t n);

/* Fills x with U(lo, hi) from a seeded generator. */
void tu_fill_uniform(float *x, size_t n, uint64_t seed, float lo, float hi);

/* Finite-difference check of an objective f(user) against the analytic
 * gradient ga (host, n floats) of the backend tensor t (n floats): central
 * differences with step eps at every element when n <= max_count, else at
 * max_count elements drawn with `seed`; asserts
 * |numeric - analytic| / max(0.05, |numeric|) < 2e-2, naming `what`. t is
 * restored after each element. */
typedef double (*tu_objective_fn)(void *user);
struct dlt_backend;
void tu_fd_check(struct dlt_backend *be, tu_objective_fn f, void *user, float *t, size_t n,
                 const float *ga, float eps, size_t max_count, uint64_t seed, const char *what);

/* Runs suite s on every MPI rank the Check-under-MPI way: MPI_Init_thread at
 * `thread_level`, no fork, output from rank 0 only, and the failure count
 * summed over ranks so all exit alike. Finalises MPI; returns main's code. */
struct Suite;
int tu_run_mpi(int *argc, char ***argv, int thread_level, struct Suite *s);

#endif
