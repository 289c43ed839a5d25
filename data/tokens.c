/* Token shards: reading and the token loader.
 *
 * Design. Token data sets are small next to image sets (all of WordNet's
 * glosses at L = 64 are 30 MB), so the shards are read whole into one
 * (N, L) array at open, in glob order; the streaming reader of the image
 * path is not needed here yet. A stream layout needs the first token of the
 * next row as the last target of a row, which one array makes trivial across
 * shard boundaries. The loader reuses the image sampler
 * (dlt_sampler_permutation) and the same cut of global batches over ranks,
 * so the sample order and the masking (keyed by the dataset index of a
 * sample) are the same for any number of ranks. */
#include "data/tokens.h"

#include <glob.h>
#include <hdf5.h>
#include <libgen.h>
#include <stdlib.h>
#include <string.h>

#include "data/data.h"
#include "data/text.h"

#define TOKENS_FORMAT "dltrain-tokens"
#define TOKENS_VERSION 1

struct dlt_tokens {
    int32_t *tok;        /* (n, L) */
    int32_t *labels;     /* (n) or NULL */
    int64_t n;
    int L, vocab, classes, stream;
    char **class_names;  /* (classes) or NULL */
    char path[1024];
    char vocab_path[1200];
};

static int attr_i64(hid_t obj, const char *name, int64_t *v)
{
    if (H5Aexists(obj, name) <= 0) return 0;
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
    int ok = a >= 0 && H5Aread(a, H5T_NATIVE_INT64, v) >= 0;
    if (a >= 0) H5Aclose(a);
    return ok;
}

/* A scalar or list string attribute (variable or fixed length); *n strings. */
static char **attr_strs(hid_t f, const char *name, int *n)
{
    *n = 0;
    if (H5Aexists(f, name) <= 0) return NULL;
    hid_t a = H5Aopen(f, name, H5P_DEFAULT);
    hid_t t = a >= 0 ? H5Aget_type(a) : -1, sp = a >= 0 ? H5Aget_space(a) : -1;
    char **out = NULL;
    hssize_t np = sp >= 0 ? H5Sget_simple_extent_npoints(sp) : -1;
    if (t >= 0 && H5Tget_class(t) == H5T_STRING && np > 0 && np < 1000000) {
        hid_t mt = H5Tcopy(H5T_C_S1);
        H5Tset_cset(mt, H5Tget_cset(t));
        out = calloc((size_t)np, sizeof *out);
        if (H5Tis_variable_str(t) > 0) {
            char **raw = calloc((size_t)np, sizeof *raw);
            if (out && raw && H5Tset_size(mt, H5T_VARIABLE) >= 0 && H5Aread(a, mt, raw) >= 0) {
                for (hssize_t i = 0; i < np; i++) out[i] = strdup(raw[i] ? raw[i] : "");
                H5Dvlen_reclaim(mt, sp, H5P_DEFAULT, raw);
                *n = (int)np;
            }
            free(raw);
        } else {
            size_t sz = H5Tget_size(t);
            char *fixed = calloc((size_t)np, sz + 1);
            if (out && fixed && H5Tset_size(mt, sz + 1) >= 0 && H5Tset_strpad(mt, H5T_STR_NULLTERM) >= 0 &&
                H5Aread(a, mt, fixed) >= 0) {
                for (hssize_t i = 0; i < np; i++) out[i] = strndup(fixed + (size_t)i * (sz + 1), sz);
                *n = (int)np;
            }
            free(fixed);
        }
        H5Tclose(mt);
        if (*n == 0) {
            free(out);
            out = NULL;
        }
    }
    if (sp >= 0) H5Sclose(sp);
    if (t >= 0) H5Tclose(t);
    if (a >= 0) H5Aclose(a);
    return out;
}

static void free_strs(char **s, int n)
{
    for (int i = 0; s && i < n; i++) free(s[i]);
    free(s);
}

