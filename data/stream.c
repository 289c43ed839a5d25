/* The streaming sample reader (stream.h).
 *
 * Design. The unit of I/O is a block: samples [b*block, (b+1)*block) of one
 * shard, which dataset.c sets to the dataset's chunk extent along N (so a
 * block read decompresses each gzip chunk once and reads it whole) or, for
 * contiguous datasets, to a run of ~256 KiB. A miss reads the block with one
 * hyperslab H5Dread into the next cache slot in round-robin order (FIFO:
 * O(1), and as good as LRU for one pass over shuffled blocks); samples are
 * then memcpy'd out. A table indexed by global block number (4 bytes a
 * block) finds the slot of a cached block in O(1). With the sampler's locality mode (shuffled blocks of
 * contiguous samples) consecutive reads hit the same block, so each block is
 * read about once per epoch; with a full shuffle over a set much larger than
 * the cache each sample costs a block read, which is why that mode suits
 * small sets (they fit the cache after the first epoch) and chunk sizes of a
 * few samples.
 *
 * Files: each shard's file and `images` dataset handle stay open until
 * max_open other shards have been used more recently (LRU), so a glob of
 * thousands of shards never holds thousands of descriptors. HDF5's own chunk
 * cache is disabled (our blocks are the cache). HDF5 here is built
 * thread-safe; the mutex only serialises our cache state, and the calls do
 * not print HDF5's error stack (the caller's message says it in one line). */
#include "data/stream.h"

#include <hdf5.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    hid_t file, dset;     /* H5I_INVALID_HID when closed */
    uint64_t used;        /* tick of last use */
} handle;

typedef struct {
    int64_t gblock;       /* global block number; -1: empty */
    uint8_t *data;        /* (block, sample_bytes) */
} slot;

struct dlt_stream {
    const dlt_shard *shards;
    int n_shards;
    size_t sample_bytes;
    int max_open, n_open;
    handle *h;            /* (n_shards) */
    slot *slots;          /* (n_slots) */
    int n_slots, next;    /* next: the slot the next miss overwrites */
    int64_t *block0;      /* (n_shards) global number of each shard's block 0 */
    int32_t *where;       /* (total blocks) slot holding the block, or -1 */
    uint64_t tick;
    int64_t blocks_read;
    hid_t dapl;
    pthread_mutex_t mu;
};

/* Contract (stream.h). */
dlt_status dlt_stream_open(const dlt_shard *shards, int n_shards, size_t sample_bytes, int max_open,
                           size_t cache_bytes, dlt_stream **out)
{
    *out = NULL;
    dlt_stream *s = calloc(1, sizeof *s);
    if (!s) return DLT_ERR(DLT_ERR_NOMEM, "out of memory for the shard reader");
    s->shards = shards;
    s->n_shards = n_shards;
    s->sample_bytes = sample_bytes;
    s->max_open = max_open > 0 ? max_open : DLT_STREAM_MAX_OPEN;
    s->dapl = H5I_INVALID_HID;
    pthread_mutex_init(&s->mu, NULL);
    if (!cache_bytes) cache_bytes = DLT_STREAM_CACHE_BYTES;
    int64_t max_block = 1;
    for (int i = 0; i < n_shards; i++)
        if (shards[i].block > max_block) max_block = shards[i].block;
    size_t block_bytes = (size_t)max_block * sample_bytes;
    /* at least two slots, so a batch straddling two blocks does not thrash */
    size_t n = cache_bytes / block_bytes;
    s->n_slots = (int)(n < 2 ? 2 : n > 4096 ? 4096 : n);
    s->h = calloc((size_t)n_shards, sizeof *s->h);
    s->slots = calloc((size_t)s->n_slots, sizeof *s->slots);
    s->block0 = calloc((size_t)n_shards + 1, sizeof *s->block0);
    if (!s->h || !s->slots || !s->block0) goto nomem;
    for (int i = 0; i < n_shards; i++)
        s->block0[i + 1] = s->block0[i] + (shards[i].n + shards[i].block - 1) / shards[i].block;
    s->where = malloc(((size_t)s->block0[n_shards] + 1) * sizeof *s->where);
    if (!s->where) goto nomem;
    for (int64_t b = 0; b < s->block0[n_shards]; b++) s->where[b] = -1;
    for (int i = 0; i < n_shards; i++) s->h[i].file = s->h[i].dset = H5I_INVALID_HID;
    for (int i = 0; i < s->n_slots; i++) {
        s->slots[i].gblock = -1;
        s->slots[i].data = malloc(block_bytes);
        if (!s->slots[i].data) goto nomem;
    }
    s->dapl = H5Pcreate(H5P_DATASET_ACCESS);
    if (s->dapl < 0 || H5Pset_chunk_cache(s->dapl, H5D_CHUNK_CACHE_NSLOTS_DEFAULT, 0, 1.0) < 0) {
        dlt_stream_close(s);
        return DLT_ERR(DLT_ERR_IO, "cannot set up HDF5 dataset access properties");
    }
    *out = s;
    return DLT_OK;
nomem:;
    int slots = s->n_slots;
    dlt_stream_close(s);
    return DLT_ERR(DLT_ERR_NOMEM, "out of memory for the shard reader cache (%d blocks of %zu bytes)",
                   slots, block_bytes);
}

static void close_handle(dlt_stream *s, int i)
{
    if (s->h[i].dset >= 0) H5Dclose(s->h[i].dset);
    if (s->h[i].file >= 0) H5Fclose(s->h[i].file);
    if (s->h[i].file >= 0) s->n_open--;
    s->h[i].file = s->h[i].dset = H5I_INVALID_HID;
}

