/* Internal declarations of the CUDA backend (core/cuda/, built into
 * bin/libdltcuda.so).
 *
 * Host-side code that only calls libraries (backend creation, memory, cuBLAS
 * gemm, cuDNN convolution) is plain C compiled by gcc; only
 * the kernels are CUDA C++ (.cu), each file exposing C-linkage host functions
 * dlt_cuda_<op> that launch them. This header is therefore valid C11 and
 * C++17; it declares the private state shared by those files and the error
 * macros every foreign call goes through.
 *
 * Every op runs on the backend's one non-blocking stream, after making the
 * backend's GPU current (a prefetch thread may upload from another thread).
 * Kernel launches are checked with cudaGetLastError(); errors of kernels that
 * already ran surface at the next synchronising call (download, sumsq, sync)
 * with that call's name. */
#ifndef DLT_CUDA_INTERNAL_H
#define DLT_CUDA_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include <cublas_v2.h>
#include <cuda_runtime_api.h>
#include <cudnn.h>

#ifdef __cplusplus
extern "C" {
#endif

#include "core/backend.h"
#include "core/status.h"

/* Blocks used by the deterministic two-pass reductions (sumsq). */
#define DLT_CUDA_REDUCE_BLOCKS 1024

typedef struct dlt_cuda_conv_cache dlt_cuda_conv_cache; /* cuda_conv.c */
typedef struct dlt_cuda_lstm_cache dlt_cuda_lstm_cache; /* cuda_lstm.c */
typedef struct dlt_cuda_lt dlt_cuda_lt;                 /* cuda_lt.c */

/* Data errors found by kernels (a token id outside the vocabulary, a label
 * >= classes). A kernel cannot return a status and checking on the host
 * would need a sync per op, so the first offender is recorded in pinned,
 * device-mapped host memory and reported as DLT_ERR_INVALID by the next
 * call that synchronises anyway (download, sumsq, sync). */
typedef struct {
    int code;      /* 0 none, else one of DLT_CUDA_DATA_ERR_* */
    int index;     /* token or row */
    float value;   /* the offending id or label */
    int limit;     /* vocab or classes */
} dlt_cuda_data_err;

enum { DLT_CUDA_DATA_ERR_NONE, DLT_CUDA_DATA_ERR_EMBED_ID, DLT_CUDA_DATA_ERR_LABEL,
       DLT_CUDA_DATA_ERR_ROW };

/* GEMM precision (train.precision): what cuBLAS may round the fp32 operands
 * to inside a product; storage stays fp32 everywhere. */
typedef enum {
    DLT_CUDA_PREC_FP32,   /* TF32 tensor cores (10-bit mantissa), fp32 accumulate */
    DLT_CUDA_PREC_STRICT, /* plain fp32 FMA, no tensor cores (DLT_CUDA_STRICT_FP32=1) */
    DLT_CUDA_PREC_BF16,   /* bf16 tensor cores, fp32 accumulate */
    DLT_CUDA_PREC_FP16    /* fp16 tensor cores, fp32 accumulate */
} dlt_cuda_prec;

typedef struct {
    int device;                  /* CUDA ordinal */
    cudaStream_t stream;         /* every op of the backend runs here */
    cublasHandle_t cublas;
    cudnnHandle_t cudnn;
    double *reduce_partial;      /* (DLT_CUDA_REDUCE_BLOCKS + 1) device scratch for sumsq */
    double *reduce_host;         /* (1) pinned host result of sumsq */
    dlt_cuda_conv_cache *conv;   /* per-geometry cuDNN descriptors and algorithms */
    dlt_cuda_lstm_cache *lstm;   /* per-shape cuDNN RNN descriptors and sizes */
    struct cudaDeviceProp prop;
    dlt_cuda_prec prec;          /* GEMM compute precision, FP32 (TF32) at creation */
    void *scratch;               /* grown on demand (first step), freed by destroy */
    size_t scratch_bytes;
    dlt_cuda_data_err *data_err_host; /* pinned + mapped; see dlt_cuda_data_err */
    dlt_cuda_data_err *data_err_dev;  /* the same memory as seen by kernels */
    cudaStream_t copy_stream;    /* batch uploads (cuda_staging.c), beside `stream` */
    cudaEvent_t up_ready[DLT_UPLOAD_SLOTS];   /* on copy_stream: the slot's upload is done */
    cudaEvent_t up_release[DLT_UPLOAD_SLOTS]; /* on stream: the slot's last reader is done */
    dlt_cuda_lt *lt;             /* cuBLASLt handle and per-shape plans (cuda_lt.c) */
} dlt_cuda_impl;

static inline dlt_cuda_impl *dlt_cuda_of(dlt_backend *be) { return (dlt_cuda_impl *)be->impl; }

/* ---- error macros: return DLT_ERR_DEVICE naming the call, file and line ---- */
#define CUDA_CHECK(call)                                                             \
    do {                                                                             \
        cudaError_t cu_e_ = (call);                                                  \
        if (cu_e_ != cudaSuccess)                                                    \
            return dlt_error(DLT_ERR_DEVICE, __FILE__, __LINE__, "%s failed: %s (%s:%d)", \
                             #call, cudaGetErrorString(cu_e_), __FILE__, __LINE__);  \
    } while (0)

#define CUBLAS_CHECK(call)                                                           \
    do {                                                                             \
        cublasStatus_t cb_e_ = (call);                                               \
        if (cb_e_ != CUBLAS_STATUS_SUCCESS)                                          \
            return dlt_error(DLT_ERR_DEVICE, __FILE__, __LINE__, "%s failed: %s (%s:%d)", \
                             #call, cublasGetStatusString(cb_e_), __FILE__, __LINE__); \
    } while (0)

#define CUDNN_CHECK(call)                                                            \
    do {                                                                             \
        cudnnStatus_t cd_e_ = (call);                                                \
        if (cd_e_ != CUDNN_STATUS_SUCCESS)                                           \
            return dlt_error(DLT_ERR_DEVICE, __FILE__, __LINE__, "%s failed: %s (%s:%d)", \
                             #call, cudnnGetErrorString(cd_e_), __FILE__, __LINE__); \
    } while (0)

/* After a kernel launch: configuration errors are reported at once. */
#define KERNEL_CHECK(name)                                                           \
    do {                                                                             \
        cudaError_t kl_e_ = cudaGetLastError();                                      \
        if (kl_e_ != cudaSuccess)                                                    \
            return dlt_error(DLT_ERR_DEVICE, __FILE__, __LINE__,                     \
                             "launch of kernel %s failed: %s (%s:%d)", (name),       \
                             cudaGetErrorString(kl_e_), __FILE__, __LINE__);         \
    } while (0)

/* Makes the backend's GPU current for this thread. */
#define CUDA_ENTER(be) CUDA_CHECK(cudaSetDevice(dlt_cuda_of(be)->device))

/* Exported entry points (cuda_backend.c), found with dlsym by core/device.c;
 * see core/device.h for their contracts. */
dlt_status dlt_cuda_backend_create(int abi, int device_ordinal, dlt_backend **out);
const char *dlt_cuda_describe(const dlt_backend *be, char *buf, size_t len);

/* Stream and ordinal of a CUDA backend, for comm/nccl/ (same library).
 * Return NULL / -1 when be is not a CUDA backend. */
cudaStream_t dlt_cuda_stream(dlt_backend *be);
int dlt_cuda_device(dlt_backend *be);

/* Exported (DLT_CUDA_SET_PRECISION_SYMBOL in core/device.h): sets the GEMM
 * precision of a CUDA backend: "fp32" (TF32), "bf16", "fp16", or "auto"
 * (bf16). DLT_ERR_INVALID for other names or a non-CUDA backend. */
dlt_status dlt_cuda_set_precision(dlt_backend *be, const char *precision);

/* Device scratch of at least `bytes`, valid until the next call (stream
 * order makes reuse by consecutive ops safe). Grows with cudaMalloc after
 * draining the stream, which happens in the first step only. */
dlt_status dlt_cuda_scratch(dlt_backend *be, size_t bytes, void **out);

/* DLT_ERR_INVALID naming the first data error kernels recorded (and clears
 * it), else DLT_OK. Call only after the stream was synchronised. */
dlt_status dlt_cuda_data_error(dlt_backend *be);

/* Row-major strided-batched gemm in the backend's precision: for each of
 * `batch` products i, C_i = alpha op(A_i) op(B_i) + beta C_i with
 * X_i = X + i * sX (element strides). Same conventions as backend gemm. */
dlt_status dlt_cuda_gemm_batched(dlt_backend *be, int ta, int tb, int m, int n, int k,
                                 float alpha, const float *a, int lda, long long sa,
                                 const float *b, int ldb, long long sb, float beta, float *c,
                                 int ldc, long long sc, int batch);

/* ---- ops: each implements the backend.h entry of the same name ---- */

/* cuda_backend.c: gemm through cuBLAS (memory ops are static there) */
dlt_status dlt_cuda_gemm(dlt_backend *be, int ta, int tb, int m, int n, int k, float alpha,
                         const float *a, int lda, const float *b, int ldb, float beta, float *c,
                         int ldc);

/* cuda_elem.cu: elementwise, reductions, activations, dropout */
dlt_status dlt_cuda_fill(dlt_backend *be, float *x, size_t n, float v);
dlt_status dlt_cuda_axpy(dlt_backend *be, size_t n, float alpha, const float *x, float *y);
dlt_status dlt_cuda_scale(dlt_backend *be, size_t n, float alpha, float *x);
dlt_status dlt_cuda_sumsq(dlt_backend *be, size_t n, const float *x, double *out_host);
dlt_status dlt_cuda_bias_add(dlt_backend *be, int n, int c, int hw, const float *b, float *y);
dlt_status dlt_cuda_bias_grad(dlt_backend *be, int n, int c, int hw, const float *dy, float *db);
dlt_status dlt_cuda_add(dlt_backend *be, size_t n, const float *a, const float *b, float *y);
dlt_status dlt_cuda_mul_acc(dlt_backend *be, size_t n, const float *dy, const float *mask,
                            float *dx);
dlt_status dlt_cuda_act_fwd(dlt_backend *be, dlt_act act, size_t n, const float *x, float *y);
dlt_status dlt_cuda_act_bwd(dlt_backend *be, dlt_act act, size_t n, const float *x,
                            const float *y, const float *dy, float *dx);
dlt_status dlt_cuda_dropout_fwd(dlt_backend *be, size_t n, float p, uint64_t key, uint64_t first,
                                const float *x, float *y, float *mask);

/* cuda_loss.cu */
dlt_status dlt_cuda_softmax_xent_fwd(dlt_backend *be, int n, int k, const float *logits,
                                     const int32_t *labels, float *probs, float *loss,
                                     float *correct);
dlt_status dlt_cuda_softmax_xent_bwd(dlt_backend *be, int n, int k, const float *probs,
                                     const int32_t *labels, float scale, float *dlogits);
dlt_status dlt_cuda_mse_fwd(dlt_backend *be, int n, int k, const float *y, const float *t,
                            float *loss);
dlt_status dlt_cuda_mse_bwd(dlt_backend *be, int n, int k, const float *y, const float *t,
                            float scale, float *dy);
dlt_status dlt_cuda_onehot(dlt_backend *be, int n, int k, const int32_t *labels, float *t);

/* cuda_optim.cu */
dlt_status dlt_cuda_opt_update(dlt_backend *be, const dlt_opt_hparams *h, size_t n, float *w,
                               const float *g, float *s1, float *s2);

/* cuda_staging.c: pinned host memory and slot uploads on the copy stream */
dlt_status dlt_cuda_host_alloc(dlt_backend *be, size_t bytes, void **ptr);
void dlt_cuda_host_free(dlt_backend *be, void *ptr);
dlt_status dlt_cuda_upload_async(dlt_backend *be, int slot, void *dst, const void *src_host,
                                 size_t bytes);
dlt_status dlt_cuda_upload_wait(dlt_backend *be, int slot);
dlt_status dlt_cuda_upload_release(dlt_backend *be, int slot);
dlt_status dlt_cuda_upload_host_wait(dlt_backend *be, int slot);
/* Creates / releases the copy stream and slot events of impl. */
dlt_status dlt_cuda_staging_init(dlt_cuda_impl *impl);
void dlt_cuda_staging_free(dlt_cuda_impl *impl);

/* cuda_elem.cu (with sumsq): acc[0] += sum x, one deterministic block */
dlt_status dlt_cuda_sum_to(dlt_backend *be, size_t n, const float *x, double *acc);

/* cuda_pool.cu */
dlt_status dlt_cuda_pool2d_fwd(dlt_backend *be, dlt_pool_mode mode, const dlt_conv_geom *g,
                               const float *x, float *y);
dlt_status dlt_cuda_pool2d_bwd(dlt_backend *be, dlt_pool_mode mode, const dlt_conv_geom *g,
                               const float *x, const float *y, const float *dy, float *dx);

/* cuda_conv.c: convolution through cuDNN */
size_t dlt_cuda_conv2d_workspace(dlt_backend *be, const dlt_conv_geom *g);
dlt_status dlt_cuda_conv2d_fwd(dlt_backend *be, const dlt_conv_geom *g, const float *x,
                               const float *w, float *y, void *ws);
dlt_status dlt_cuda_conv2d_bwd_data(dlt_backend *be, const dlt_conv_geom *g, const float *dy,
                                    const float *w, float *dx, void *ws);
dlt_status dlt_cuda_conv2d_bwd_filter(dlt_backend *be, const dlt_conv_geom *g, const float *x,
                                      const float *dy, float *dw, void *ws);
/* Releases the convolution cache (called by destroy). */
void dlt_cuda_conv_free(dlt_cuda_impl *impl);

/* cuda_norm.cu: batch normalisation */
dlt_status dlt_cuda_bnorm_fwd_train(dlt_backend *be, int n, int c, int hw, float eps,
                                    float momentum, const float *x, const float *gamma,
                                    const float *beta, float *y, float *run_mean, float *run_var,
                                    float *save_mean, float *save_invstd);
dlt_status dlt_cuda_bnorm_fwd_eval(dlt_backend *be, int n, int c, int hw, float eps,
                                   const float *x, const float *gamma, const float *beta,
                                   const float *run_mean, const float *run_var, float *y);
dlt_status dlt_cuda_bnorm_bwd(dlt_backend *be, int n, int c, int hw, const float *x,
                              const float *dy, const float *gamma, const float *save_mean,
                              const float *save_invstd, float *dx, float *dgamma, float *dbeta);

/* cuda_seq.cu: embedding, layer norm, per-token cross-entropy */
dlt_status dlt_cuda_embedding_fwd(dlt_backend *be, int t, int dim, int vocab, const float *ids,
                                  const float *w, float *y);
dlt_status dlt_cuda_embedding_bwd(dlt_backend *be, int t, int dim, int vocab, const float *ids,
                                  const float *dy, int padding_idx, float *dw);
dlt_status dlt_cuda_fill_rows(dlt_backend *be, int k, int dim, int rows, const float *idx,
                              float v, float *x);
dlt_status dlt_cuda_target_rows(dlt_backend *be, int rows, const int32_t *labels, float *idx);
dlt_status dlt_cuda_layernorm_fwd(dlt_backend *be, int rows, int dim, float eps, const float *x,
                                  const float *gamma, const float *beta, float *y, float *mean,
                                  float *rstd);
dlt_status dlt_cuda_layernorm_bwd(dlt_backend *be, int rows, int dim, const float *x,
                                  const float *dy, const float *gamma, const float *mean,
                                  const float *rstd, float *dx, float *dgamma, float *dbeta);
dlt_status dlt_cuda_softmax_xent_seq_fwd(dlt_backend *be, int n, int len, int k,
                                         const float *logits, const int32_t *labels, float *loss,
                                         float *correct, float *count);
dlt_status dlt_cuda_softmax_xent_seq_bwd(dlt_backend *be, int rows, int k, const float *logits,
                                         const int32_t *labels, float scale, float *dlogits);

/* cuda_attn.cu: multi-head attention (cuBLAS batched gemms + row kernels) */
dlt_status dlt_cuda_attention_fwd(dlt_backend *be, int n, int len, int heads, int dh,
                                  const float *qkv, const float *tokens, float p, uint64_t key,
                                  uint64_t first, float *probs, float *out, float *ws);
dlt_status dlt_cuda_attention_bwd(dlt_backend *be, int n, int len, int heads, int dh,
                                  const float *qkv, float p, uint64_t key, uint64_t first,
                                  const float *probs, const float *dout, float *dqkv, float *ws);

/* cuda_attn_flash.cu: memory-light (flash-style) attention, own kernels */
dlt_status dlt_cuda_attention_fwd_lse(dlt_backend *be, int n, int len, int heads, int dh,
                                      const float *qkv, const float *tokens, float p,
                                      uint64_t key, uint64_t first, float *out, float *lse,
                                      float *ws);
dlt_status dlt_cuda_attention_bwd_lse(dlt_backend *be, int n, int len, int heads, int dh,
                                      const float *qkv, const float *tokens, float p,
                                      uint64_t key, uint64_t first, const float *out,
                                      const float *lse, const float *dout, float *dqkv,
                                      float *ws);

/* cuda_lstm.c: LSTM layer through cuDNN's RNN API */
dlt_status dlt_cuda_lstm_sizes(dlt_backend *be, int n, int len, int din, int h,
                               size_t *saved_floats, size_t *ws_floats);
dlt_status dlt_cuda_lstm_fwd(dlt_backend *be, int train, int n, int len, int din, int h,
                             const float *x, const float *w_ih, const float *w_hh,
                             const float *b_ih, const float *b_hh, const float *h0,
                             const float *c0, float *y, float *h_last, float *c_last,
                             float *saved, float *ws);
dlt_status dlt_cuda_lstm_bwd(dlt_backend *be, int n, int len, int din, int h, const float *x,
                             const float *w_ih, const float *w_hh, const float *h0,
                             const float *c0, const float *y, float *saved, const float *dy,
                             float *dx, float *dw_ih, float *dw_hh, float *db_ih, float *db_hh,
                             float *ws);
/* Releases the LSTM descriptor cache (called by destroy). */
void dlt_cuda_lstm_free(dlt_cuda_impl *impl);

/* cuda_lt.c: fully connected layers through cuBLASLt (bias epilogues) */
dlt_status dlt_cuda_linear_fwd(dlt_backend *be, int rows, int in, int out, const float *x,
                               const float *w, const float *b, float *y);
dlt_status dlt_cuda_linear_bwd_w(dlt_backend *be, int rows, int in, int out, const float *x,
                                 const float *dy, float *dw, float *db);
/* Creates the cuBLASLt handle and the empty plan table of impl (needs
 * impl->prop); releases them (no-op when absent). */
dlt_status dlt_cuda_lt_init(dlt_cuda_impl *impl);
void dlt_cuda_lt_free(dlt_cuda_impl *impl);
/* Exported for the GPU suite (found with dlsym, symbol "dlt_cuda_lt_stats"):
 * how many linear_fwd / linear_bwd_w calls with a bias ran with the bias
 * fused by cuBLASLt, and how many as gemm + bias kernel (no algorithm for
 * the epilogue, or DLT_CUDA_LT=0). Returns 0, or -1 if be is not a CUDA
 * backend. */
int dlt_cuda_lt_stats(dlt_backend *be, long long *fused, long long *unfused);

#ifdef __cplusplus
}
#endif

#endif
