/* The CUDA backend: creation, the function table, memory, and gemm.
 *
 * This file is the entry point of bin/libdltcuda.so. dlt_cuda_backend_create
 * is looked up with dlsym by core/device.c; it finds the GPU (local rank
 * modulo the visible devices), and creates one non-blocking stream that
 * every op of the backend is queued on, plus the cuBLAS and cuDNN handles
 * bound to it. A GPU-less machine is recognised here, with the only call
 * that is safe without a driver (cudaGetDeviceCount), and reported as
 * DLT_ERR_UNSUPPORTED so that device "auto" falls back to the CPU.
 *
 * Memory follows the table's contract: alloc returns zeroed memory (the
 * memset has finished, so every stream sees zeros), upload returns
 * when the host buffer may be reused, download returns when the host buffer
 * holds the data; everything else is asynchronous until sync().
 *
 * gemm maps row-major to cuBLAS's column-major: a row-major matrix is the
 * column-major view of its transpose, so C = op(A) op(B) is computed as
 * C^T = op(B)^T op(A)^T by swapping the operands (and m with n). Every gemm
 * (plain and strided-batched, used by attention and LSTM too) goes through
 * cublasGemmStridedBatchedEx with fp32 A, B, C and a compute type chosen by
 * train.precision (dlt_cuda_set_precision): TF32 tensor cores for fp32 (as
 * PyTorch's allow_tf32), bf16 or fp16 tensor cores otherwise; cuBLAS rounds
 * the inputs inside the kernel and accumulates in fp32, so no bf16 copies of
 * activations or weights exist and the fp32 weights are the master copy.
 *
 * Fully connected layers (linear_fwd, linear_bwd_w) go through cuBLASLt
 * instead, with the bias fused into the product (cuda_lt.c).
 *
 * Data errors found by kernels (bad token ids, labels) are recorded in a
 * mapped host word and reported by the next download/sumsq/sync. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/cuda/cuda_internal.h"
#include "core/device.h"

static void cuda_destroy(dlt_backend *be);

/* Smallest allocation, so that every successful alloc is a distinct pointer. */
#define CUDA_MIN_ALLOC 256

/* ---- memory ---- */

/* Zeroed device memory of `bytes` (at least CUDA_MIN_ALLOC). Out of memory is
 * DLT_ERR_NOMEM with the free/total memory of the GPU. */
static dlt_status cuda_alloc(dlt_backend *be, size_t bytes, void **ptr)
{
    if (!ptr) return DLT_ERR(DLT_ERR_INVALID, "cuda alloc: NULL output pointer");
    *ptr = NULL;
    CUDA_ENTER(be);
    size_t sz = bytes < CUDA_MIN_ALLOC ? CUDA_MIN_ALLOC : bytes;
    void *p = NULL;
    cudaError_t e = cudaMalloc(&p, sz);
    if (e == cudaErrorMemoryAllocation) {
        cudaGetLastError(); /* out of memory is not sticky: clear it */
        size_t free_b = 0, total_b = 0;
        cudaMemGetInfo(&free_b, &total_b);
        return DLT_ERR(DLT_ERR_NOMEM,
                       "cuda alloc: out of GPU memory allocating %.1f MiB (%.1f of %.1f MiB free)",
                       (double)bytes / 1048576.0, (double)free_b / 1048576.0,
                       (double)total_b / 1048576.0);
    }
    if (e != cudaSuccess)
        return DLT_ERR(DLT_ERR_DEVICE, "cudaMalloc(%zu bytes) failed: %s (%s:%d)", sz,
                       cudaGetErrorString(e), __FILE__, __LINE__);
    e = cudaMemsetAsync(p, 0, sz, dlt_cuda_of(be)->stream);
    /* Wait for the zeros: the copy stream (upload_async into a fresh staging
     * buffer) is not ordered after this stream, so an unfinished memset could
     * overwrite the first batch. alloc is a build-time call, never per step. */
    if (e == cudaSuccess) e = cudaStreamSynchronize(dlt_cuda_of(be)->stream);
    if (e != cudaSuccess) {
        cudaFree(p);
        return DLT_ERR(DLT_ERR_DEVICE, "zeroing %zu bytes failed: %s (%s:%d)", sz,
                       cudaGetErrorString(e), __FILE__, __LINE__);
    }
    *ptr = p;
    return DLT_OK;
}

