/* Input staging on CUDA: page-locked host batch memory and slot uploads on
 * a copy stream (backend.h "input staging").
 *
 * Why a second stream: a batch copied on the compute stream waits for the
 * step queued before it and the step after waits for the copy, so the PCIe
 * transfer (about 10 ms for a ResNet-50 batch of 256 at ImageNet shapes)
 * adds to every step. On `copy_stream` it runs while the previous step
 * computes; two events per slot keep the streams honest:
 *   up_release[s]  recorded on the compute stream once the ops reading the
 *                  slot's device buffer are queued; the next upload into the
 *                  slot waits for it on the copy stream (write after read);
 *   up_ready[s]    recorded on the copy stream after the slot's upload; the
 *                  compute stream waits for it before the first reader
 *                  (read after write), and the host waits for it before it
 *                  refills the slot's pinned source (upload_host_wait).
 * Waiting on an event that was never recorded is a no-op in CUDA, which is
 * exactly right for a slot's first use. The copy needs a pinned source to be
 * asynchronous at all: from pageable memory cudaMemcpyAsync stages through
 * a driver buffer and returns only when the copy is done.
 *
 * Everything here is host-side library calls, so it is plain C. */
#include <string.h>

#include "core/cuda/cuda_internal.h"

/* Contract: cuda_internal.h. */
dlt_status dlt_cuda_staging_init(dlt_cuda_impl *impl)
{
    CUDA_CHECK(cudaStreamCreateWithFlags(&impl->copy_stream, cudaStreamNonBlocking));
    for (int s = 0; s < DLT_UPLOAD_SLOTS; s++) {
        CUDA_CHECK(cudaEventCreateWithFlags(&impl->up_ready[s], cudaEventDisableTiming));
        CUDA_CHECK(cudaEventCreateWithFlags(&impl->up_release[s], cudaEventDisableTiming));
    }
    return DLT_OK;
}

/* Contract: cuda_internal.h. Safe on a half-initialised impl. */
void dlt_cuda_staging_free(dlt_cuda_impl *impl)
{
    if (impl->copy_stream) cudaStreamSynchronize(impl->copy_stream);
    for (int s = 0; s < DLT_UPLOAD_SLOTS; s++) {
        if (impl->up_ready[s]) cudaEventDestroy(impl->up_ready[s]);
        if (impl->up_release[s]) cudaEventDestroy(impl->up_release[s]);
        impl->up_ready[s] = impl->up_release[s] = NULL;
    }
    if (impl->copy_stream) cudaStreamDestroy(impl->copy_stream);
    impl->copy_stream = NULL;
}

/* Contract: backend.h host_alloc (cudaMallocHost; zeroed). */
dlt_status dlt_cuda_host_alloc(dlt_backend *be, size_t bytes, void **ptr)
{
    if (!ptr) return DLT_ERR(DLT_ERR_INVALID, "cuda host_alloc: NULL output pointer");
    *ptr = NULL;
    CUDA_ENTER(be);
    size_t sz = bytes ? bytes : 64;
    void *p = NULL;
    cudaError_t e = cudaMallocHost(&p, sz);
    if (e != cudaSuccess) {
        cudaGetLastError();
        return DLT_ERR(DLT_ERR_NOMEM, "cuda host_alloc: cannot pin %.1f MiB of host memory: %s",
                       (double)bytes / 1048576.0, cudaGetErrorString(e));
    }
    memset(p, 0, sz);
    *ptr = p;
    return DLT_OK;
}

/* Contract: backend.h host_free (NULL is a no-op; waits for the device). */
void dlt_cuda_host_free(dlt_backend *be, void *ptr)
{
    if (!ptr) return;
    cudaSetDevice(dlt_cuda_of(be)->device);
    cudaFreeHost(ptr);
}

static dlt_status check_slot(int slot)
{
    if (slot < 0 || slot >= DLT_UPLOAD_SLOTS)
        return DLT_ERR(DLT_ERR_INVALID, "upload slot %d is not in [0, %d)", slot,
                       DLT_UPLOAD_SLOTS);
    return DLT_OK;
}

/* Contract: backend.h upload_async. */
dlt_status dlt_cuda_upload_async(dlt_backend *be, int slot, void *dst, const void *src_host,
                                 size_t bytes)
{
    DLT_CHECK(check_slot(slot));
    if (!bytes) return DLT_OK;
    CUDA_ENTER(be);
    dlt_cuda_impl *impl = dlt_cuda_of(be);
    CUDA_CHECK(cudaStreamWaitEvent(impl->copy_stream, impl->up_release[slot], 0));
    CUDA_CHECK(cudaMemcpyAsync(dst, src_host, bytes, cudaMemcpyHostToDevice, impl->copy_stream));
    CUDA_CHECK(cudaEventRecord(impl->up_ready[slot], impl->copy_stream));
    return DLT_OK;
}

/* Contract: backend.h upload_wait. */
dlt_status dlt_cuda_upload_wait(dlt_backend *be, int slot)
{
    DLT_CHECK(check_slot(slot));
    CUDA_ENTER(be);
    dlt_cuda_impl *impl = dlt_cuda_of(be);
    CUDA_CHECK(cudaStreamWaitEvent(impl->stream, impl->up_ready[slot], 0));
    return DLT_OK;
}

/* Contract: backend.h upload_release. */
dlt_status dlt_cuda_upload_release(dlt_backend *be, int slot)
{
    DLT_CHECK(check_slot(slot));
    CUDA_ENTER(be);
    dlt_cuda_impl *impl = dlt_cuda_of(be);
    CUDA_CHECK(cudaEventRecord(impl->up_release[slot], impl->stream));
    return DLT_OK;
}

/* Contract: backend.h upload_host_wait. Two batches after a slot's upload
 * it has long finished, so this returns at once in the steady state. */
dlt_status dlt_cuda_upload_host_wait(dlt_backend *be, int slot)
{
    DLT_CHECK(check_slot(slot));
    CUDA_ENTER(be);
    CUDA_CHECK(cudaEventSynchronize(dlt_cuda_of(be)->up_ready[slot]));
    return DLT_OK;
}
