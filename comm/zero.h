/* ZeRO-1: the optimizer state sharded over the data-parallel ranks.
 *
 * Layout. The gradient arena is cut into the same buckets the allreduce
 * uses (dlt_bucket_plan: prefixes in backward order), and every bucket into
 * world pieces: rank p owns [p q, (p + 1) q) of a bucket of len floats,
 * q = len / world, and the last rank also owns the remainder (fewer than
 * world floats). So each bucket's reduce-scatter starts the moment the
 * bucket is ready, exactly like its allreduce did, and needs no padding.
 * A rank's shard is its piece of every bucket; the optimizer (core/optim.h,
 * dlt_optim_shard) keeps state only for those segments, packed back to back.
 *
 * The buckets (comm/bucket.h, dlt_buckets_init_zero) reduce-scatter the
 * gradients into place (each rank's piece of the arena holds the global sum;
 * the rest keeps local values that nothing reads) and all-gather the updated
 * parameters. This file only holds the plan, the scalar sum the optimizer
 * needs for global norms, and the gather of optimizer state for checkpoints. */
#ifndef DLT_ZERO_H
#define DLT_ZERO_H

#include <stddef.h>

#include "comm/comm.h"
#include "core/optim.h"
#include "core/status.h"

typedef struct dlt_zero dlt_zero;

/* Piece of rank p (0 <= p < world) in a bucket of len floats: [*off, *off +
 * *cnt) relative to the bucket start. Inline so the NCCL half (a separate
 * shared object) uses the very same rule. */
static inline void dlt_zero_piece(size_t len, int world, int p, size_t *off, size_t *cnt)
{
    size_t q = len / (size_t)world;
    *off = q * (size_t)p;
    *cnt = p == world - 1 ? len - *off : q;
}

/* Plans the shards of an arena of n floats in buckets of bucket_floats
 * (as dlt_buckets_init: 0 = one bucket) over c's ranks. Local, not
 * collective: every rank computes the same plan. DLT_ERR_INVALID for a
 * bucket over INT_MAX floats, DLT_ERR_NOMEM. */
dlt_status dlt_zero_init(dlt_comm_t c, size_t n, size_t bucket_floats, dlt_zero **out);
/* NULL is a no-op. */
void dlt_zero_free(dlt_zero *z);

/* This rank's segments and the over-ranks sum, for dlt_optim.shard. Valid
 * until dlt_zero_free. */
const dlt_optim_shard *dlt_zero_shard(const dlt_zero *z);

int dlt_zero_world(const dlt_zero *z);
int dlt_zero_count(const dlt_zero *z);           /* buckets */
size_t dlt_zero_arena(const dlt_zero *z);        /* n */
size_t dlt_zero_bucket_floats(const dlt_zero *z); /* as planned (0 clamped as dlt_buckets_init does) */
/* Offset and length (floats) of bucket i. */
void dlt_zero_bucket(const dlt_zero *z, int i, size_t *off, size_t *len);
/* Floats rank p owns (its optimizer state per state arena). */
size_t dlt_zero_floats(const dlt_zero *z, int p);

/* Collective: every rank passes its packed shard (host memory,
 * dlt_zero_floats(z, rank) floats, in segment order); root receives the full
 * layout into full (host, n floats; ignored elsewhere). DLT_ERR_COMM through
 * the guarded wait, DLT_ERR_NOMEM. */
dlt_status dlt_zero_gather(dlt_zero *z, const float *packed, float *full, int root);

#endif