/* Releases handles and buffers; NULL is a no-op. */
void dlt_stream_close(dlt_stream *s)
{
    if (!s) return;
    for (int i = 0; s->h && i < s->n_shards; i++) close_handle(s, i);
    for (int i = 0; s->slots && i < s->n_slots; i++) free(s->slots[i].data);
    free(s->slots);
    free(s->h);
    free(s->block0);
    free(s->where);
    if (s->dapl >= 0) H5Pclose(s->dapl);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

/* Opens shard i's file and dataset, closing the least recently used
 * handle first if max_open are open. */
static dlt_status ensure_open(dlt_stream *s, int i)
{
    handle *h = &s->h[i];
    h->used = ++s->tick;
    if (h->dset >= 0) return DLT_OK;
    if (s->n_open >= s->max_open) {
        int lru = -1;
        for (int k = 0; k < s->n_shards; k++)
            if (s->h[k].file >= 0 && (lru < 0 || s->h[k].used < s->h[lru].used)) lru = k;
        if (lru >= 0) close_handle(s, lru);
    }
    const char *path = s->shards[i].path;
    h->file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (h->file < 0)
        return DLT_ERR(DLT_ERR_IO, "%s: cannot open HDF5 file (removed, corrupt or truncated since "
                                   "the data set was opened?)", path);
    s->n_open++;
    h->dset = H5Dopen2(h->file, "images", s->dapl);
    if (h->dset < 0) {
        close_handle(s, i);
        return DLT_ERR(DLT_ERR_IO, "%s: cannot open dataset 'images'", path);
    }
    return DLT_OK;
}

/* Reads block b of shard i into slot sl. */
static dlt_status read_block(dlt_stream *s, int i, int64_t b, slot *sl)
{
    DLT_CHECK(ensure_open(s, i));
    const dlt_shard *sh = &s->shards[i];
    int64_t lo = b * sh->block, n = sh->n - lo < sh->block ? sh->n - lo : sh->block;
    hid_t d = s->h[i].dset;
    hid_t fsp = H5Dget_space(d);
    hsize_t dims[4], start[4] = { (hsize_t)lo, 0, 0, 0 }, count[4];
    int ok = fsp >= 0 && H5Sget_simple_extent_dims(fsp, dims, NULL) == 4;
    if (ok) {
        count[0] = (hsize_t)n;
        count[1] = dims[1];
        count[2] = dims[2];
        count[3] = dims[3];
        ok = H5Sselect_hyperslab(fsp, H5S_SELECT_SET, start, NULL, count, NULL) >= 0;
    }
    /* the memory space has the selection's shape: HDF5 then copies runs, not elements */
    hid_t msp = ok ? H5Screate_simple(4, count, NULL) : H5I_INVALID_HID;
    ok = ok && msp >= 0 && H5Dread(d, H5T_NATIVE_UINT8, msp, fsp, H5P_DEFAULT, sl->data) >= 0;
    if (msp >= 0) H5Sclose(msp);
    if (fsp >= 0) H5Sclose(fsp);
    if (!ok)
        return DLT_ERR(DLT_ERR_IO, "%s: cannot read samples [%lld, %lld) of dataset 'images' "
                                   "(corrupt or truncated file?)",
                       sh->path, (long long)lo, (long long)(lo + n));
    s->blocks_read++;
    return DLT_OK;
}

/* The shard holding global sample k (binary search over first). */
static int find_shard(const dlt_stream *s, int64_t k)
{
    int lo = 0, hi = s->n_shards - 1;
    while (lo < hi) {
        int mid = (lo + hi + 1) / 2;
        if (s->shards[mid].first <= k) lo = mid;
        else hi = mid - 1;
    }
    return lo;
}

/* Copies one sample through the cache. */
static dlt_status read_one(dlt_stream *s, int64_t k, uint8_t *dst)
{
    int i = find_shard(s, k);
    const dlt_shard *sh = &s->shards[i];
    int64_t local = k - sh->first, b = local / sh->block, gb = s->block0[i] + b;
    int j = s->where[gb];
    if (j < 0) {
        j = s->next;
        s->next = (s->next + 1) % s->n_slots;
        slot *old = &s->slots[j];
        if (old->gblock >= 0) s->where[old->gblock] = -1;
        old->gblock = -1;
        DLT_CHECK(read_block(s, i, b, old));
        old->gblock = gb;
        s->where[gb] = j;
    }
    slot *sl = &s->slots[j];
    memcpy(dst, sl->data + (size_t)(local - b * sh->block) * s->sample_bytes, s->sample_bytes);
    return DLT_OK;
}

/* Contract (stream.h). */
dlt_status dlt_stream_read(dlt_stream *s, const int64_t *idx, int n, uint8_t *dst)
{
    dlt_status st = DLT_OK;
    H5E_auto2_t fn = NULL;
    void *data = NULL;
    pthread_mutex_lock(&s->mu);
    H5Eget_auto2(H5E_DEFAULT, &fn, &data);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    for (int j = 0; j < n && st == DLT_OK; j++) st = read_one(s, idx[j], dst + (size_t)j * s->sample_bytes);
    H5Eset_auto2(H5E_DEFAULT, fn, data);
    pthread_mutex_unlock(&s->mu);
    return st;
}

int dlt_stream_open_files(dlt_stream *s) { return s->n_open; }

int64_t dlt_stream_blocks_read(dlt_stream *s) { return s->blocks_read; }
