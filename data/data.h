/* Image data sets in HDF5 shards, and the loader that makes batches.
 *
 * Format (DESIGN.md): each shard file holds dataset `images` uint8
 * (N, C, H, W) and dataset `labels` int64 (N); optional string attribute
 * `class_names`; file attribute `format` = "dltrain-images", `version` = 1
 * (files without them, e.g. written by hand with h5py, are accepted).
 * A data set is a glob of shards, ordered by name; sample i is counted
 * across the shards in that order.
 *
 * The loader: each epoch a permutation seeded by (seed, epoch) over all
 * samples is cut into global batches; rank r of W takes rows
 * [r*b/W, (r+1)*b/W) of a global batch of b, so the global batch, and thus
 * the training trajectory, does not depend on W. The reader streams: images
 * are read by hyperslab in blocks (HDF5 chunks) through a small cache with a
 * bounded number of open files, so a data set may be far larger than memory.
 * Batches are prepared ahead by background threads (prefetch) and augmented
 * per sample (augment.h), deterministically from (seed, epoch, sample). */
#ifndef DLT_DATA_H
#define DLT_DATA_H

#include <stddef.h>
#include <stdint.h>

#include "core/backend.h"
#include "core/status.h"
#include "data/augment.h"

typedef struct dlt_dataset *dlt_dataset_t;

/* Opens every file matching pattern. Errors name the file: no match,
 * unreadable, missing dataset, wrong dtype/rank, shards of different shapes,
 * labels < 0. */
dlt_status dlt_dataset_open(const char *pattern, dlt_dataset_t *out);
void dlt_dataset_close(dlt_dataset_t ds);

int64_t dlt_dataset_size(dlt_dataset_t ds);
/* Per-sample shape (C, H, W). */
void dlt_dataset_shape(dlt_dataset_t ds, int *c, int *h, int *w);
/* 1 + the largest label, or the number of class_names if larger. */
int dlt_dataset_classes(dlt_dataset_t ds);
/* Class name i, or NULL if the shards carry none. */
const char *dlt_dataset_class_name(dlt_dataset_t ds, int i);
/* The file of the first shard, for messages. */
const char *dlt_dataset_path(dlt_dataset_t ds);

/* Copies samples idx[0..n) into x (n, C, H, W) and y (n, or NULL). Thread-safe. */
dlt_status dlt_dataset_read(dlt_dataset_t ds, const int64_t *idx, int n, uint8_t *x, int32_t *y);

/* Reader limits: at most max_open shard files open at once (<= 0: 16) and
 * cache_bytes of cached blocks (0: 64 MiB; at least two blocks). Call before
 * reading concurrently (not while a loader's prefetch threads run). */
dlt_status dlt_dataset_set_limits(dlt_dataset_t ds, int max_open, size_t cache_bytes);
/* Shard files open now; blocks read from disk so far (tests, benchmarks). */
int dlt_dataset_open_files(dlt_dataset_t ds);
int64_t dlt_dataset_blocks_read(dlt_dataset_t ds);

/* perm (n) = a permutation of [0, n) that depends only on (seed, epoch). */
void dlt_sampler_permutation(uint64_t seed, int64_t epoch, int64_t n, int64_t *perm);

/* Locality: [0, n) cut into blocks of `block` contiguous samples (the last
 * may be shorter); the blocks are visited in a shuffled order and each is
 * shuffled inside, all from (seed, epoch). Still a permutation, so every
 * sample is used once per epoch; consecutive positions (a rank's rows of a
 * global batch) come mostly from one block, i.e. from one region of a shard.
 * block <= 1 is dlt_sampler_permutation. */
void dlt_sampler_block_permutation(uint64_t seed, int64_t epoch, int64_t n, int64_t block,
                                   int64_t *perm);

typedef struct {
    int global_batch;
    int rank, world;
    uint64_t seed;
    int shuffle;             /* 0: identity order (evaluation) */
    int drop_last;           /* 1: skip the last partial global batch */
    int channels;            /* length of mean/std */
    const float *mean;       /* per channel, applied to pixel/255; NULL: 0 */
    const float *std;        /* per channel; NULL: 1 */
    /* Added with the streaming pipeline; zero values keep the behaviour above. */
    int pad_last;            /* 1: fill the last global batch to global_batch with the
                                epoch's first samples (no partial batch; a few samples
                                twice); ignored with drop_last */
    int64_t shuffle_block;   /* > 1: locality shuffle in blocks of this many samples */
    int prefetch;            /* batches prepared ahead by background threads; 0: none */
    int threads;             /* worker threads when prefetch > 0 (0: 1) */
    const dlt_augment_cfg *augment; /* per-sample random augmentation; NULL: none */
    dlt_backend *host_mem;   /* its host_alloc gives the batch buffers, prefetched or not
                              * (page-locked on CUDA, so uploads straight from them are
                              * true async copies); NULL: malloc */
} dlt_loader_cfg;

typedef struct dlt_loader *dlt_loader_t;

dlt_status dlt_loader_init(dlt_dataset_t ds, const dlt_loader_cfg *cfg, dlt_loader_t *out);
void dlt_loader_free(dlt_loader_t l);

/* Global batches per epoch. */
int64_t dlt_loader_steps(dlt_loader_t l);
/* Largest local batch this rank will be given. */
int dlt_loader_max_local(dlt_loader_t l);
dlt_status dlt_loader_start_epoch(dlt_loader_t l, int64_t epoch);

/* Positions the loader at global batch `step` of `epoch` (0 <= step <=
 * steps): the next dlt_loader_next returns exactly what an uninterrupted run
 * got there. The sampler state of a checkpoint is (epoch, step). */
dlt_status dlt_loader_seek(dlt_loader_t l, int64_t epoch, int64_t step);
/* The position the next dlt_loader_next reads: epoch and step in it. */
void dlt_loader_position(dlt_loader_t l, int64_t *epoch, int64_t *step);

/* Next batch of this rank: x host (n, C, H, W) floats, normalised; y (n).
 * *n_local may be 0 on some rank for a tiny last batch. *sample0 is the
 * global position (epoch-relative step * global batch + row offset) of the
 * first local sample, for per-sample random streams. *global_n is the size of
 * this global batch. Returns DLT_OK with *global_n == 0 at the end of the epoch. */
dlt_status dlt_loader_next(dlt_loader_t l, float *x, int32_t *y, int *n_local,
                           int64_t *sample0, int *global_n);

/* As dlt_loader_next without the copy: *x (n_local, C, H, W) and *y point
 * into the loader's batch buffer, valid until the next call on l. (With
 * CUDA, those buffers are where pinned host memory belongs.) */
dlt_status dlt_loader_next_ref(dlt_loader_t l, const float **x, const int32_t **y, int *n_local,
                               int64_t *sample0, int *global_n);

#endif
