/* ZeRO-1 half of the gradient buckets (see bucket.h, comm/zero.h).
 *
 * Same rounds and communication thread as bucket.c; only the collectives
 * differ. Each bucket is an MPI_Ireduce_scatter whose counts come from
 * dlt_zero_piece, kept per bucket for the whole run because a nonblocking
 * collective may read them until it completes. It runs in place, where MPI
 * leaves this rank's summed piece at the start of the bucket; finish()
 * moves it to the piece's own place (memmove of 1/world of the arena), so
 * the arena layout is the same on every rank and the optimizer reads its
 * pieces where the parameters are. (NCCL's in-place reduce-scatter already
 * writes there.) The parameter all-gather (MPI_Iallgatherv in place) runs
 * after the optimizer, from the compute thread, on the communicator the
 * reductions use. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "comm/bucket_internal.h"
#include "comm/comm_internal.h"
#include "comm/guard.h"

/* Contract: see bucket_internal.h. */
dlt_status dlt_buckets_zero_plan(dlt_buckets_t b)
{
    size_t k = b->count > 0 ? (size_t)b->count : 1, P = (size_t)b->world;
    b->counts = calloc(k * P, sizeof *b->counts);
    b->displs = calloc(k * P, sizeof *b->displs);
    b->areq = calloc(k, sizeof *b->areq);
    if (!b->counts || !b->displs || !b->areq)
        return DLT_ERR(DLT_ERR_NOMEM, "out of memory for %d gradient buckets", b->count);
    for (int i = 0; i < b->count; i++) {
        size_t len;
        dlt_buckets_range(b, i, NULL, &len);
        b->areq[i] = MPI_REQUEST_NULL;
        for (int p = 0; p < b->world; p++) {
            size_t po, pc;
            dlt_zero_piece(len, b->world, p, &po, &pc);
            b->counts[(size_t)i * P + (size_t)p] = (int)pc; /* a bucket fits an int (init) */
            b->displs[(size_t)i * P + (size_t)p] = (int)po;
        }
    }
    return DLT_OK;
}

/* Contract: see bucket.h. */
dlt_status dlt_buckets_init_zero(dlt_comm_t c, float *grads, const dlt_zero *z,
                                 const dlt_bucket_device_ops *dev, dlt_buckets_t *out)
{
    if (!out) return DLT_ERR(DLT_ERR_INVALID, "dlt_buckets_init_zero: NULL output");
    *out = NULL;
    if (!z) return DLT_ERR(DLT_ERR_INVALID, "dlt_buckets_init_zero: NULL plan");
    if (dev && (!dev->reduce_scatter || !dev->all_gather))
        return DLT_ERR(DLT_ERR_INVALID, "dlt_buckets_init_zero: device ops without reduce_scatter/all_gather");
    return dlt_buckets_init_plan(c, grads, dlt_zero_arena(z), dlt_zero_bucket_floats(z), dev, z, out);
}

/* Contract: see bucket_internal.h. */
void dlt_buckets_zero_place(dlt_buckets_t b)
{
    if (!b->zero || b->use_dev) return;
    size_t P = (size_t)b->world;
    for (int i = 0; i < b->count; i++) {
        size_t off, at = (size_t)i * P + (size_t)b->rank;
        dlt_buckets_range(b, i, &off, NULL);
        if (b->displs[at] && b->counts[at])
            memmove(b->grads + off + b->displs[at], b->grads + off, (size_t)b->counts[at] * sizeof(float));
    }
}

/* Contract: see bucket.h. In threaded mode the worker is idle here (the
 * round is finished), so the compute thread issues and tests these itself. */
dlt_status dlt_buckets_gather(dlt_buckets_t b, float *w)
{
    if (!b->zero) return DLT_ERR(DLT_ERR_INVALID, "gradient buckets: gather without ZeRO");
    if (b->open) return DLT_ERR(DLT_ERR_INVALID, "gradient buckets: gather inside a round");
    size_t P = (size_t)b->world;
    MPI_Comm mc = b->threaded ? b->wcomm : dlt_comm_mpi(b->comm);
    dlt_status st = DLT_OK;
    int started = 0;
    for (int i = 0; i < b->count && st == DLT_OK; i++) {
        size_t off, len;
        dlt_buckets_range(b, i, &off, &len);
        if (b->use_dev) {
            st = b->dev.all_gather(b->dev.ctx, w + off, len);
            continue;
        }
        int rc = MPI_Iallgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, w + off, b->counts + (size_t)i * P,
                                 b->displs + (size_t)i * P, MPI_FLOAT, mc, &b->areq[i]);
        if (rc != MPI_SUCCESS) st = dlt_comm_mpi_error(rc, "MPI_Iallgatherv (parameters)", __FILE__, __LINE__);
        else started++;
    }
    if (b->use_dev) {
        dlt_status w_st = b->dev.wait_all(b->dev.ctx); /* what was queued, even after a failure */
        return st != DLT_OK ? st : w_st;
    }
    for (int i = 0; i < started; i++) {
        char what[56];
        snprintf(what, sizeof what, "parameter all-gather %d of %d", i, b->count);
        dlt_comm_set_bucket(b->comm, i);
        DLT_CHECK(dlt_comm_wait(b->comm, &b->areq[i], what));
    }
    dlt_comm_set_bucket(b->comm, -1);
    return st;
}
