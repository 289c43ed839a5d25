/* Internal declarations of the CPU backend's ops (the .c files of core/cpu/).
 *
 * Each function implements the backend.h table entry of the same name
 * (dlt_cpu_<op> <-> be-><op>); the contracts are in backend.h and are not
 * repeated here. cpu_backend.c puts them in the table; nothing outside
 * core/cpu/ includes this header, everything else goes through the table.
 *
 * Threading: OpenBLAS (the pthreads build) runs its own thread pool inside
 * gemm, and OpenMP has another. By default both pools spin for a while after
 * their work before they sleep, so when both have several threads each
 * steals the cores the other one is computing on: measured on 2 cores, a
 * convolution ran 10x slower with OMP_NUM_THREADS=2 and
 * OPENBLAS_NUM_THREADS=2 than with either at 1. So the ops use OpenMP only
 * for loops large enough (DLT_CPU_PAR_MIN elements) to pay for waking
 * threads, and only when that cannot fight OpenBLAS: OpenBLAS is
 * single-threaded (the usual case under mpirun, one core per rank), or
 * OMP_WAIT_POLICY=passive makes idle OpenMP threads sleep at once (set it
 * when a rank owns several cores). Otherwise the loops run serially and the
 * gemms get all cores. Either way results do not depend on the thread
 * count: parallel loops write disjoint outputs and reduce in fixed order. */
#ifndef DLT_CPU_OPS_H
#define DLT_CPU_OPS_H

#include <cblas.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <strings.h>

#include "core/backend.h"

/* Element count above which elementwise, pooling and normalisation loops
 * may use OpenMP. */
#define DLT_CPU_PAR_MIN 32768

/* 1 if a loop over `work` elements should run on OpenMP threads (see the
 * threading note above). The environment is read only for large loops,
 * where a getenv is negligible. */
static inline int dlt_cpu_par(size_t work)
{
    if (work <= DLT_CPU_PAR_MIN) return 0;
    if (openblas_get_num_threads() <= 1) return 1;
    const char *wp = getenv("OMP_WAIT_POLICY");
    return wp && strcasecmp(wp, "passive") == 0;
}

/* ---- memory (cpu_backend.c) ---- */
dlt_status dlt_cpu_alloc(dlt_backend *be, size_t bytes, void **ptr);
void dlt_cpu_free(dlt_backend *be, void *ptr);
dlt_status dlt_cpu_upload(dlt_backend *be, void *dst, const void *src_host, size_t bytes);
dlt_status dlt_cpu_download(dlt_backend *be, void *dst_host, const void *src, size_t bytes);
dlt_status dlt_cpu_copy(dlt_backend *be, void *dst, const void *src, size_t bytes);
dlt_status dlt_cpu_sync(dlt_backend *be);

/* ---- input staging and on-device sums (cpu_staging.c) ---- */
dlt_status dlt_cpu_host_alloc(dlt_backend *be, size_t bytes, void **ptr);
void dlt_cpu_host_free(dlt_backend *be, void *ptr);
dlt_status dlt_cpu_upload_async(dlt_backend *be, int slot, void *dst, const void *src_host,
                                size_t bytes);
dlt_status dlt_cpu_upload_slot(dlt_backend *be, int slot); /* wait, release, host_wait */
dlt_status dlt_cpu_sum_to(dlt_backend *be, size_t n, const float *x, double *acc);

/* ---- BLAS-like (cpu_blas.c) ---- */
dlt_status dlt_cpu_fill(dlt_backend *be, float *x, size_t n, float v);
dlt_status dlt_cpu_gemm(dlt_backend *be, int ta, int tb, int m, int n, int k, float alpha,
                        const float *a, int lda, const float *b, int ldb, float beta, float *c,
                        int ldc);
dlt_status dlt_cpu_axpy(dlt_backend *be, size_t n, float alpha, const float *x, float *y);
dlt_status dlt_cpu_scale(dlt_backend *be, size_t n, float alpha, float *x);
dlt_status dlt_cpu_sumsq(dlt_backend *be, size_t n, const float *x, double *out_host);
dlt_status dlt_cpu_bias_add(dlt_backend *be, int n, int c, int hw, const float *b, float *y);
dlt_status dlt_cpu_bias_grad(dlt_backend *be, int n, int c, int hw, const float *dy, float *db);
dlt_status dlt_cpu_add(dlt_backend *be, size_t n, const float *a, const float *b, float *y);
dlt_status dlt_cpu_mul_acc(dlt_backend *be, size_t n, const float *dy, const float *mask,
                           float *dx);

