/* Private to data/: the streaming sample reader behind dlt_dataset_read.
 *
 * Samples are never loaded as a whole data set: a read fetches the block
 * (an HDF5 chunk along N, or a run of samples of a contiguous dataset) that
 * holds a sample by one hyperslab read into a small cache of blocks, and
 * at most max_open shard files are open at a time (LRU of handles). Memory
 * is cache_bytes plus a few KiB per shard, whatever the data set's size. */
#ifndef DLT_STREAM_H
#define DLT_STREAM_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

typedef struct {
    char *path;       /* owned by the dataset */
    int64_t first;    /* global index of the shard's sample 0 */
    int64_t n;        /* samples in the shard */
    int64_t block;    /* samples per read block (>= 1) */
} dlt_shard;

typedef struct dlt_stream dlt_stream;

#define DLT_STREAM_MAX_OPEN 16
#define DLT_STREAM_CACHE_BYTES ((size_t)64 << 20)

/* shards (n_shards, sorted by first, kept by the caller while the stream
 * lives); max_open <= 0 and cache_bytes == 0 take the defaults above. Only
 * allocates; opens files lazily. */
dlt_status dlt_stream_open(const dlt_shard *shards, int n_shards, size_t sample_bytes, int max_open,
                           size_t cache_bytes, dlt_stream **out);
void dlt_stream_close(dlt_stream *s);

/* Copies global samples idx[0..n) (each in range, checked by the caller)
 * into dst (n, sample_bytes). Thread-safe (one reader at a time); never
 * allocates after open. Errors name the file and the dataset. */
dlt_status dlt_stream_read(dlt_stream *s, const int64_t *idx, int n, uint8_t *dst);

/* Files open now, blocks read from disk so far (for tests and benchmarks). */
int dlt_stream_open_files(dlt_stream *s);
int64_t dlt_stream_blocks_read(dlt_stream *s);

#endif