/* Frees device memory (NULL is a no-op). cudaFree waits for the device. */
static void cuda_free(dlt_backend *be, void *ptr)
{
    if (!ptr) return;
    cudaSetDevice(dlt_cuda_of(be)->device);
    cudaFree(ptr);
}

/* Host -> device. Pageable sources are staged by CUDA before the call
 * returns; a pinned source would be read later, so then the stream is
 * drained to keep the "src may be reused" promise. */
static dlt_status cuda_upload(dlt_backend *be, void *dst, const void *src_host, size_t bytes)
{
    if (!bytes) return DLT_OK;
    CUDA_ENTER(be);
    cudaStream_t s = dlt_cuda_of(be)->stream;
    CUDA_CHECK(cudaMemcpyAsync(dst, src_host, bytes, cudaMemcpyHostToDevice, s));
    struct cudaPointerAttributes attr;
    if (cudaPointerGetAttributes(&attr, src_host) == cudaSuccess &&
        attr.type == cudaMemoryTypeHost)
        CUDA_CHECK(cudaStreamSynchronize(s));
    cudaGetLastError(); /* a failed attribute query is not an error of ours */
    return DLT_OK;
}

/* Device -> host; returns when dst_host holds the data (a sync point). */
static dlt_status cuda_download(dlt_backend *be, void *dst_host, const void *src, size_t bytes)
{
    if (!bytes) return DLT_OK;
    CUDA_ENTER(be);
    cudaStream_t s = dlt_cuda_of(be)->stream;
    CUDA_CHECK(cudaMemcpyAsync(dst_host, src, bytes, cudaMemcpyDeviceToHost, s));
    CUDA_CHECK(cudaStreamSynchronize(s));
    return dlt_cuda_data_error(be);
}

/* Device -> device, queued. Ranges must not overlap. */
static dlt_status cuda_copy(dlt_backend *be, void *dst, const void *src, size_t bytes)
{
    if (!bytes || dst == src) return DLT_OK;
    CUDA_ENTER(be);
    CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice,
                               dlt_cuda_of(be)->stream));
    return DLT_OK;
}

/* Waits for every queued op; errors of earlier kernels surface here. */
static dlt_status cuda_sync(dlt_backend *be)
{
    CUDA_ENTER(be);
    CUDA_CHECK(cudaStreamSynchronize(dlt_cuda_of(be)->stream));
    return dlt_cuda_data_error(be);
}

/* Contract: cuda_internal.h. */
dlt_status dlt_cuda_data_error(dlt_backend *be)
{
    dlt_cuda_data_err *e = dlt_cuda_of(be)->data_err_host;
    if (!e || e->code == DLT_CUDA_DATA_ERR_NONE) return DLT_OK;
    dlt_cuda_data_err v = *e;
    memset(e, 0, sizeof *e);
    if (v.code == DLT_CUDA_DATA_ERR_EMBED_ID)
        return DLT_ERR(DLT_ERR_INVALID, "embedding: token %d has id %g, outside [0, %d)", v.index,
                       (double)v.value, v.limit);
    if (v.code == DLT_CUDA_DATA_ERR_ROW)
        return DLT_ERR(DLT_ERR_INVALID, "fill_rows: entry %d names row %g, outside [0, %d)",
                       v.index, (double)v.value, v.limit);
    return DLT_ERR(DLT_ERR_INVALID, "softmax cross-entropy: label %d of row %d is outside [0, %d)",
                   (int)v.value, v.index, v.limit);
}

