/* The loader: cuts each epoch's permutation into global batches and hands
 * this rank its rows of each, augmented and normalised to floats.
 *
 * Splitting contract (data.h): global batch s of an epoch is positions
 * [s*b, s*b + g) of the permutation, g = b except possibly for the last one
 * (dropped if drop_last, filled up with the epoch's first positions if
 * pad_last); rank r of W takes rows [r*g/W, (r+1)*g/W). The concatenation
 * over ranks, in rank order, is therefore exactly the one-rank batch, which
 * is what makes the trajectory independent of W.
 *
 * One function, produce(epoch, step), makes a batch: read the samples
 * (dataset.c streams them), then per sample either the lookup table of the
 * 256 normalised pixel values per channel (no augmentation: exactly
 * (p/255 - mean[c]) / std[c] in float, torchvision's ToTensor + Normalize)
 * or dlt_augment_sample keyed by (seed, epoch, sample index). It depends on
 * nothing but (epoch, step), so running it ahead on prefetch threads
 * (prefetch.c), or synchronously when prefetch is 0, gives the same bytes,
 * and seeking to (epoch, step) resumes a run exactly.
 *
 * Everything is allocated in dlt_loader_init (permutation, per-worker index,
 * pixel and augmentation scratch, batch buffers), so the step loop never
 * allocates. */
#include "data/data.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "data/prefetch.h"

typedef struct {
    int64_t *idx;         /* (max_local) sample indices of the local batch */
    uint8_t *raw;         /* (max_local, C, H, W) pixels of the local batch */
    void *aug;            /* augmentation scratch */
} scratch;

struct dlt_loader {
    dlt_dataset_t ds;
    int b, rank, world;
    uint64_t seed;
    int shuffle, pad_last;
    int64_t shuffle_block;
    int64_t n;            /* samples in the data set */
    int64_t steps;        /* global batches per epoch */
    int max_local;
    int c, h, w;
    size_t sample_elems;  /* C*H*W */
    int64_t *perm;        /* (n) this epoch's order */
    float *lut;           /* (C, 256) normalised value of each pixel value */
    float *mean, *std;    /* (C) */
    dlt_augment_cfg aug;
    int augment;          /* any random part on */
    int n_scratch;
    scratch *scr;         /* (n_scratch): one per worker */
    dlt_batch sync;       /* the batch buffer when there is no prefetch */
    dlt_backend *mem;     /* host allocator of sync (page-locked on CUDA); NULL: malloc */
    dlt_prefetch *pf;
    int started;
    int64_t epoch, step;  /* the epoch and the next global batch of it */
    int64_t perm_epoch;   /* epoch perm holds; -1: none */
    int64_t next_epoch;   /* the epoch seek asked for, applied by reset_perm */
};

/* Rows [*lo, *hi) of a global batch of g that rank r of w takes. */
static void rank_rows(int64_t g, int r, int w, int64_t *lo, int64_t *hi)
{
    *lo = (int64_t)r * g / w;
    *hi = (int64_t)(r + 1) * g / w;
}

static int64_t rank_count(int64_t g, int r, int w)
{
    int64_t lo, hi;
    rank_rows(g, r, w, &lo, &hi);
    return hi - lo;
}

