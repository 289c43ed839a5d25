/* The CPU backend: the backend.h table filled with the host implementations
 * of core/cpu/, plus its memory ops.
 *
 * On the CPU "device memory" is host memory, so upload/download/copy are
 * memcpy and sync has nothing to wait for (every op runs to completion before
 * it returns). Allocations are 64-byte aligned (a cache line, and the widest
 * AVX-512 load) and zeroed, as the table's contract requires. The backend
 * keeps no private state: OpenBLAS and OpenMP manage their own thread pools,
 * sized by OPENBLAS_NUM_THREADS / OMP_NUM_THREADS, which the launcher sets. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/backend.h"
#include "core/cpu/cpu_ops.h"
#include "core/cpu/cpu_seq.h"
#include "core/status.h"

#define CPU_ALIGN 64

/* Returns zeroed memory of at least `bytes` (one cache line for 0 bytes, so
 * every successful allocation is a distinct pointer that free() accepts). */
dlt_status dlt_cpu_alloc(dlt_backend *be, size_t bytes, void **ptr)
{
    if (!ptr) return DLT_ERR(DLT_ERR_INVALID, "cpu alloc: NULL output pointer");
    *ptr = NULL;
    if (bytes > SIZE_MAX - CPU_ALIGN)
        return DLT_ERR(DLT_ERR_NOMEM, "cpu alloc: %zu bytes is too large", bytes);
    size_t sz = (bytes + CPU_ALIGN - 1) / CPU_ALIGN * CPU_ALIGN;
    if (sz == 0) sz = CPU_ALIGN;
    void *p = NULL;
    if (posix_memalign(&p, CPU_ALIGN, sz) != 0 || !p)
        return DLT_ERR(DLT_ERR_NOMEM, "cpu alloc: out of memory allocating %zu bytes (%.1f MiB)",
                       bytes, (double)bytes / (1024.0 * 1024.0));
    memset(p, 0, sz);
    *ptr = p;
    return DLT_OK;
}

/* Frees memory from dlt_cpu_alloc; NULL is a no-op. */
void dlt_cpu_free(dlt_backend *be, void *ptr) { free(ptr); }

/* Host -> "device": a plain copy. */
dlt_status dlt_cpu_upload(dlt_backend *be, void *dst, const void *src_host, size_t bytes)
{
    if (bytes) memcpy(dst, src_host, bytes);
    return DLT_OK;
}

/* "Device" -> host: a plain copy. */
dlt_status dlt_cpu_download(dlt_backend *be, void *dst_host, const void *src, size_t bytes)
{
    if (bytes) memcpy(dst_host, src, bytes);
    return DLT_OK;
}

/* Device -> device; memmove so overlapping ranges are not undefined. */
dlt_status dlt_cpu_copy(dlt_backend *be, void *dst, const void *src, size_t bytes)
{
    if (bytes && dst != src) memmove(dst, src, bytes);
    return DLT_OK;
}

/* Every CPU op is synchronous, so there is nothing to wait for. */
dlt_status dlt_cpu_sync(dlt_backend *be) { return DLT_OK; }

static void cpu_destroy(dlt_backend *be) { free(be); }