/* Contract: cuda_internal.h. */
dlt_status dlt_cuda_scratch(dlt_backend *be, size_t bytes, void **out)
{
    dlt_cuda_impl *impl = dlt_cuda_of(be);
    if (bytes > impl->scratch_bytes) {
        CUDA_ENTER(be);
        CUDA_CHECK(cudaStreamSynchronize(impl->stream)); /* the old one may still be in use */
        if (impl->scratch) cudaFree(impl->scratch);
        impl->scratch = NULL;
        impl->scratch_bytes = 0;
        size_t sz = bytes + bytes / 4; /* headroom: shapes grow a little (last batch, eval) */
        CUDA_CHECK(cudaMalloc(&impl->scratch, sz));
        impl->scratch_bytes = sz;
    }
    *out = impl->scratch;
    return DLT_OK;
}

/* ---- precision ---- */

/* Contract: cuda_internal.h (exported). */
dlt_status dlt_cuda_set_precision(dlt_backend *be, const char *precision)
{
    if (!be || be->destroy != cuda_destroy)
        return DLT_ERR(DLT_ERR_INVALID, "set_precision: not a CUDA backend");
    dlt_cuda_impl *impl = dlt_cuda_of(be);
    const char *strict = getenv("DLT_CUDA_STRICT_FP32");
    if (!precision || !strcmp(precision, "auto") || !strcmp(precision, "bf16"))
        impl->prec = DLT_CUDA_PREC_BF16;
    else if (!strcmp(precision, "fp16"))
        impl->prec = DLT_CUDA_PREC_FP16;
    else if (!strcmp(precision, "fp32"))
        impl->prec = strict && !strcmp(strict, "1") ? DLT_CUDA_PREC_STRICT : DLT_CUDA_PREC_FP32;
    else
        return DLT_ERR(DLT_ERR_INVALID, "precision '%s' is not one of auto|fp32|bf16|fp16",
                       precision);
    return DLT_OK;
}

/* ---- gemm ---- */

static int imax1(int a) { return a > 1 ? a : 1; }

/* Contract: backend.h gemm (row-major), through cublasSgemm; see the file
 * comment for the operand swap. */
dlt_status dlt_cuda_gemm(dlt_backend *be, int ta, int tb, int m, int n, int k, float alpha,
                         const float *a, int lda, const float *b, int ldb, float beta, float *c,
                         int ldc)
{
    if (m < 0 || n < 0 || k < 0)
        return DLT_ERR(DLT_ERR_INVALID, "gemm: negative size m=%d n=%d k=%d", m, n, k);
    /* the CPU backend's checks, so both reject the same calls */
    if (lda < imax1(ta ? m : k) || ldb < imax1(tb ? k : n) || ldc < imax1(n))
        return DLT_ERR(DLT_ERR_INVALID,
                       "gemm: leading dimension too small (ta=%d tb=%d m=%d n=%d k=%d lda=%d "
                       "ldb=%d ldc=%d)",
                       ta, tb, m, n, k, lda, ldb, ldc);
    if (m == 0 || n == 0) return DLT_OK;
    return dlt_cuda_gemm_batched(be, ta, tb, m, n, k, alpha, a, lda, 0, b, ldb, 0, beta, c, ldc,
                                 0, 1);
}

/* cuBLAS compute type of a precision. The FAST_* types take fp32 A, B and C
 * and let cuBLAS round A and B to tf32/bf16/fp16 inside the tensor-core
 * kernel; accumulation and C stay fp32. */
static cublasComputeType_t compute_type(dlt_cuda_prec p)
{
    switch (p) {
    case DLT_CUDA_PREC_STRICT: return CUBLAS_COMPUTE_32F_PEDANTIC;
    case DLT_CUDA_PREC_BF16: return CUBLAS_COMPUTE_32F_FAST_16BF;
    case DLT_CUDA_PREC_FP16: return CUBLAS_COMPUTE_32F_FAST_16F;
    case DLT_CUDA_PREC_FP32: break;
    }
    return CUBLAS_COMPUTE_32F_FAST_TF32;
}

/* Contract: cuda_internal.h. Row-major to column-major by the operand swap
 * of the file comment; batch 1 with zero strides is a plain gemm. */