/* Appends the shard at path to ds (its arrays grown); first: the first shard. */
static dlt_status read_shard(struct dlt_tokens *ds, const char *path, int first)
{
    dlt_status st = DLT_OK;
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT), d = -1, sp = -1, t = -1, dl = -1;
    if (f < 0) return DLT_ERR(DLT_ERR_IO, "%s: cannot open (not an HDF5 file, or unreadable)", path);
    int ns;
    char **s = attr_strs(f, "format", &ns);
    if (s && strcmp(s[0], TOKENS_FORMAT)) {
        st = DLT_ERR(DLT_ERR_IO, "%s: format is '%s', expected '%s' (is this a token data set?)", path, s[0],
                     TOKENS_FORMAT);
    }
    free_strs(s, ns);
    int64_t ver;
    if (st == DLT_OK && attr_i64(f, "version", &ver) && ver != TOKENS_VERSION)
        st = DLT_ERR(DLT_ERR_IO, "%s: token shard version %lld, this build reads version %d; rewrite it with "
                     "this build's dlprep text", path, (long long)ver, TOKENS_VERSION);
    if (st != DLT_OK) goto done;
    if (H5Lexists(f, "tokens", H5P_DEFAULT) <= 0 || (d = H5Dopen2(f, "tokens", H5P_DEFAULT)) < 0) {
        st = DLT_ERR(DLT_ERR_IO, "%s: no dataset 'tokens'", path);
        goto done;
    }
    sp = H5Dget_space(d);
    t = H5Dget_type(d);
    hsize_t dims[2];
    if (H5Tget_class(t) != H5T_INTEGER || H5Sget_simple_extent_ndims(sp) != 2) {
        st = DLT_ERR(DLT_ERR_IO, "%s: dataset 'tokens' must be an integer array [N, L]", path);
        goto done;
    }
    H5Sget_simple_extent_dims(sp, dims, NULL);
    if (dims[1] < 2 || dims[1] > 65536) {
        st = DLT_ERR(DLT_ERR_IO, "%s: dataset 'tokens' has L = %llu, expected 2..65536", path,
                     (unsigned long long)dims[1]);
        goto done;
    }
    if (!first && (int)dims[1] != ds->L) {
        st = DLT_ERR(DLT_ERR_SHAPE, "%s: dataset 'tokens' has L = %llu but %s has %d", path,
                     (unsigned long long)dims[1], ds->path, ds->L);
        goto done;
    }
    int64_t vocab = 0;
    if (!attr_i64(d, "vocab_size", &vocab) && !attr_i64(f, "vocab_size", &vocab)) {
        st = DLT_ERR(DLT_ERR_IO, "%s: dataset 'tokens' has no attribute 'vocab_size'", path);
        goto done;
    }
    int has_labels = H5Lexists(f, "labels", H5P_DEFAULT) > 0;
    if (!first && has_labels != (ds->labels != NULL)) {
        st = DLT_ERR(DLT_ERR_IO, "%s: %s dataset 'labels' but %s %s", path, has_labels ? "has a" : "lacks the",
                     ds->path, has_labels ? "has none" : "has one");
        goto done;
    }
    int64_t n = (int64_t)dims[0], L = (int64_t)dims[1];
    int32_t *nt = realloc(ds->tok, (size_t)((ds->n + n) * L + 1) * sizeof *nt);
    if (!nt) {
        st = DLT_ERR(DLT_ERR_NOMEM, "%s: out of memory for %lld token rows", path, (long long)n);
        goto done;
    }
    ds->tok = nt;
    if (n > 0 && H5Dread(d, H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, nt + ds->n * L) < 0) {
        st = DLT_ERR(DLT_ERR_IO, "%s: cannot read dataset 'tokens' (truncated or corrupt file?)", path);
        goto done;
    }
    for (int64_t i = 0; i < n * L; i++) {
        int32_t v = nt[ds->n * L + i];
        if (v < 0 || v >= vocab) {
            st = DLT_ERR(DLT_ERR_IO, "%s: dataset 'tokens' holds id %d at row %lld, outside [0, vocab_size %lld)",
                         path, v, (long long)(i / L), (long long)vocab);
            goto done;
        }
    }
    if (has_labels) {
        dl = H5Dopen2(f, "labels", H5P_DEFAULT);
        hid_t ls = dl >= 0 ? H5Dget_space(dl) : -1;
        hsize_t ln = 0;
        int ok = ls >= 0 && H5Sget_simple_extent_ndims(ls) == 1 && H5Sget_simple_extent_dims(ls, &ln, NULL) >= 0;
        if (ls >= 0) H5Sclose(ls);
        if (!ok || (int64_t)ln != n) {
            st = DLT_ERR(DLT_ERR_IO, "%s: dataset 'labels' must be [N] with N = %lld like 'tokens'", path, (long long)n);
            goto done;
        }
        int32_t *nl = realloc(ds->labels, (size_t)(ds->n + n + 1) * sizeof *nl);
        if (!nl) {
            st = DLT_ERR(DLT_ERR_NOMEM, "%s: out of memory", path);
            goto done;
        }
        ds->labels = nl;
        if (n > 0 && H5Dread(dl, H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, nl + ds->n) < 0) {
            st = DLT_ERR(DLT_ERR_IO, "%s: cannot read dataset 'labels'", path);
            goto done;
        }
        for (int64_t i = 0; i < n; i++) {
            if (nl[ds->n + i] < 0) {
                st = DLT_ERR(DLT_ERR_IO, "%s: dataset 'labels' holds %d at %lld (labels must be >= 0)", path,
                             nl[ds->n + i], (long long)i);
                goto done;
            }
            if (nl[ds->n + i] >= ds->classes) ds->classes = nl[ds->n + i] + 1;
        }
    }
    if (first) {
        ds->L = (int)L;
        snprintf(ds->path, sizeof ds->path, "%s", path);
        char **lay = attr_strs(f, "layout", &ns);
        ds->stream = lay && !strcmp(lay[0], "stream");
        free_strs(lay, ns);
        char **voc = attr_strs(f, "vocab", &ns);
        if (voc) {
            char dir[1024];
            snprintf(dir, sizeof dir, "%s", path);
            snprintf(ds->vocab_path, sizeof ds->vocab_path, "%s/%s", dirname(dir), voc[0]);
        }
        free_strs(voc, ns);
        int nc;
        ds->class_names = attr_strs(f, "class_names", &nc);
        if (ds->class_names && nc > ds->classes) ds->classes = nc;
        if (ds->class_names && nc < ds->classes) {
            free_strs(ds->class_names, nc);
            ds->class_names = NULL;
        }
    }
    if (vocab > ds->vocab) ds->vocab = (int)vocab;
    ds->n += n;