static const dlt_backend cpu_table = {
    /* .abi               = */ DLT_BACKEND_ABI,
    /* .name              = */ "cpu",
    /* .impl              = */ NULL,

    /* .destroy           = */ cpu_destroy,
    /* .alloc             = */ dlt_cpu_alloc,
    /* .free              = */ dlt_cpu_free,
    /* .upload            = */ dlt_cpu_upload,
    /* .download          = */ dlt_cpu_download,
    /* .copy              = */ dlt_cpu_copy,
    /* .fill              = */ dlt_cpu_fill,
    /* .sync              = */ dlt_cpu_sync,

    /* .gemm              = */ dlt_cpu_gemm,
    /* .axpy              = */ dlt_cpu_axpy,
    /* .scale             = */ dlt_cpu_scale,
    /* .sumsq             = */ dlt_cpu_sumsq,
    /* .bias_add          = */ dlt_cpu_bias_add,
    /* .bias_grad         = */ dlt_cpu_bias_grad,
    /* .add               = */ dlt_cpu_add,

    /* .conv2d_workspace  = */ dlt_cpu_conv2d_workspace,
    /* .conv2d_fwd        = */ dlt_cpu_conv2d_fwd,
    /* .conv2d_bwd_data   = */ dlt_cpu_conv2d_bwd_data,
    /* .conv2d_bwd_filter = */ dlt_cpu_conv2d_bwd_filter,

    /* .pool2d_fwd        = */ dlt_cpu_pool2d_fwd,
    /* .pool2d_bwd        = */ dlt_cpu_pool2d_bwd,

    /* .bnorm_fwd_train   = */ dlt_cpu_bnorm_fwd_train,
    /* .bnorm_fwd_eval    = */ dlt_cpu_bnorm_fwd_eval,
    /* .bnorm_bwd         = */ dlt_cpu_bnorm_bwd,

    /* .act_fwd           = */ dlt_cpu_act_fwd,
    /* .act_bwd           = */ dlt_cpu_act_bwd,
    /* .dropout_fwd       = */ dlt_cpu_dropout_fwd,
    /* .mul_acc           = */ dlt_cpu_mul_acc,

    /* .softmax_xent_fwd  = */ dlt_cpu_softmax_xent_fwd,
    /* .softmax_xent_bwd  = */ dlt_cpu_softmax_xent_bwd,
    /* .mse_fwd           = */ dlt_cpu_mse_fwd,
    /* .mse_bwd           = */ dlt_cpu_mse_bwd,
    /* .onehot            = */ dlt_cpu_onehot,

    /* .opt_update        = */ dlt_cpu_opt_update,

    /* .embedding_fwd     = */ dlt_cpu_embedding_fwd,
    /* .embedding_bwd     = */ dlt_cpu_embedding_bwd,
    /* .layernorm_fwd     = */ dlt_cpu_layernorm_fwd,
    /* .layernorm_bwd     = */ dlt_cpu_layernorm_bwd,
    /* .softmax_xent_seq_fwd = */ dlt_cpu_softmax_xent_seq_fwd,
    /* .softmax_xent_seq_bwd = */ dlt_cpu_softmax_xent_seq_bwd,
    /* .attention_fwd     = */ dlt_cpu_attention_fwd,
    /* .attention_bwd     = */ dlt_cpu_attention_bwd,
    /* .lstm_fwd          = */ dlt_cpu_lstm_fwd,
    /* .lstm_bwd          = */ dlt_cpu_lstm_bwd,

    /* .host_alloc        = */ dlt_cpu_host_alloc,
    /* .host_free         = */ dlt_cpu_host_free,
    /* .upload_async      = */ dlt_cpu_upload_async,
    /* .upload_wait       = */ dlt_cpu_upload_slot,
    /* .upload_release    = */ dlt_cpu_upload_slot,
    /* .upload_host_wait  = */ dlt_cpu_upload_slot,
    /* .sum_to            = */ dlt_cpu_sum_to,

    /* .lstm_sizes        = */ dlt_cpu_lstm_sizes,
    /* .attention_fwd_lse = */ dlt_cpu_attention_fwd_lse,
    /* .attention_bwd_lse = */ dlt_cpu_attention_bwd_lse,
    /* .fill_rows         = */ dlt_cpu_fill_rows,
    /* .target_rows       = */ dlt_cpu_target_rows,
    /* .linear_fwd        = */ dlt_cpu_linear_fwd,
    /* .linear_bwd_w      = */ dlt_cpu_linear_bwd_w,
};

/* Creates the CPU backend: a heap copy of the constant table, released by
 * be->destroy(be). Returns DLT_ERR_NOMEM or DLT_ERR_INVALID (out == NULL). */
dlt_status dlt_backend_cpu_create(dlt_backend **out)
{
    if (!out) return DLT_ERR(DLT_ERR_INVALID, "dlt_backend_cpu_create: NULL output pointer");
    *out = NULL;
    dlt_backend *be = malloc(sizeof *be);
    if (!be) return DLT_ERR(DLT_ERR_NOMEM, "cpu backend: out of memory");
    *be = cpu_table;
    *out = be;
    return DLT_OK;
}
