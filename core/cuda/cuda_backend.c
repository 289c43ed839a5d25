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
 * memset is queued on the stream, so later ops see zeros), upload returns
 * when the host buffer may be reused, download returns when the host buffer
 * holds the data; everything else is asynchronous until sync().
 *
 * gemm maps row-major to cuBLAS's column-major: a row-major matrix is the
 * column-major view of its transpose, so C = op(A) op(B) is computed as
 * C^T = op(B)^T op(A)^T by swapping the operands (and m with n). cuBLAS may
 * use TF32 tensor cores (10-bit mantissa inputs, fp32 accumulation), as
 * PyTorch does with allow_tf32. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/cuda/cuda_internal.h"
#include "core/device.h"

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
    if (e != cudaSuccess) {
        cudaFree(p);
        return DLT_ERR(DLT_ERR_DEVICE, "cudaMemsetAsync(%zu bytes) failed: %s (%s:%d)", sz,
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
    return DLT_OK;
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
    CUDA_ENTER(be);
    CUBLAS_CHECK(cublasSgemm(dlt_cuda_of(be)->cublas, tb ? CUBLAS_OP_T : CUBLAS_OP_N,
                             ta ? CUBLAS_OP_T : CUBLAS_OP_N, n, m, k, &alpha, b, ldb, a, lda,
                             &beta, c, ldc));
    return DLT_OK;
}

/* ---- lifetime ---- */

/* Releases whatever parts of impl exist (creation may have failed halfway). */
static void impl_release(dlt_cuda_impl *impl)
{
    if (!impl) return;
    cudaSetDevice(impl->device);
    if (impl->stream) cudaStreamSynchronize(impl->stream);
    dlt_cuda_conv_free(impl);
    if (impl->cudnn) cudnnDestroy(impl->cudnn);
    if (impl->cublas) cublasDestroy(impl->cublas);
    if (impl->reduce_partial) cudaFree(impl->reduce_partial);
    if (impl->reduce_host) cudaFreeHost(impl->reduce_host);
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
    return DLT_OK;
}

/* Ops not listed (the sequence-model ops appended to backend.h) stay NULL:
 * model build then reports them as not supported on cuda. */
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