dlt_status dlt_cuda_gemm_batched(dlt_backend *be, int ta, int tb, int m, int n, int k,
                                 float alpha, const float *a, int lda, long long sa,
                                 const float *b, int ldb, long long sb, float beta, float *c,
                                 int ldc, long long sc, int batch)
{
    if (m == 0 || n == 0 || batch == 0) return DLT_OK;
    CUDA_ENTER(be);
    dlt_cuda_impl *impl = dlt_cuda_of(be);
    const cublasOperation_t opa = ta ? CUBLAS_OP_T : CUBLAS_OP_N;
    const cublasOperation_t opb = tb ? CUBLAS_OP_T : CUBLAS_OP_N;
    if (k == 0) { /* C = beta C: cuBLAS handles k = 0 for the plain gemm only */
        for (int i = 0; i < batch; i++)
            CUBLAS_CHECK(cublasSgemm(impl->cublas, opb, opa, n, m, 0, &alpha, b, ldb, a, lda,
                                     &beta, c + i * sc, ldc));
        return DLT_OK;
    }
    CUBLAS_CHECK(cublasGemmStridedBatchedEx(impl->cublas, opb, opa, n, m, k, &alpha, b,
                                            CUDA_R_32F, ldb, sb, a, CUDA_R_32F, lda, sa, &beta,
                                            c, CUDA_R_32F, ldc, sc, batch,
                                            compute_type(impl->prec), CUBLAS_GEMM_DEFAULT));
    return DLT_OK;
}

/* ---- lifetime ---- */

/* Releases whatever parts of impl exist (creation may have failed halfway). */
static void impl_release(dlt_cuda_impl *impl)
{
    if (!impl) return;
    cudaSetDevice(impl->device);
    if (impl->stream) cudaStreamSynchronize(impl->stream);
    dlt_cuda_staging_free(impl);
    dlt_cuda_conv_free(impl);
    dlt_cuda_lstm_free(impl);
    dlt_cuda_lt_free(impl);
    if (impl->cudnn) cudnnDestroy(impl->cudnn);
    if (impl->cublas) cublasDestroy(impl->cublas);
    if (impl->reduce_partial) cudaFree(impl->reduce_partial);
    if (impl->reduce_host) cudaFreeHost(impl->reduce_host);
    if (impl->data_err_host) cudaFreeHost(impl->data_err_host);
    if (impl->scratch) cudaFree(impl->scratch);
    if (impl->stream) cudaStreamDestroy(impl->stream);
    cudaGetLastError();
    free(impl);
}

static void cuda_destroy(dlt_backend *be)
{
    if (!be) return;
    impl_release(dlt_cuda_of(be));
    free(be);
}

/* Creates the stream, handles and scratch of impl on impl->device. */
static dlt_status impl_init(dlt_cuda_impl *impl)
{
    CUDA_CHECK(cudaSetDevice(impl->device));
    CUDA_CHECK(cudaGetDeviceProperties(&impl->prop, impl->device));
    CUDA_CHECK(cudaStreamCreateWithFlags(&impl->stream, cudaStreamNonBlocking));
    CUBLAS_CHECK(cublasCreate(&impl->cublas));
    CUBLAS_CHECK(cublasSetStream(impl->cublas, impl->stream));
    CUBLAS_CHECK(cublasSetMathMode(impl->cublas, CUBLAS_TF32_TENSOR_OP_MATH));
    CUDNN_CHECK(cudnnCreate(&impl->cudnn));
    CUDNN_CHECK(cudnnSetStream(impl->cudnn, impl->stream));
    CUDA_CHECK(cudaMalloc((void **)&impl->reduce_partial,
                          (DLT_CUDA_REDUCE_BLOCKS + 1) * sizeof(double)));
    CUDA_CHECK(cudaMallocHost((void **)&impl->reduce_host, sizeof(double)));
    CUDA_CHECK(cudaHostAlloc((void **)&impl->data_err_host, sizeof(dlt_cuda_data_err),
                             cudaHostAllocMapped));
    memset(impl->data_err_host, 0, sizeof(dlt_cuda_data_err));
    CUDA_CHECK(cudaHostGetDevicePointer((void **)&impl->data_err_dev, impl->data_err_host, 0));
    impl->prec = DLT_CUDA_PREC_FP32;
    DLT_CHECK(dlt_cuda_lt_init(impl));
    return dlt_cuda_staging_init(impl);
}