static dlt_status check_cfg(dlt_dataset_t ds, const dlt_loader_cfg *cfg, int c, int h, int w)
{
    if (cfg->global_batch < 1)
        return DLT_ERR(DLT_ERR_INVALID, "global batch must be >= 1 (got %d)", cfg->global_batch);
    if (cfg->world < 1 || cfg->rank < 0 || cfg->rank >= cfg->world)
        return DLT_ERR(DLT_ERR_INVALID, "loader: rank %d of world %d is not valid", cfg->rank,
                       cfg->world);
    if (cfg->global_batch < cfg->world)
        return DLT_ERR(DLT_ERR_INVALID,
                       "global batch %d is smaller than the number of ranks %d: some ranks "
                       "would get no samples",
                       cfg->global_batch, cfg->world);
    if ((cfg->mean || cfg->std) && cfg->channels != c)
        return DLT_ERR(DLT_ERR_INVALID,
                       "normalisation mean/std have %d channel(s) but %s has %d",
                       cfg->channels, dlt_dataset_path(ds), c);
    for (int i = 0; cfg->std && i < c; i++)
        if (!(cfg->std[i] > 0) || !isfinite(cfg->std[i]))
            return DLT_ERR(DLT_ERR_INVALID, "normalisation std[%d] = %g must be positive", i,
                           (double)cfg->std[i]);
    for (int i = 0; cfg->mean && i < c; i++)
        if (!isfinite(cfg->mean[i]))
            return DLT_ERR(DLT_ERR_INVALID, "normalisation mean[%d] is not finite", i);
    if (cfg->drop_last && dlt_dataset_size(ds) < cfg->global_batch)
        return DLT_ERR(DLT_ERR_INVALID,
                       "%s: %lld samples are fewer than the global batch %d, so drop_last "
                       "leaves no batch",
                       dlt_dataset_path(ds), (long long)dlt_dataset_size(ds), cfg->global_batch);
    if (cfg->prefetch < 0 || cfg->prefetch > 64 || cfg->threads < 0 || cfg->threads > 64)
        return DLT_ERR(DLT_ERR_INVALID, "loader prefetch %d and threads %d must be in 0..64",
                       cfg->prefetch, cfg->threads);
    if (cfg->shuffle_block < 0)
        return DLT_ERR(DLT_ERR_INVALID, "shuffle block %lld must be >= 0", (long long)cfg->shuffle_block);
    return dlt_augment_check(cfg->augment, h, w);
}

/* Contract (prefetch.h, dlt_produce_fn): global batch `step` of l->epoch. */
static dlt_status produce(void *ctx, int worker, int64_t step, dlt_batch *bt)
{
    dlt_loader_t l = ctx;
    scratch *sc = &l->scr[worker];
    int64_t g0 = step * l->b;
    int64_t g = l->pad_last ? l->b : (l->n - g0 < l->b ? l->n - g0 : l->b);
    int64_t lo, hi;
    rank_rows(g, l->rank, l->world, &lo, &hi);
    int nl = (int)(hi - lo);
    for (int i = 0; i < nl; i++) l->scr[worker].idx[i] = l->perm[(g0 + lo + i) % l->n];
    DLT_CHECK(dlt_dataset_read(l->ds, sc->idx, nl, sc->raw, bt->y));

    size_t hw = l->sample_elems / (size_t)l->c;
    for (int i = 0; i < nl; i++) {
        const uint8_t *src = sc->raw + (size_t)i * l->sample_elems; /* (C, H, W) */
        float *dst = bt->x + (size_t)i * l->sample_elems;           /* (C, H, W) */
        if (l->augment) {
            dlt_augment_sample(&l->aug, dlt_augment_key(l->seed, l->epoch, sc->idx[i]), src, l->c,
                               l->h, l->w, l->mean, l->std, dst, sc->aug);
            continue;
        }
        for (int ch = 0; ch < l->c; ch++) {
            const float *lut = l->lut + ch * 256;
            for (size_t k = 0; k < hw; k++) dst[ch * hw + k] = lut[src[ch * hw + k]];
        }
    }
    bt->n = nl;
    bt->global_n = (int)g;
    bt->sample0 = g0 + lo;
    return DLT_OK;
}

/* Contract (data.h): validates cfg against ds (DLT_ERR_INVALID with the
 * reason), allocates every buffer the loader will need and starts the
 * prefetch threads (idle until an epoch starts); ds must outlive the loader. */
/* The synchronous batch buffer: l->mem's host memory when set, else malloc. */
static void *sync_alloc(dlt_loader_t l, size_t bytes)
{
    void *p = NULL;
    if (!l->mem) return malloc(bytes);
    return l->mem->host_alloc(l->mem, bytes, &p) == DLT_OK ? p : NULL;
}

static void sync_free(dlt_loader_t l, void *p)
{
    if (!p) return;
    if (l->mem) l->mem->host_free(l->mem, p);
    else free(p);
}

