/* NCCL communicator with bounded waits (see nccl.h). Compiled -fPIC into
 * bin/libdltcuda.so, next to the CUDA backend whose stream it uses.
 *
 * The communicator is created non-blocking (ncclConfig_t.blocking = 0): NCCL
 * calls then return at once and report progress through
 * ncclCommGetAsyncError, which is what lets every wait here have a deadline.
 * A blocking communicator would sit inside ncclCommInitRank or a stream
 * synchronisation forever if a peer died. After queueing a collective we
 * poll the stream (cudaStreamQuery) and the communicator's async error in
 * turn, spinning briefly and then sleeping 50 us between polls so a long
 * allreduce does not burn a core; on an NCCL error or at the deadline the
 * communicator is aborted (which also stops its GPU kernels) and the caller
 * gets DLT_ERR_COMM naming the cause.
 *
 * Overlapped sums (gradient buckets) run on a second stream of our own: an
 * event recorded on the compute stream when a bucket is complete makes the
 * communication stream wait for exactly that work, so the reduction runs
 * while the compute stream goes on with the earlier layers' backward. The
 * caller polls the communication stream to completion before the optimizer,
 * so the compute stream needs no event back. */
#include "comm/nccl/nccl.h"

#include <cuda_runtime_api.h>
#include <nccl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/cuda/cuda_internal.h"

_Static_assert(sizeof(ncclUniqueId) == DLT_NCCL_ID_BYTES, "NCCL unique id size changed");

struct dlt_nccl {
    ncclComm_t comm;        /* NULL once aborted (ncclCommAbort frees it) */
    int device;
    cudaStream_t stream;    /* the CUDA backend's stream */
    cudaStream_t comm_stream;  /* overlapped sums; NULL until first needed */
    cudaEvent_t ready;      /* recorded on stream before each overlapped sum */
    double timeout_s;
    int nranks, rank;
};