static const dlt_backend cuda_table = {
    .abi = DLT_BACKEND_ABI,
    .name = "cuda",
    .impl = NULL,

    .destroy = cuda_destroy,
    .alloc = cuda_alloc,
    .free = cuda_free,
    .upload = cuda_upload,
    .download = cuda_download,
    .copy = cuda_copy,
    .fill = dlt_cuda_fill,
    .sync = cuda_sync,

    .gemm = dlt_cuda_gemm,
    .axpy = dlt_cuda_axpy,
    .scale = dlt_cuda_scale,
    .sumsq = dlt_cuda_sumsq,
    .bias_add = dlt_cuda_bias_add,
    .bias_grad = dlt_cuda_bias_grad,
    .add = dlt_cuda_add,

    .conv2d_workspace = dlt_cuda_conv2d_workspace,
    .conv2d_fwd = dlt_cuda_conv2d_fwd,
    .conv2d_bwd_data = dlt_cuda_conv2d_bwd_data,
    .conv2d_bwd_filter = dlt_cuda_conv2d_bwd_filter,

    .pool2d_fwd = dlt_cuda_pool2d_fwd,
    .pool2d_bwd = dlt_cuda_pool2d_bwd,

    .bnorm_fwd_train = dlt_cuda_bnorm_fwd_train,
    .bnorm_fwd_eval = dlt_cuda_bnorm_fwd_eval,
    .bnorm_bwd = dlt_cuda_bnorm_bwd,

    .act_fwd = dlt_cuda_act_fwd,
    .act_bwd = dlt_cuda_act_bwd,
    .dropout_fwd = dlt_cuda_dropout_fwd,
    .mul_acc = dlt_cuda_mul_acc,

    .softmax_xent_fwd = dlt_cuda_softmax_xent_fwd,
    .softmax_xent_bwd = dlt_cuda_softmax_xent_bwd,
    .mse_fwd = dlt_cuda_mse_fwd,
    .mse_bwd = dlt_cuda_mse_bwd,
    .onehot = dlt_cuda_onehot,

    .opt_update = dlt_cuda_opt_update,

    .embedding_fwd = dlt_cuda_embedding_fwd,
    .embedding_bwd = dlt_cuda_embedding_bwd,
    .layernorm_fwd = dlt_cuda_layernorm_fwd,
    .layernorm_bwd = dlt_cuda_layernorm_bwd,
    .softmax_xent_seq_fwd = dlt_cuda_softmax_xent_seq_fwd,
    .softmax_xent_seq_bwd = dlt_cuda_softmax_xent_seq_bwd,
    .attention_fwd = dlt_cuda_attention_fwd,
    .attention_bwd = dlt_cuda_attention_bwd,
    .lstm_fwd = dlt_cuda_lstm_fwd,
    .lstm_bwd = dlt_cuda_lstm_bwd,

    .host_alloc = dlt_cuda_host_alloc,
    .host_free = dlt_cuda_host_free,
    .upload_async = dlt_cuda_upload_async,
    .upload_wait = dlt_cuda_upload_wait,
    .upload_release = dlt_cuda_upload_release,
    .upload_host_wait = dlt_cuda_upload_host_wait,
    .sum_to = dlt_cuda_sum_to,

    .lstm_sizes = dlt_cuda_lstm_sizes,
    .attention_fwd_lse = dlt_cuda_attention_fwd_lse,
    .attention_bwd_lse = dlt_cuda_attention_bwd_lse,
    .fill_rows = dlt_cuda_fill_rows,
    .target_rows = dlt_cuda_target_rows,
    .linear_fwd = dlt_cuda_linear_fwd,
    .linear_bwd_w = dlt_cuda_linear_bwd_w,
};