dlt_status dlt_loader_init(dlt_dataset_t ds, const dlt_loader_cfg *cfg, dlt_loader_t *out)
{
    if (!out) return DLT_ERR(DLT_ERR_INVALID, "dlt_loader_init: out is NULL");
    *out = NULL;
    if (!ds || !cfg) return DLT_ERR(DLT_ERR_INVALID, "dlt_loader_init: data set or config is NULL");
    int c, h, w;
    dlt_dataset_shape(ds, &c, &h, &w);
    DLT_CHECK(check_cfg(ds, cfg, c, h, w));

    dlt_loader_t l = calloc(1, sizeof *l);
    if (!l) return DLT_ERR(DLT_ERR_NOMEM, "out of memory creating the loader");
    l->ds = ds;
    l->b = cfg->global_batch;
    l->rank = cfg->rank;
    l->world = cfg->world;
    l->seed = cfg->seed;
    l->shuffle = cfg->shuffle;
    l->pad_last = cfg->pad_last && !cfg->drop_last;
    l->shuffle_block = cfg->shuffle_block;
    l->n = dlt_dataset_size(ds);
    l->c = c;
    l->h = h;
    l->w = w;
    l->perm_epoch = -1;
    l->sample_elems = (size_t)c * (size_t)h * (size_t)w;
    if (cfg->augment) l->aug = *cfg->augment;
    l->augment = dlt_augment_active(cfg->augment);
    int64_t full = l->n / l->b, rest = l->n % l->b;
    l->steps = full + (rest && !cfg->drop_last ? 1 : 0);
    /* The row count is not monotone in the batch size, so both sizes count. */
    int64_t m = full || l->pad_last ? rank_count(l->b, l->rank, l->world) : 0;
    if (rest && !cfg->drop_last && !l->pad_last && rank_count(rest, l->rank, l->world) > m)
        m = rank_count(rest, l->rank, l->world);
    l->max_local = (int)m;

    size_t cap = (size_t)(m ? m : 1);
    int threads = cfg->prefetch > 0 ? (cfg->threads > 0 ? cfg->threads : 1) : 1;
    l->n_scratch = threads;
    l->perm = malloc((size_t)l->n * sizeof *l->perm);
    l->lut = malloc((size_t)c * 256 * sizeof *l->lut);
    l->mean = malloc((size_t)c * sizeof *l->mean);
    l->std = malloc((size_t)c * sizeof *l->std);
    l->scr = calloc((size_t)l->n_scratch, sizeof *l->scr);
    int ok = l->perm && l->lut && l->mean && l->std && l->scr;
    for (int i = 0; ok && i < l->n_scratch; i++) {
        l->scr[i].idx = malloc(cap * sizeof *l->scr[i].idx);
        l->scr[i].raw = malloc(cap * l->sample_elems);
        l->scr[i].aug = malloc(dlt_augment_scratch_bytes(c, h, w));
        ok = l->scr[i].idx && l->scr[i].raw && l->scr[i].aug;
    }
    if (ok && cfg->prefetch == 0) {
        /* like the prefetch ring, from the backend's host allocator: the
         * trainer uploads straight from this buffer */
        l->mem = cfg->host_mem && cfg->host_mem->host_alloc ? cfg->host_mem : NULL;
        l->sync.x = sync_alloc(l, cap * l->sample_elems * sizeof *l->sync.x);
        l->sync.y = sync_alloc(l, cap * sizeof *l->sync.y);
        ok = l->sync.x && l->sync.y;
    }
    /* touch the batch-sized buffers now, so the first steps do not pay the
     * page faults (the prefetch ring does the same) */
    for (int i = 0; ok && i < l->n_scratch; i++) memset(l->scr[i].raw, 0, cap * l->sample_elems);
    if (ok && l->sync.x) memset(l->sync.x, 0, cap * l->sample_elems * sizeof *l->sync.x);
    if (!ok) {
        dlt_loader_free(l);
        return DLT_ERR(DLT_ERR_NOMEM, "out of memory for the loader of %s", dlt_dataset_path(ds));
    }
    for (int ch = 0; ch < c; ch++) {
        l->mean[ch] = cfg->mean ? cfg->mean[ch] : 0.0f;
        l->std[ch] = cfg->std ? cfg->std[ch] : 1.0f;
        for (int p = 0; p < 256; p++) l->lut[ch * 256 + p] = ((float)p / 255.0f - l->mean[ch]) / l->std[ch];
    }
    if (cfg->prefetch > 0) {
        dlt_status st = dlt_prefetch_init(cfg->host_mem, cfg->prefetch, threads, cap * l->sample_elems, cap, produce,
                                          l, &l->pf);
        if (st != DLT_OK) {
            dlt_loader_free(l);
            return st;
        }
    }
    *out = l;
    return DLT_OK;
}

/* Stops the prefetch threads and releases the loader's buffers (not the
 * data set); NULL is a no-op. */