done:
    if (dl >= 0) H5Dclose(dl);
    if (t >= 0) H5Tclose(t);
    if (sp >= 0) H5Sclose(sp);
    if (d >= 0) H5Dclose(d);
    H5Fclose(f);
    return st;
}

dlt_status dlt_tokens_open(const char *pattern, dlt_tokens_t *out)
{
    glob_t g;
    int gr = glob(pattern, 0, NULL, &g);
    if (gr != 0 || g.gl_pathc == 0) {
        globfree(&g);
        return DLT_ERR(DLT_ERR_IO, "%s: no token shard matches", pattern);
    }
    struct dlt_tokens *ds = calloc(1, sizeof *ds);
    if (!ds) {
        globfree(&g);
        return DLT_ERR(DLT_ERR_NOMEM, "out of memory");
    }
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    dlt_status st = DLT_OK;
    for (size_t i = 0; i < g.gl_pathc && st == DLT_OK; i++) st = read_shard(ds, g.gl_pathv[i], i == 0);
    if (st == DLT_OK && ds->n == 0) st = DLT_ERR(DLT_ERR_IO, "%s: the token shards hold no rows", pattern);
    if (st == DLT_OK && ds->class_names && ds->classes > 0 && !ds->labels) {
        free_strs(ds->class_names, ds->classes);
        ds->class_names = NULL;
        ds->classes = 0;
    }
    globfree(&g);
    if (st != DLT_OK) {
        dlt_tokens_close(ds);
        return st;
    }
    *out = ds;
    return DLT_OK;
}

