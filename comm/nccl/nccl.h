/* NCCL collectives on the CUDA backend's stream (part of bin/libdltcuda.so).
 *
 * The program does not link NCCL: comm/ looks these functions up with dlsym
 * in the library that core/device.c loaded, by the symbol names below, so
 * this header carries no CUDA or NCCL types (a communicator is opaque and the
 * unique id is 128 plain bytes, broadcast over MPI by the caller).
 *
 * Bootstrapping, as in every NCCL program: rank 0 calls dlt_nccl_unique_id,
 * the id is broadcast with dlt_comm_bcast, then every rank calls
 * dlt_nccl_init with it. Every wait is bounded by the communicator's timeout:
 * a dead or stuck peer becomes DLT_ERR_COMM after timeout_s seconds (with
 * the communicator aborted) instead of a hang. */
#ifndef DLT_NCCL_H
#define DLT_NCCL_H

#include <stddef.h>

#include "core/backend.h"
#include "core/status.h"

#define DLT_NCCL_ID_BYTES 128   /* NCCL_UNIQUE_ID_BYTES */

typedef struct dlt_nccl *dlt_nccl_t;

/* Writes a new NCCL unique id (DLT_NCCL_ID_BYTES bytes) into id128; called
 * on one rank. Needs no GPU. Returns DLT_ERR_COMM on NCCL failure. */
dlt_status dlt_nccl_unique_id(void *id128);

/* Creates rank `rank` of an nranks-wide communicator from the shared id, on
 * the GPU and stream of CUDA backend be. Collective over all nranks ranks.
 * timeout_s (> 0) bounds this call and every later wait on the
 * communicator. Returns DLT_ERR_INVALID (be is not a CUDA backend, bad rank),
 * DLT_ERR_NOMEM or DLT_ERR_COMM (NCCL failure or timeout). */
dlt_status dlt_nccl_init(dlt_backend *be, const void *id128, int nranks, int rank,
                         double timeout_s, dlt_nccl_t *out);

/* In-place sum of buf (n floats, device memory of the backend) over all
 * ranks, queued on the backend's stream after the work already there; returns
 * when the result is in buf. Collective. DLT_ERR_COMM on an NCCL error or
 * timeout, after which the communicator is aborted and only
 * dlt_nccl_free may be called. */
dlt_status dlt_nccl_allreduce_sum_f32(dlt_nccl_t c, float *buf, size_t n);

/* Overlapped form, for gradient buckets: queues the in-place sum of buf (n
 * floats) on the communicator's own stream, ordered after everything queued
 * on the backend's stream so far (an event), and returns without waiting.
 * Collective: every rank starts the same sums in the same order. */
dlt_status dlt_nccl_allreduce_start(dlt_nccl_t c, float *buf, size_t n);
/* ZeRO-1 forms of the overlapped sum, queued and ordered the same way:
 * reduce_scatter leaves in buf (n floats) the sum over all ranks of this
 * rank's piece (comm/zero.h dlt_zero_piece: n / nranks floats at
 * rank * (n / nranks), the last rank also the remainder), in place;
 * all_gather copies every rank's piece of buf to all ranks, in place.
 * ncclReduceScatter / ncclAllGather over the equal pieces, plus an
 * ncclReduce / ncclBroadcast rooted at the last rank for the remainder, in
 * one NCCL group. Collective. */
dlt_status dlt_nccl_reduce_scatter_start(dlt_nccl_t c, float *buf, size_t n);
dlt_status dlt_nccl_all_gather_start(dlt_nccl_t c, float *buf, size_t n);
/* Waits (bounded by the timeout, watching for NCCL errors) until every sum
 * started with dlt_nccl_allreduce_start (or the ZeRO forms) is complete; work queued on the
 * backend's stream afterwards sees the results. DLT_ERR_COMM as above. */
dlt_status dlt_nccl_wait_all(dlt_nccl_t c);

/* The PCI bus id of the CUDA backend's GPU ("0000:3b:00.0") into buf (len
 * bytes), to catch two ranks on one GPU before NCCL starts. Needs no
 * communicator. DLT_ERR_INVALID (not a CUDA backend) or DLT_ERR_DEVICE. */
dlt_status dlt_nccl_bus_id(dlt_backend *be, char *buf, size_t len);

/* Aborts the communicator without waiting for peers (for the launcher's
 * failure path: unblocks any NCCL kernel). c stays allocated; free it with
 * dlt_nccl_free. NULL is a no-op. */
void dlt_nccl_abort(dlt_nccl_t c);

/* Destroys the communicator (waits up to the timeout for pending work,
 * then aborts) and frees c. NULL is a no-op. */
void dlt_nccl_free(dlt_nccl_t c);

/* Symbol names and types for dlsym. */
#define DLT_NCCL_UNIQUE_ID_SYMBOL "dlt_nccl_unique_id"
#define DLT_NCCL_INIT_SYMBOL "dlt_nccl_init"
#define DLT_NCCL_ALLREDUCE_SUM_F32_SYMBOL "dlt_nccl_allreduce_sum_f32"
#define DLT_NCCL_ABORT_SYMBOL "dlt_nccl_abort"
#define DLT_NCCL_FREE_SYMBOL "dlt_nccl_free"
#define DLT_NCCL_ALLREDUCE_START_SYMBOL "dlt_nccl_allreduce_start"
#define DLT_NCCL_WAIT_ALL_SYMBOL "dlt_nccl_wait_all"
#define DLT_NCCL_BUS_ID_SYMBOL "dlt_nccl_bus_id"
#define DLT_NCCL_REDUCE_SCATTER_START_SYMBOL "dlt_nccl_reduce_scatter_start"
#define DLT_NCCL_ALL_GATHER_START_SYMBOL "dlt_nccl_all_gather_start"
typedef dlt_status (*dlt_nccl_unique_id_fn)(void *id128);
typedef dlt_status (*dlt_nccl_init_fn)(dlt_backend *be, const void *id128, int nranks, int rank,
                                       double timeout_s, dlt_nccl_t *out);
typedef dlt_status (*dlt_nccl_allreduce_sum_f32_fn)(dlt_nccl_t c, float *buf, size_t n);
typedef void (*dlt_nccl_abort_fn)(dlt_nccl_t c);
typedef void (*dlt_nccl_free_fn)(dlt_nccl_t c);
typedef dlt_status (*dlt_nccl_allreduce_start_fn)(dlt_nccl_t c, float *buf, size_t n);
typedef dlt_status (*dlt_nccl_wait_all_fn)(dlt_nccl_t c);
typedef dlt_status (*dlt_nccl_bus_id_fn)(dlt_backend *be, char *buf, size_t len);
typedef dlt_status (*dlt_nccl_shard_start_fn)(dlt_nccl_t c, float *buf, size_t n);

#endif