/* Contract (exported; see core/device.h dlt_cuda_create_fn): creates the
 * CUDA backend on GPU device_ordinal modulo the visible GPUs. Returns
 * DLT_ERR_INVALID when abi differs from the table layout this library was
 * built with, DLT_ERR_UNSUPPORTED when no GPU is visible (the message says
 * "no GPU is visible (cudaGetDeviceCount: ...)"), DLT_ERR_NOMEM, or
 * DLT_ERR_DEVICE for any other CUDA, cuBLAS or cuDNN failure. */
dlt_status dlt_cuda_backend_create(int abi, int device_ordinal, dlt_backend **out)
{
    if (!out) return DLT_ERR(DLT_ERR_INVALID, "cuda backend: NULL output pointer");
    *out = NULL;
    if (abi != DLT_BACKEND_ABI)
        return DLT_ERR(DLT_ERR_INVALID,
                       "libdltcuda.so implements backend ABI %d but the program expects %d: "
                       "rebuild both with make",
                       DLT_BACKEND_ABI, abi);
    int count = 0;
    cudaError_t e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess) {
        cudaGetLastError();
        if (e == cudaErrorNoDevice || e == cudaErrorInsufficientDriver ||
            e == cudaErrorStubLibrary)
            return DLT_ERR(DLT_ERR_UNSUPPORTED, "no GPU is visible (cudaGetDeviceCount: %s)",
                           cudaGetErrorString(e));
        return DLT_ERR(DLT_ERR_DEVICE, "cudaGetDeviceCount failed: %s", cudaGetErrorString(e));
    }
    if (count <= 0)
        return DLT_ERR(DLT_ERR_UNSUPPORTED, "no GPU is visible (cudaGetDeviceCount: 0 devices)");

    dlt_cuda_impl *impl = calloc(1, sizeof *impl);
    dlt_backend *be = malloc(sizeof *be);
    if (!impl || !be) {
        free(impl);
        free(be);
        return DLT_ERR(DLT_ERR_NOMEM, "cuda backend: out of memory");
    }
    impl->device = (device_ordinal < 0 ? 0 : device_ordinal) % count;
    dlt_status st = impl_init(impl);
    if (st != DLT_OK) {
        impl_release(impl);
        free(be);
        return st;
    }
    *be = cuda_table;
    be->impl = impl;
    *out = be;
    return DLT_OK;
}

/* Contract (exported, DLT_CUDA_DESCRIBE_SYMBOL): one line naming the GPU of a
 * CUDA backend, into buf; returns buf. */
const char *dlt_cuda_describe(const dlt_backend *be, char *buf, size_t len)
{
    if (!buf || len == 0) return "";
    if (!be || be->destroy != cuda_destroy) {
        snprintf(buf, len, "%s", be ? be->name : "(no device)");
        return buf;
    }
    const dlt_cuda_impl *impl = (const dlt_cuda_impl *)be->impl;
    int cublas_ver = 0;
    cublasGetVersion(impl->cublas, &cublas_ver);
    snprintf(buf, len, "cuda:%d %s (sm_%d%d, %.1f GiB, %d SMs, cuBLAS %d, cuDNN %zu)",
             impl->device, impl->prop.name, impl->prop.major, impl->prop.minor,
             (double)impl->prop.totalGlobalMem / (1024.0 * 1024.0 * 1024.0),
             impl->prop.multiProcessorCount, cublas_ver, cudnnGetVersion());
    return buf;
}

/* Contract: the stream of a CUDA backend created by this library, or NULL. */
cudaStream_t dlt_cuda_stream(dlt_backend *be)
{
    if (!be || be->destroy != cuda_destroy) return NULL;
    return dlt_cuda_of(be)->stream;
}

/* Contract: the CUDA ordinal of a CUDA backend created here, or -1. */
int dlt_cuda_device(dlt_backend *be)
{
    if (!be || be->destroy != cuda_destroy) return -1;
    return dlt_cuda_of(be)->device;
}