void dlt_tokens_close(dlt_tokens_t ds)
{
    if (!ds) return;
    free(ds->tok);
    free(ds->labels);
    free_strs(ds->class_names, ds->classes);
    free(ds);
}

int64_t dlt_tokens_size(dlt_tokens_t ds) { return ds->n; }
int dlt_tokens_seq_len(dlt_tokens_t ds) { return ds->L; }
int dlt_tokens_vocab_size(dlt_tokens_t ds) { return ds->vocab; }
int dlt_tokens_classes(dlt_tokens_t ds) { return ds->labels ? ds->classes : 0; }
const char *dlt_tokens_class_name(dlt_tokens_t ds, int i)
{
    return ds->class_names && i >= 0 && i < ds->classes ? ds->class_names[i] : NULL;
}
int dlt_tokens_is_stream(dlt_tokens_t ds) { return ds->stream; }
const char *dlt_tokens_path(dlt_tokens_t ds) { return ds->path; }
const char *dlt_tokens_vocab_path(dlt_tokens_t ds) { return ds->vocab_path; }
const int32_t *dlt_tokens_row(dlt_tokens_t ds, int64_t i) { return ds->tok + i * ds->L; }
int32_t dlt_tokens_label(dlt_tokens_t ds, int64_t i) { return ds->labels ? ds->labels[i] : -1; }

/* ------------------------------------------------------------------ loader */

struct dlt_tokens_loader {
    dlt_tokens_t ds;
    dlt_tokens_loader_cfg cfg;
    int64_t *perm;       /* (n) this epoch's order (shuffle, sequential) */
    int64_t steps, epoch, step;
    int32_t *scratch;    /* (L) */
};

dlt_status dlt_tokens_loader_init(dlt_tokens_t ds, const dlt_tokens_loader_cfg *cfg, dlt_tokens_loader_t *out)
{
    if (cfg->global_batch < 1 || cfg->world < 1 || cfg->rank < 0 || cfg->rank >= cfg->world)
        return DLT_ERR(DLT_ERR_INVALID, "token loader: bad batch %d / rank %d of %d", cfg->global_batch, cfg->rank,
                       cfg->world);
    if (cfg->task == DLT_TEXT_TASK_CLASSIFY && !ds->labels)
        return DLT_ERR(DLT_ERR_IO, "%s: a classification task needs dataset 'labels' in the token shards", ds->path);
    struct dlt_tokens_loader *l = calloc(1, sizeof *l);
    if (!l) return DLT_ERR(DLT_ERR_NOMEM, "out of memory");
    l->ds = ds;
    l->cfg = *cfg;
    l->perm = malloc((size_t)ds->n * sizeof *l->perm);
    l->scratch = malloc((size_t)ds->L * sizeof *l->scratch);
    if (!l->perm || !l->scratch) {
        dlt_tokens_loader_free(l);
        return DLT_ERR(DLT_ERR_NOMEM, "out of memory for the token loader");
    }
    int64_t b = cfg->global_batch;
    if (cfg->order == DLT_TOKENS_STREAMS || cfg->drop_last) l->steps = ds->n / b;
    else l->steps = (ds->n + b - 1) / b;
    for (int64_t i = 0; i < ds->n; i++) l->perm[i] = i;
    *out = l;
    return DLT_OK;
}