void dlt_loader_free(dlt_loader_t l)
{
    if (!l) return;
    dlt_prefetch_free(l->pf);
    for (int i = 0; l->scr && i < l->n_scratch; i++) {
        free(l->scr[i].idx);
        free(l->scr[i].raw);
        free(l->scr[i].aug);
    }
    free(l->scr);
    sync_free(l, l->sync.x);
    sync_free(l, l->sync.y);
    free(l->perm);
    free(l->lut);
    free(l->mean);
    free(l->std);
    free(l);
}

/* Accessors (data.h): fixed at init. */
int64_t dlt_loader_steps(dlt_loader_t l) { return l->steps; }

int dlt_loader_max_local(dlt_loader_t l) { return l->max_local; }

/* Computes the permutation of l->epoch (no worker runs while it does). */
static void reset_perm(void *ctx)
{
    dlt_loader_t l = ctx;
    l->epoch = l->next_epoch;
    if (l->perm_epoch == l->epoch) return;
    if (!l->shuffle)
        for (int64_t i = 0; i < l->n; i++) l->perm[i] = i;
    else if (l->shuffle_block > 1)
        dlt_sampler_block_permutation(l->seed, l->epoch, l->n, l->shuffle_block, l->perm);
    else
        dlt_sampler_permutation(l->seed, l->epoch, l->n, l->perm);
    l->perm_epoch = l->epoch;
}

/* Contract (data.h): the order of `epoch` (shuffled by (seed, epoch), or
 * identity), positioned before global batch `step`. Any (epoch, step) may
 * be sought at any time. */
dlt_status dlt_loader_seek(dlt_loader_t l, int64_t epoch, int64_t step)
{
    if (epoch < 0) return DLT_ERR(DLT_ERR_INVALID, "epoch must be >= 0 (got %lld)", (long long)epoch);
    if (step < 0 || step > l->steps)
        return DLT_ERR(DLT_ERR_INVALID, "step %lld is outside the epoch's %lld batches",
                       (long long)step, (long long)l->steps);
    l->step = step;
    /* workers read epoch and perm: reset_perm changes them while none runs */
    l->next_epoch = epoch;
    if (l->pf)
        dlt_prefetch_restart(l->pf, step, l->steps, reset_perm, l);
    else
        reset_perm(l);
    l->started = 1;
    return DLT_OK;
}

dlt_status dlt_loader_start_epoch(dlt_loader_t l, int64_t epoch) { return dlt_loader_seek(l, epoch, 0); }

void dlt_loader_position(dlt_loader_t l, int64_t *epoch, int64_t *step)
{
    *epoch = l->epoch;
    *step = l->step;
}

/* Contract (data.h): this rank's rows of the next global batch, by
 * reference. At the end of the epoch: DLT_OK, *n_local = *global_n = 0.
 * DLT_ERR_INVALID if no epoch was started. Never allocates. */
dlt_status dlt_loader_next_ref(dlt_loader_t l, const float **x, const int32_t **y, int *n_local,
                               int64_t *sample0, int *global_n)
{
    if (!l->started)
        return DLT_ERR(DLT_ERR_INVALID, "dlt_loader_next called before dlt_loader_start_epoch");
    dlt_batch *b = NULL;
    if (l->pf) {
        DLT_CHECK(dlt_prefetch_take(l->pf, &b));
    } else if (l->step < l->steps) {
        DLT_CHECK(produce(l, 0, l->step, &l->sync));
        b = &l->sync;
    }
    if (!b) {
        *n_local = 0;
        *global_n = 0;
        *sample0 = l->steps * l->b;
        *x = NULL;
        *y = NULL;
        return DLT_OK;
    }
    *x = b->x;
    *y = b->y;
    *n_local = b->n;
    *global_n = b->global_n;
    *sample0 = b->sample0;
    l->step++;
    return DLT_OK;
}

/* Contract (data.h): as dlt_loader_next_ref, copied into x (n_local, C, H,
 * W) and y (n_local), both with room for max_local samples. */
dlt_status dlt_loader_next(dlt_loader_t l, float *x, int32_t *y, int *n_local, int64_t *sample0,
                           int *global_n)
{
    const float *bx = NULL;
    const int32_t *by = NULL;
    DLT_CHECK(dlt_loader_next_ref(l, &bx, &by, n_local, sample0, global_n));
    if (*n_local > 0) {
        memcpy(x, bx, (size_t)*n_local * l->sample_elems * sizeof *x);
        memcpy(y, by, (size_t)*n_local * sizeof *y);
    }
    return DLT_OK;
}