/* ---- fully connected (cpu_linear.c) ---- */
dlt_status dlt_cpu_linear_fwd(dlt_backend *be, int rows, int in, int out, const float *x,
                              const float *w, const float *b, float *y);
dlt_status dlt_cpu_linear_bwd_w(dlt_backend *be, int rows, int in, int out, const float *x,
                                const float *dy, float *dw, float *db);

/* ---- convolution (cpu_conv.c) ---- */
size_t dlt_cpu_conv2d_workspace(dlt_backend *be, const dlt_conv_geom *g);
dlt_status dlt_cpu_conv2d_fwd(dlt_backend *be, const dlt_conv_geom *g, const float *x,
                              const float *w, float *y, void *ws);
dlt_status dlt_cpu_conv2d_bwd_data(dlt_backend *be, const dlt_conv_geom *g, const float *dy,
                                   const float *w, float *dx, void *ws);
dlt_status dlt_cpu_conv2d_bwd_filter(dlt_backend *be, const dlt_conv_geom *g, const float *x,
                                     const float *dy, float *dw, void *ws);

/* ---- pooling (cpu_pool.c) ---- */
dlt_status dlt_cpu_pool2d_fwd(dlt_backend *be, dlt_pool_mode mode, const dlt_conv_geom *g,
                              const float *x, float *y);
dlt_status dlt_cpu_pool2d_bwd(dlt_backend *be, dlt_pool_mode mode, const dlt_conv_geom *g,
                              const float *x, const float *y, const float *dy, float *dx);

/* ---- batch normalisation (cpu_norm.c) ---- */
dlt_status dlt_cpu_bnorm_fwd_train(dlt_backend *be, int n, int c, int hw, float eps,
                                   float momentum, const float *x, const float *gamma,
                                   const float *beta, float *y, float *run_mean, float *run_var,
                                   float *save_mean, float *save_invstd);
dlt_status dlt_cpu_bnorm_fwd_eval(dlt_backend *be, int n, int c, int hw, float eps,
                                  const float *x, const float *gamma, const float *beta,
                                  const float *run_mean, const float *run_var, float *y);
dlt_status dlt_cpu_bnorm_bwd(dlt_backend *be, int n, int c, int hw, const float *x,
                             const float *dy, const float *gamma, const float *save_mean,
                             const float *save_invstd, float *dx, float *dgamma, float *dbeta);

/* ---- activations and dropout (cpu_act.c) ---- */
dlt_status dlt_cpu_act_fwd(dlt_backend *be, dlt_act act, size_t n, const float *x, float *y);
dlt_status dlt_cpu_act_bwd(dlt_backend *be, dlt_act act, size_t n, const float *x,
                           const float *y, const float *dy, float *dx);
dlt_status dlt_cpu_dropout_fwd(dlt_backend *be, size_t n, float p, uint64_t key, uint64_t first,
                               const float *x, float *y, float *mask);

/* ---- losses (cpu_loss.c) ---- */
dlt_status dlt_cpu_softmax_xent_fwd(dlt_backend *be, int n, int k, const float *logits,
                                    const int32_t *labels, float *probs, float *loss,
                                    float *correct);
dlt_status dlt_cpu_softmax_xent_bwd(dlt_backend *be, int n, int k, const float *probs,
                                    const int32_t *labels, float scale, float *dlogits);
dlt_status dlt_cpu_mse_fwd(dlt_backend *be, int n, int k, const float *y, const float *t,
                           float *loss);
dlt_status dlt_cpu_mse_bwd(dlt_backend *be, int n, int k, const float *y, const float *t,
                           float scale, float *dy);
dlt_status dlt_cpu_onehot(dlt_backend *be, int n, int k, const int32_t *labels, float *t);

/* ---- optimizer (cpu_optim.c) ---- */
dlt_status dlt_cpu_opt_update(dlt_backend *be, const dlt_opt_hparams *h, size_t n, float *w,
                              const float *g, float *s1, float *s2);

#endif