void dlt_tokens_loader_free(dlt_tokens_loader_t l)
{
    if (!l) return;
    free(l->perm);
    free(l->scratch);
    free(l);
}

int64_t dlt_tokens_loader_steps(dlt_tokens_loader_t l) { return l->steps; }

int dlt_tokens_loader_max_local(dlt_tokens_loader_t l)
{
    int b = l->cfg.global_batch, w = l->cfg.world, best = 0;
    for (int r = 0; r < w; r++) {
        int n = (int)((int64_t)(r + 1) * b / w - (int64_t)r * b / w);
        if (n > best) best = n;
    }
    return best;
}

int dlt_tokens_loader_label_numel(dlt_tokens_loader_t l)
{
    return l->cfg.task == DLT_TEXT_TASK_CLASSIFY ? 1 : l->ds->L;
}

dlt_status dlt_tokens_loader_start_epoch(dlt_tokens_loader_t l, int64_t epoch)
{
    l->epoch = epoch;
    l->step = 0;
    if (l->cfg.order == DLT_TOKENS_SHUFFLE) dlt_sampler_permutation(l->cfg.seed, epoch, l->ds->n, l->perm);
    return DLT_OK;
}

void dlt_tokens_loader_skip(dlt_tokens_loader_t l, int64_t k)
{
    l->step = l->step + k < l->steps ? l->step + k : l->steps;
}

/* Dataset index of row `row` of global batch `step`. */
static int64_t sample_index(const struct dlt_tokens_loader *l, int64_t step, int64_t row)
{
    if (l->cfg.order == DLT_TOKENS_STREAMS) return row * l->steps + step;
    return l->perm[step * l->cfg.global_batch + row];
}

dlt_status dlt_tokens_loader_next(dlt_tokens_loader_t l, float *x, int32_t *y, int *n_local, int64_t *sample0,
                                  int *global_n, int64_t *count)
{
    *n_local = 0;
    *global_n = 0;
    *count = 0;
    if (l->step >= l->steps) return DLT_OK;
    const struct dlt_tokens *ds = l->ds;
    int64_t b = l->cfg.global_batch, first = l->step * b;
    int64_t gb = ds->n - first < b && l->cfg.order != DLT_TOKENS_STREAMS ? ds->n - first : b;
    int w = l->cfg.world, r = l->cfg.rank;
    int64_t lo = (int64_t)r * gb / w, hi = (int64_t)(r + 1) * gb / w;
    int L = ds->L;
    int64_t mask_epoch = l->cfg.mask_epoch >= 0 ? l->cfg.mask_epoch : l->epoch;
    for (int64_t row = lo; row < hi; row++) {
        int64_t idx = sample_index(l, l->step, row);
        const int32_t *t = ds->tok + idx * L;
        float *xr = x + (row - lo) * L;
        if (l->cfg.task == DLT_TEXT_TASK_MLM) {
            int32_t *yr = y + (row - lo) * L;
            *count += dlt_text_mask(l->cfg.seed, mask_epoch, idx, l->cfg.mask_prob, ds->vocab, t, L, l->scratch, yr);
            for (int i = 0; i < L; i++) xr[i] = (float)l->scratch[i];
            continue;
        }
        for (int i = 0; i < L; i++) xr[i] = (float)t[i];
        if (l->cfg.task == DLT_TEXT_TASK_CLASSIFY) {
            y[row - lo] = ds->labels[idx];
            (*count)++;
        } else {
            int32_t *yr = y + (row - lo) * L;
            int32_t next = ds->stream && idx + 1 < ds->n ? ds->tok[(idx + 1) * L] : -1;
            dlt_text_lm_targets(t, L, next, yr);
            for (int i = 0; i < L; i++) *count += yr[i] >= 0;
        }
    }
    *n_local = (int)(hi - lo);
    *sample0 = first + lo;
    *global_n = (int)gb;
    l->step++;
    return DLT_OK;
}
