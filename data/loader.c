/* The loader: cuts each epoch's permutation into global batches and hands
 * this rank its rows of each, normalised to floats.
 *
 * Splitting contract (data.h): global batch s of an epoch is positions
 * [s*b, s*b + g) of the permutation, g = b except possibly for the last one
 * (dropped if drop_last); rank r of W takes rows [r*g/W, (r+1)*g/W). The
 * concatenation over ranks, in rank order, is therefore exactly the one-rank
 * batch, which is what makes the trajectory independent of W.
 *
 * Everything is allocated in dlt_loader_init (permutation, index and raw
 * byte buffers sized for the largest local batch, and a per-channel lookup
 * table of the 256 normalised pixel values), so dlt_loader_next never
 * allocates. The table holds exactly (p/255 - mean[c]) / std[c] evaluated in
 * float, the same arithmetic as torchvision's ToTensor + Normalize. */
#include "data/data.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

struct dlt_loader {
    dlt_dataset_t ds;
    int b, rank, world;
    uint64_t seed;
    int shuffle;
    int64_t n;            /* samples in the data set */
    int64_t steps;        /* global batches per epoch */
    int max_local;
    int c;
    size_t sample_elems;  /* C*H*W */
    int64_t *perm;        /* (n) this epoch's order */
    int64_t *idx;         /* (max_local) sample indices of the local batch */
    uint8_t *raw;         /* (max_local, C, H, W) pixels of the local batch */
    float *lut;           /* (C, 256) normalised value of each pixel value */
    int started;
    int64_t step;         /* next global batch of the epoch */
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

static dlt_status check_cfg(dlt_dataset_t ds, const dlt_loader_cfg *cfg, int c)
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
    return DLT_OK;
}

/* Contract (data.h): validates cfg against ds (DLT_ERR_INVALID with the
 * reason) and allocates every buffer the loader will need; ds must outlive
 * the loader. The loader yields nothing until dlt_loader_start_epoch. */
dlt_status dlt_loader_init(dlt_dataset_t ds, const dlt_loader_cfg *cfg, dlt_loader_t *out)
{
    if (!out) return DLT_ERR(DLT_ERR_INVALID, "dlt_loader_init: out is NULL");
    *out = NULL;
    if (!ds || !cfg) return DLT_ERR(DLT_ERR_INVALID, "dlt_loader_init: data set or config is NULL");
    int c, h, w;
    dlt_dataset_shape(ds, &c, &h, &w);
    DLT_CHECK(check_cfg(ds, cfg, c));

    dlt_loader_t l = calloc(1, sizeof *l);
    if (!l) return DLT_ERR(DLT_ERR_NOMEM, "out of memory creating the loader");
    l->ds = ds;
    l->b = cfg->global_batch;
    l->rank = cfg->rank;
    l->world = cfg->world;
    l->seed = cfg->seed;
    l->shuffle = cfg->shuffle;
    l->n = dlt_dataset_size(ds);
    l->c = c;
    l->sample_elems = (size_t)c * (size_t)h * (size_t)w;
    int64_t full = l->n / l->b, rest = l->n % l->b;
    l->steps = full + (rest && !cfg->drop_last ? 1 : 0);
    /* The row count is not monotone in the batch size, so both sizes count. */
    int64_t m = full ? rank_count(l->b, l->rank, l->world) : 0;
    if (rest && !cfg->drop_last && rank_count(rest, l->rank, l->world) > m)
        m = rank_count(rest, l->rank, l->world);
    l->max_local = (int)m;

    size_t cap = (size_t)(m ? m : 1);
    l->perm = malloc((size_t)l->n * sizeof *l->perm);
    l->idx = malloc(cap * sizeof *l->idx);
    l->raw = malloc(cap * l->sample_elems);
    l->lut = malloc((size_t)c * 256 * sizeof *l->lut);
    if (!l->perm || !l->idx || !l->raw || !l->lut) {
        dlt_loader_free(l);
        return DLT_ERR(DLT_ERR_NOMEM, "out of memory for the loader of %s",
                       dlt_dataset_path(ds));
    }
    for (int ch = 0; ch < c; ch++) {
        float mean = cfg->mean ? cfg->mean[ch] : 0.0f;
        float std = cfg->std ? cfg->std[ch] : 1.0f;
        for (int p = 0; p < 256; p++) l->lut[ch * 256 + p] = ((float)p / 255.0f - mean) / std;
    }
    *out = l;
    return DLT_OK;
}

/* Releases the loader's buffers (not the data set); NULL is a no-op. */
void dlt_loader_free(dlt_loader_t l)
{
    if (!l) return;
    free(l->perm);
    free(l->idx);
    free(l->raw);
    free(l->lut);
    free(l);
}

/* Accessors (data.h): fixed at init. */
int64_t dlt_loader_steps(dlt_loader_t l) { return l->steps; }

int dlt_loader_max_local(dlt_loader_t l) { return l->max_local; }

/* Contract (data.h): sets the order of the epoch (shuffled by (seed, epoch),
 * or identity) and rewinds to its first batch. Any epoch >= 0 may be started
 * at any time, which is how a resumed run continues. */
dlt_status dlt_loader_start_epoch(dlt_loader_t l, int64_t epoch)
{
    if (epoch < 0) return DLT_ERR(DLT_ERR_INVALID, "epoch must be >= 0 (got %lld)", (long long)epoch);
    if (l->shuffle)
        dlt_sampler_permutation(l->seed, epoch, l->n, l->perm);
    else
        for (int64_t i = 0; i < l->n; i++) l->perm[i] = i;
    l->started = 1;
    l->step = 0;
    return DLT_OK;
}

/* Contract (data.h): writes this rank's rows of the next global batch into
 * x (n_local, C, H, W) and y (n_local), both with room for max_local
 * samples. At the end of the epoch: DLT_OK, *n_local = *global_n = 0.
 * DLT_ERR_INVALID if no epoch was started. Never allocates. */
dlt_status dlt_loader_next(dlt_loader_t l, float *x, int32_t *y, int *n_local, int64_t *sample0,
                           int *global_n)
{
    if (!l->started)
        return DLT_ERR(DLT_ERR_INVALID, "dlt_loader_next called before dlt_loader_start_epoch");
    if (l->step >= l->steps) {
        *n_local = 0;
        *global_n = 0;
        *sample0 = l->steps * l->b;
        return DLT_OK;
    }
    int64_t g0 = l->step * l->b;
    int64_t g = l->n - g0 < l->b ? l->n - g0 : l->b;
    int64_t lo, hi;
    rank_rows(g, l->rank, l->world, &lo, &hi);
    int nl = (int)(hi - lo);
    for (int i = 0; i < nl; i++) l->idx[i] = l->perm[g0 + lo + i];
    DLT_CHECK(dlt_dataset_read(l->ds, l->idx, nl, l->raw, y));

    size_t hw = l->sample_elems / (size_t)l->c;
    for (int i = 0; i < nl; i++) {
        const uint8_t *src = l->raw + (size_t)i * l->sample_elems; /* (C, H, W) */
        float *dst = x + (size_t)i * l->sample_elems;              /* (C, H, W) */
        for (int ch = 0; ch < l->c; ch++) {
            const float *lut = l->lut + ch * 256;
            for (size_t k = 0; k < hw; k++) dst[ch * hw + k] = lut[src[ch * hw + k]];
        }
    }
    *n_local = nl;
    *global_n = (int)g;
    *sample0 = g0 + lo;
    l->step++;
    return DLT_OK;
}
