/* ZeRO-1 plan and the optimizer-state gather (see zero.h).
 *
 * The plan is a pure function of (n, bucket_floats, world, rank), so every
 * rank computes it alone and knows every other rank's segments too; a
 * checkpoint written by any number of ranks is in the full arena layout and
 * can be cut again by any other number. The gather is one MPI_Igatherv per
 * bucket straight into the bucket's place in the full arena (the pieces of a
 * bucket are contiguous and in rank order), so the root needs no unpacking.
 * It runs only when a checkpoint is written, so it may allocate. */
#include "comm/zero.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>

#include "comm/bucket.h"
#include "comm/comm_internal.h"
#include "comm/guard.h"

struct dlt_zero {
    dlt_comm_t comm;
    int world, rank;
    size_t n;
    size_t bucket_floats;   /* after the clamp of dlt_zero_init */
    int count;              /* buckets */
    size_t *ends;           /* (count) end offset of bucket i */
    size_t *seg_off;        /* (count) this rank's piece of bucket i, arena offsets */
    size_t *seg_len;        /* (count) */
    size_t *floats;         /* (world) floats rank p owns */
    dlt_optim_shard shard;
};

/* dlt_optim_shard.sum: one allreduce over the group. */
static dlt_status shard_sum(void *ctx, double *v, size_t k)
{
    dlt_zero *z = ctx;
    return dlt_comm_allreduce_f64(z->comm, v, k);
}

/* Contract: see zero.h. */
dlt_status dlt_zero_init(dlt_comm_t c, size_t n, size_t bucket_floats, dlt_zero **out)
{
    *out = NULL;
    if (!c) return DLT_ERR(DLT_ERR_INVALID, "dlt_zero_init: NULL communicator");
    if (bucket_floats > INT_MAX)
        return DLT_ERR(DLT_ERR_INVALID, "gradient bucket of %zu floats exceeds MPI's int count", bucket_floats);
    if (bucket_floats == 0 && n > INT_MAX) bucket_floats = INT_MAX; /* as dlt_buckets_init */
    dlt_zero *z = calloc(1, sizeof *z);
    if (!z) return DLT_ERR(DLT_ERR_NOMEM, "out of memory for the ZeRO plan");
    z->comm = c;
    z->world = dlt_comm_size(c);
    z->rank = dlt_comm_rank(c);
    z->n = n;
    z->bucket_floats = bucket_floats;
    z->count = dlt_bucket_plan(n, bucket_floats, NULL, 0);
    size_t k = z->count > 0 ? (size_t)z->count : 1;
    z->ends = calloc(k, sizeof *z->ends);
    z->seg_off = calloc(k, sizeof *z->seg_off);
    z->seg_len = calloc(k, sizeof *z->seg_len);
    z->floats = calloc((size_t)z->world, sizeof *z->floats);
    if (!z->ends || !z->seg_off || !z->seg_len || !z->floats) {
        dlt_zero_free(z);
        return DLT_ERR(DLT_ERR_NOMEM, "out of memory for the ZeRO plan");
    }
    dlt_bucket_plan(n, bucket_floats, z->ends, z->count);
    size_t total = 0;
    for (int i = 0; i < z->count; i++) {
        size_t off, len;
        dlt_zero_bucket(z, i, &off, &len);
        for (int p = 0; p < z->world; p++) {
            size_t po, pc;
            dlt_zero_piece(len, z->world, p, &po, &pc);
            z->floats[p] += pc;
            if (p != z->rank) continue;
            z->seg_off[i] = off + po;
            z->seg_len[i] = pc;
            total += pc;
        }
    }
    z->shard = (dlt_optim_shard){ .count = (size_t)z->count, .off = z->seg_off, .len = z->seg_len,
                                  .total = total, .sum = shard_sum, .ctx = z };
    *out = z;
    return DLT_OK;
}

/* Contract: see zero.h. */
void dlt_zero_free(dlt_zero *z)
{
    if (!z) return;
    free(z->ends);
    free(z->seg_off);
    free(z->seg_len);
    free(z->floats);
    free(z);
}

const dlt_optim_shard *dlt_zero_shard(const dlt_zero *z) { return &z->shard; }
int dlt_zero_world(const dlt_zero *z) { return z->world; }
int dlt_zero_count(const dlt_zero *z) { return z->count; }
size_t dlt_zero_arena(const dlt_zero *z) { return z->n; }
size_t dlt_zero_bucket_floats(const dlt_zero *z) { return z->bucket_floats; }
size_t dlt_zero_floats(const dlt_zero *z, int p) { return z->floats[p]; }

/* Contract: see zero.h. */
void dlt_zero_bucket(const dlt_zero *z, int i, size_t *off, size_t *len)
{
    size_t lo = i > 0 ? z->ends[i - 1] : 0;
    *off = lo;
    *len = z->ends[i] - lo;
}

/* Contract: see zero.h. */
dlt_status dlt_zero_gather(dlt_zero *z, const float *packed, float *full, int root)
{
    size_t k = z->count > 0 ? (size_t)z->count : 1, P = (size_t)z->world;
    MPI_Request *req = malloc(k * sizeof *req);
    int *counts = malloc(k * P * sizeof *counts), *displs = malloc(k * P * sizeof *displs);
    if (!req || !counts || !displs) {
        free(req);
        free(counts);
        free(displs);
        return DLT_ERR(DLT_ERR_NOMEM, "out of memory gathering the optimizer state");
    }
    MPI_Comm mc = dlt_comm_mpi(z->comm);
    dlt_status st = DLT_OK;
    int started = 0;
    size_t at = 0; /* this rank's piece of bucket i in packed */
    for (int i = 0; i < z->count; i++) {
        size_t off, len;
        dlt_zero_bucket(z, i, &off, &len);
        for (int p = 0; p < z->world; p++) {
            size_t po, pc;
            dlt_zero_piece(len, z->world, p, &po, &pc);
            counts[(size_t)i * P + (size_t)p] = (int)pc; /* a bucket fits an int (init) */
            displs[(size_t)i * P + (size_t)p] = (int)po;
        }
        int rc = MPI_Igatherv(packed + at, (int)z->seg_len[i], MPI_FLOAT, z->rank == root ? full + off : NULL,
                              counts + (size_t)i * P, displs + (size_t)i * P, MPI_FLOAT, root, mc, &req[i]);
        if (rc != MPI_SUCCESS) {
            st = dlt_comm_mpi_error(rc, "MPI_Igatherv (optimizer state)", __FILE__, __LINE__);
            break;
        }
        started++;
        at += z->seg_len[i];
    }
    /* after a failed wait the job is ending: the rest would only time out too */
    for (int i = 0; i < started; i++) {
        dlt_status w = dlt_comm_wait(z->comm, &req[i], "optimizer state gather");
        if (w != DLT_OK) {
            st = w;
            break;
        }
    }
    free(req);
    free(counts);
    free(displs);
    return st;
}
