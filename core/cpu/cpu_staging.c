/* Input staging and on-device sums on the CPU (backend.h "input staging").
 *
 * On the CPU "device memory" is host memory and every op finishes before it
 * returns, so there is no copy stream to overlap: an asynchronous upload is
 * a memcpy, and the slot events (wait, release, host wait) have nothing to
 * order; they only check the slot number so that a caller's bug shows on
 * the CPU too, not first on a GPU. Host batch memory is ordinary aligned
 * memory from dlt_cpu_alloc.
 *
 * sum_to adds in index order into one double: the trainer's running loss
 * sums were a host loop `sum += x[i]` before they moved into the backend,
 * and this keeps the logged losses bitwise what they were. */
#include <string.h>

#include "core/cpu/cpu_ops.h"
#include "core/status.h"

/* Contract: backend.h host_alloc. */
dlt_status dlt_cpu_host_alloc(dlt_backend *be, size_t bytes, void **ptr)
{
    return dlt_cpu_alloc(be, bytes, ptr);
}

/* Contract: backend.h host_free. */
void dlt_cpu_host_free(dlt_backend *be, void *ptr) { dlt_cpu_free(be, ptr); }

static dlt_status check_slot(int slot)
{
    if (slot < 0 || slot >= DLT_UPLOAD_SLOTS)
        return DLT_ERR(DLT_ERR_INVALID, "upload slot %d is not in [0, %d)", slot,
                       DLT_UPLOAD_SLOTS);
    return DLT_OK;
}

/* Contract: backend.h upload_async; here it completes at once. */
dlt_status dlt_cpu_upload_async(dlt_backend *be, int slot, void *dst, const void *src_host,
                                size_t bytes)
{
    DLT_CHECK(check_slot(slot));
    if (bytes && dst != src_host) memcpy(dst, src_host, bytes);
    return DLT_OK;
}

/* upload_wait, upload_release and upload_host_wait: nothing is in flight. */
dlt_status dlt_cpu_upload_slot(dlt_backend *be, int slot) { return check_slot(slot); }

/* Contract: backend.h sum_to (index order, double). */
dlt_status dlt_cpu_sum_to(dlt_backend *be, size_t n, const float *x, double *acc)
{
    if (!acc) return DLT_ERR(DLT_ERR_INVALID, "sum_to: NULL accumulator");
    double s = *acc;
    for (size_t i = 0; i < n; i++) s += x[i];
    *acc = s;
    return DLT_OK;
}