#define NCCL_CHECK(call)                                                             \
    do {                                                                             \
        ncclResult_t nc_e_ = (call);                                                 \
        if (nc_e_ != ncclSuccess && nc_e_ != ncclInProgress)                         \
            return dlt_error(DLT_ERR_COMM, __FILE__, __LINE__, "%s failed: %s (%s:%d)", \
                             #call, ncclGetErrorString(nc_e_), __FILE__, __LINE__);  \
    } while (0)

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Back-off between polls: yield for the first few, then sleep 50 us. */
static void poll_pause(int iter)
{
    if (iter < 64) {
        sched_yield();
        return;
    }
    struct timespec ts = { 0, 50000 };
    nanosleep(&ts, NULL);
}

/* Aborts c's communicator and records why as DLT_ERR_COMM. */
static dlt_status fail_abort(struct dlt_nccl *c, const char *what, const char *why)
{
    const char *detail = c->comm ? ncclGetLastError(c->comm) : NULL;
    char msg[512];
    snprintf(msg, sizeof msg, "%s", detail ? detail : "");
    dlt_nccl_abort(c);
    return DLT_ERR(DLT_ERR_COMM, "NCCL %s (rank %d of %d): %s%s%s; communicator aborted", what,
                   c->rank, c->nranks, why, msg[0] ? ": " : "", msg);
}

/* Waits until the communicator has no NCCL call in progress (a non-blocking
 * init, finalize or enqueue). */
static dlt_status wait_comm(struct dlt_nccl *c, const char *what, double deadline)
{
    for (int iter = 0;; iter++) {
        ncclResult_t r = ncclSuccess;
        ncclResult_t q = ncclCommGetAsyncError(c->comm, &r);
        if (q != ncclSuccess) return fail_abort(c, what, ncclGetErrorString(q));
        if (r == ncclSuccess) return DLT_OK;
        if (r != ncclInProgress) return fail_abort(c, what, ncclGetErrorString(r));
        if (now_s() > deadline) {
            char why[96];
            snprintf(why, sizeof why, "timed out after %.0f s (is every rank alive?)",
                     c->timeout_s);
            return fail_abort(c, what, why);
        }
        poll_pause(iter);
    }
}

/* Waits until stream s has drained, watching the communicator for errors. */
static dlt_status wait_stream(struct dlt_nccl *c, cudaStream_t s, const char *what,
                              double deadline)
{
    for (int iter = 0;; iter++) {
        cudaError_t e = cudaStreamQuery(s);
        if (e == cudaSuccess) return DLT_OK;
        if (e != cudaErrorNotReady)
            return DLT_ERR(DLT_ERR_DEVICE, "NCCL %s: cudaStreamQuery failed: %s", what,
                           cudaGetErrorString(e));
        ncclResult_t r = ncclSuccess;
        ncclCommGetAsyncError(c->comm, &r);
        if (r != ncclSuccess && r != ncclInProgress)
            return fail_abort(c, what, ncclGetErrorString(r));
        if (now_s() > deadline) {
            char why[96];
            snprintf(why, sizeof why, "timed out after %.0f s (is every rank alive?)",
                     c->timeout_s);
            return fail_abort(c, what, why);
        }
        poll_pause(iter);
    }
}

/* Contract: see nccl.h. */
dlt_status dlt_nccl_unique_id(void *id128)
{
    if (!id128) return DLT_ERR(DLT_ERR_INVALID, "dlt_nccl_unique_id: NULL buffer");
    ncclUniqueId id;
    NCCL_CHECK(ncclGetUniqueId(&id));
    memcpy(id128, &id, sizeof id);
    return DLT_OK;
}

/* Contract: see nccl.h. */
dlt_status dlt_nccl_init(dlt_backend *be, const void *id128, int nranks, int rank,
                         double timeout_s, dlt_nccl_t *out)
{
    if (!out) return DLT_ERR(DLT_ERR_INVALID, "dlt_nccl_init: NULL output pointer");
    *out = NULL;
    if (!id128) return DLT_ERR(DLT_ERR_INVALID, "dlt_nccl_init: NULL unique id");
    if (nranks < 1 || rank < 0 || rank >= nranks)
        return DLT_ERR(DLT_ERR_INVALID, "dlt_nccl_init: rank %d of %d is invalid", rank, nranks);
    if (!(timeout_s > 0))
        return DLT_ERR(DLT_ERR_INVALID, "dlt_nccl_init: timeout must be > 0 s");
    cudaStream_t stream = dlt_cuda_stream(be);
    int device = dlt_cuda_device(be);
    if (!stream || device < 0)
        return DLT_ERR(DLT_ERR_INVALID, "dlt_nccl_init: backend '%s' is not a CUDA backend",
                       be ? be->name : "(null)");

    struct dlt_nccl *c = calloc(1, sizeof *c);
    if (!c) return DLT_ERR(DLT_ERR_NOMEM, "dlt_nccl_init: out of memory");
    c->device = device;
    c->stream = stream;
    c->timeout_s = timeout_s;
    c->nranks = nranks;
    c->rank = rank;

    cudaError_t ce = cudaSetDevice(device);
    if (ce != cudaSuccess) {
        free(c);
        return DLT_ERR(DLT_ERR_DEVICE, "cudaSetDevice(%d) failed: %s", device,
                       cudaGetErrorString(ce));
    }
    ncclUniqueId id;
    memcpy(&id, id128, sizeof id);
    ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
    config.blocking = 0;
    ncclResult_t r = ncclCommInitRankConfig(&c->comm, nranks, id, rank, &config);
    if (r != ncclSuccess && r != ncclInProgress) {
        dlt_status st = DLT_ERR(DLT_ERR_COMM, "ncclCommInitRankConfig (rank %d of %d) failed: %s",
                                rank, nranks, ncclGetErrorString(r));
        if (c->comm) ncclCommAbort(c->comm);
        free(c);
        return st;
    }
    dlt_status st = wait_comm(c, "init", now_s() + timeout_s);
    if (st != DLT_OK) {
        free(c); /* wait_comm aborted (and so freed) the communicator */
        return st;
    }
    *out = c;
    return DLT_OK;
}

/* The checks every collective starts with, in this order: a communicator,
 * not aborted, then *idle = 1 for an empty buffer (nothing to do, no NCCL
 * call), else a buffer. */
static dlt_status check_call(const struct dlt_nccl *c, const float *buf, size_t n,
                             const char *what, int *idle)
{
    *idle = 0;
    if (!c) return DLT_ERR(DLT_ERR_INVALID, "NCCL %s: NULL communicator", what);
    if (!c->comm) return DLT_ERR(DLT_ERR_COMM, "NCCL %s: the communicator was aborted earlier", what);
    if (n == 0) {
        *idle = 1;
        return DLT_OK;
    }
    if (!buf) return DLT_ERR(DLT_ERR_INVALID, "NCCL %s: NULL buffer", what);
    return DLT_OK;
}

/* Contract: see nccl.h. */
dlt_status dlt_nccl_allreduce_sum_f32(dlt_nccl_t c, float *buf, size_t n)
{
    int idle;
    DLT_CHECK(check_call(c, buf, n, "allreduce", &idle));
    if (idle) return DLT_OK;
    CUDA_CHECK(cudaSetDevice(c->device));
    const double deadline = now_s() + c->timeout_s;
    ncclResult_t r = ncclAllReduce(buf, buf, n, ncclFloat32, ncclSum, c->comm, c->stream);
    if (r != ncclSuccess && r != ncclInProgress)
        return fail_abort(c, "allreduce", ncclGetErrorString(r));
    DLT_CHECK(wait_comm(c, "allreduce", deadline));
    return wait_stream(c, c->stream, "allreduce", deadline);
}

/* The communication stream, created on first use, made to wait for the work
 * queued so far on the compute stream. */
static dlt_status order_after_compute(struct dlt_nccl *c)
{
    CUDA_CHECK(cudaSetDevice(c->device));
    if (!c->comm_stream) {
        CUDA_CHECK(cudaStreamCreateWithFlags(&c->comm_stream, cudaStreamNonBlocking));
        CUDA_CHECK(cudaEventCreateWithFlags(&c->ready, cudaEventDisableTiming));
    }
    CUDA_CHECK(cudaEventRecord(c->ready, c->stream));
    CUDA_CHECK(cudaStreamWaitEvent(c->comm_stream, c->ready, 0));
    return DLT_OK;
}

/* Contract: see nccl.h. */
dlt_status dlt_nccl_allreduce_start(dlt_nccl_t c, float *buf, size_t n)
{
    int idle;
    DLT_CHECK(check_call(c, buf, n, "allreduce", &idle));
    if (idle) return DLT_OK;
    DLT_CHECK(order_after_compute(c));
    ncclResult_t r = ncclAllReduce(buf, buf, n, ncclFloat32, ncclSum, c->comm, c->comm_stream);
    if (r != ncclSuccess && r != ncclInProgress)
        return fail_abort(c, "allreduce", ncclGetErrorString(r));
    /* a non-blocking communicator may still be enqueueing; the next NCCL
     * call must wait for that, the GPU work itself goes on */
    return wait_comm(c, "allreduce", now_s() + c->timeout_s);
}

/* ZeRO-1 piece layout (comm/zero.h dlt_zero_piece): q floats per rank, the
 * remainder rem (< nranks) after the last rank's q. In place everywhere:
 * ncclReduceScatter's recvbuff is sendbuff + rank * q, ncclAllGather's
 * sendbuff is recvbuff + rank * q, and the remainder's reduce/broadcast
 * use one buffer as both ends. gather selects the all-gather. */
static dlt_status shard_start(struct dlt_nccl *c, float *buf, size_t n, int gather)
{
    const char *what = gather ? "all-gather" : "reduce-scatter";
    int idle;
    DLT_CHECK(check_call(c, buf, n, what, &idle));
    if (idle) return DLT_OK;
    DLT_CHECK(order_after_compute(c));
    size_t q = n / (size_t)c->nranks, rem = n - q * (size_t)c->nranks;
    float *mine = buf + q * (size_t)c->rank, *tail = buf + q * (size_t)c->nranks;
    int root = c->nranks - 1;
    ncclResult_t r = ncclGroupStart();
    if ((r == ncclSuccess || r == ncclInProgress) && q > 0)
        r = gather ? ncclAllGather(mine, buf, q, ncclFloat32, c->comm, c->comm_stream)
                   : ncclReduceScatter(buf, mine, q, ncclFloat32, ncclSum, c->comm, c->comm_stream);
    if ((r == ncclSuccess || r == ncclInProgress) && rem > 0)
        r = gather ? ncclBroadcast(tail, tail, rem, ncclFloat32, root, c->comm, c->comm_stream)
                   : ncclReduce(tail, tail, rem, ncclFloat32, ncclSum, root, c->comm, c->comm_stream);
    ncclResult_t e = ncclGroupEnd(); /* always closes the group, even after a failed call */
    if (r == ncclSuccess || r == ncclInProgress) r = e;
    if (r != ncclSuccess && r != ncclInProgress) return fail_abort(c, what, ncclGetErrorString(r));
    return wait_comm(c, what, now_s() + c->timeout_s);
}

/* Contract: see nccl.h. */
dlt_status dlt_nccl_reduce_scatter_start(dlt_nccl_t c, float *buf, size_t n)
{
    return shard_start(c, buf, n, 0);
}

/* Contract: see nccl.h. */
dlt_status dlt_nccl_all_gather_start(dlt_nccl_t c, float *buf, size_t n)
{
    return shard_start(c, buf, n, 1);
}

/* Contract: see nccl.h. */
dlt_status dlt_nccl_wait_all(dlt_nccl_t c)
{
    if (!c) return DLT_ERR(DLT_ERR_INVALID, "NCCL wait: NULL communicator");
    if (!c->comm_stream) return DLT_OK;
    if (!c->comm) return DLT_ERR(DLT_ERR_COMM, "NCCL wait: the communicator was aborted earlier");
    CUDA_CHECK(cudaSetDevice(c->device));
    return wait_stream(c, c->comm_stream, "allreduce", now_s() + c->timeout_s);
}

/* Contract: see nccl.h. */
dlt_status dlt_nccl_bus_id(dlt_backend *be, char *buf, size_t len)
{
    if (!buf || len < 16) return DLT_ERR(DLT_ERR_INVALID, "dlt_nccl_bus_id: buffer too small");
    buf[0] = '\0';
    int device = dlt_cuda_device(be);
    if (device < 0)
        return DLT_ERR(DLT_ERR_INVALID, "dlt_nccl_bus_id: backend '%s' is not a CUDA backend",
                       be ? be->name : "(null)");
    CUDA_CHECK(cudaDeviceGetPCIBusId(buf, (int)len, device));
    return DLT_OK;
}

/* Contract: see nccl.h. */
void dlt_nccl_abort(dlt_nccl_t c)
{
    if (!c || !c->comm) return;
    cudaSetDevice(c->device);
    ncclCommAbort(c->comm);
    c->comm = NULL;
}

/* Contract: see nccl.h. */
void dlt_nccl_free(dlt_nccl_t c)
{
    if (!c) return;
    if (c->comm) {
        cudaSetDevice(c->device);
        ncclResult_t r = ncclCommFinalize(c->comm);
        /* wait_comm aborts (and frees) the communicator on error or timeout */
        if ((r == ncclSuccess || r == ncclInProgress) &&
            wait_comm(c, "finalize", now_s() + c->timeout_s) == DLT_OK)
            ncclCommDestroy(c->comm);
        else
            dlt_nccl_abort(c);
        c->comm = NULL;
    }
    if (c->comm_stream) {
        cudaSetDevice(c->device);
        cudaEventDestroy(c->ready);
        cudaStreamDestroy(c->comm_stream);
    }
    free(c);
}
