/* Image data set: a glob of HDF5 shards, streamed.
 *
 * Opening is two passes over the shards, in glob(3) order (sorted by name):
 * the first validates every file (format/version attributes, the `images`
 * and `labels` datasets' type, rank and length, the per-sample shape being
 * the same everywhere, class_names agreeing), adds up the sample count and
 * notes each shard's chunking; the second reads and checks the labels (4
 * bytes a sample are kept in memory: cheap, and a bad label is reported at
 * open, not hours into training). Images are never loaded as a whole: reads
 * go through the streaming reader (stream.c), a small cache of blocks (HDF5
 * chunks along N, or ~256 KiB runs of contiguous datasets) and a bounded
 * set of open files, so memory does not grow with the data set.
 *
 * Every error names the file and what is wrong in one line. HDF5 would also
 * print its own error stack to stderr; its automatic printing is switched off
 * while we open (and restored after), so the user sees only our line.
 *
 * Labels are stored as int64 on disk (any integer type is accepted) and kept
 * as int32 in memory, which is what the loss kernels take. */
#include "data/data.h"

#include <errno.h>
#include <glob.h>
#include <hdf5.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "data/stream.h"

#define DLT_IMAGES_FORMAT "dltrain-images"
#define DLT_IMAGES_VERSION 1
#define CONTIG_BLOCK_BYTES ((size_t)256 << 10) /* read run of a contiguous dataset */
#define MAX_BLOCK_BYTES ((size_t)16 << 20)     /* larger chunks are read in parts */

struct dlt_dataset {
    char *path;           /* first shard, for messages */
    int64_t n;            /* samples over all shards */
    int c, h, w;
    size_t sample_bytes;  /* C*H*W */
    dlt_shard *shards;    /* (n_shards) */
    int n_shards;
    dlt_stream *stream;
    int32_t *labels;      /* (n) */
    int n_names;
    char **names;         /* (n_names) or NULL */
    int classes;
};


/* "uint8", "float32", "string", ... for messages about a wrong dtype. */
static const char *type_desc(hid_t t, char *buf, size_t len)
{
    size_t bits = H5Tget_size(t) * 8;
    switch (H5Tget_class(t)) {
    case H5T_INTEGER:
        snprintf(buf, len, "%sint%zu", H5Tget_sign(t) == H5T_SGN_NONE ? "u" : "", bits);
        break;
    case H5T_FLOAT: snprintf(buf, len, "float%zu", bits); break;
    case H5T_STRING: snprintf(buf, len, "string"); break;
    case H5T_COMPOUND: snprintf(buf, len, "compound"); break;
    default: snprintf(buf, len, "a non-numeric type"); break;
    }
    return buf;
}

/* "[10, 28, 28]" for messages about a wrong shape. */
static const char *dims_desc(const hsize_t *d, int nd, char *buf, size_t len)
{
    size_t o = (size_t)snprintf(buf, len, "[");
    for (int i = 0; i < nd && o < len; i++)
        o += (size_t)snprintf(buf + o, len - o, "%s%llu", i ? ", " : "", (unsigned long long)d[i]);
    if (o < len) snprintf(buf + o, len - o, "]");
    return buf;
}

static void free_names(char **names, int n)
{
    if (!names) return;
    for (int i = 0; i < n; i++) free(names[i]);
    free(names);
}

/* Reads string attribute `name` of obj (scalar or 1-D; variable- or
 * fixed-length, as h5py writes str and bytes) into *out (malloc'd strings,
 * *count of them). DLT_ERR_IO naming path if it is not a string attribute. */
static dlt_status read_str_attr(const char *path, hid_t obj, const char *name, char ***out,
                                int *count)
{
    dlt_status st = DLT_OK;
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
    hid_t t = a >= 0 ? H5Aget_type(a) : H5I_INVALID_HID;
    hid_t sp = a >= 0 ? H5Aget_space(a) : H5I_INVALID_HID;
    hid_t mt = H5I_INVALID_HID;
    char **names = NULL;
    char *fixed = NULL;
    hssize_t np = 0;
    *out = NULL;
    *count = 0;
    if (a < 0 || t < 0 || sp < 0) {
        st = DLT_ERR(DLT_ERR_IO, "%s: cannot read attribute '%s'", path, name);
        goto done;
    }
    if (H5Tget_class(t) != H5T_STRING) {
        char tb[32];
        st = DLT_ERR(DLT_ERR_IO, "%s: attribute '%s' is %s, expected string(s)", path, name,
                     type_desc(t, tb, sizeof tb));
        goto done;
    }
    int nd = H5Sget_simple_extent_ndims(sp);
    np = H5Sget_simple_extent_npoints(sp);
    if (nd > 1 || np < 0 || np > 1000000) {
        st = DLT_ERR(DLT_ERR_IO, "%s: attribute '%s' must be a string or a list of strings", path,
                     name);
        goto done;
    }
    int n = (int)np;
    names = calloc((size_t)(n ? n : 1), sizeof *names);
    if (!names) {
        st = DLT_ERR(DLT_ERR_NOMEM, "%s: out of memory reading attribute '%s'", path, name);
        goto done;
    }
    /* HDF5 converts strings only within one character set (h5py writes UTF-8). */
    mt = H5Tcopy(H5T_C_S1);
    if (mt < 0 || H5Tset_cset(mt, H5Tget_cset(t)) < 0) {
        st = DLT_ERR(DLT_ERR_IO, "%s: cannot read strings of attribute '%s'", path, name);
        goto done;
    }
    if (H5Tis_variable_str(t) > 0) {
        char **raw = calloc((size_t)(n ? n : 1), sizeof *raw);
        if (!raw || H5Tset_size(mt, H5T_VARIABLE) < 0 || H5Aread(a, mt, raw) < 0) {
            free(raw);
            st = DLT_ERR(DLT_ERR_IO, "%s: cannot read strings of attribute '%s'", path, name);
            goto done;
        }
        for (int i = 0; i < n && st == DLT_OK; i++) {
            names[i] = strdup(raw[i] ? raw[i] : "");
            if (!names[i]) st = DLT_ERR(DLT_ERR_NOMEM, "%s: out of memory", path);
        }
        H5Dvlen_reclaim(mt, sp, H5P_DEFAULT, raw);
        free(raw);
        if (st != DLT_OK) goto done;
    } else {
        size_t sz = H5Tget_size(t);
        /* One extra byte per string: fixed-length strings need not be terminated. */
        fixed = calloc((size_t)(n ? n : 1), sz + 1);
        if (!fixed || H5Tset_size(mt, sz + 1) < 0 || H5Tset_strpad(mt, H5T_STR_NULLTERM) < 0 ||
            H5Aread(a, mt, fixed) < 0) {
            st = DLT_ERR(DLT_ERR_IO, "%s: cannot read strings of attribute '%s'", path, name);
            goto done;
        }
        for (int i = 0; i < n && st == DLT_OK; i++) {
            names[i] = strndup(fixed + (size_t)i * (sz + 1), sz);
            if (!names[i]) st = DLT_ERR(DLT_ERR_NOMEM, "%s: out of memory", path);
        }
        if (st != DLT_OK) goto done;
    }
    *out = names;
    *count = n;
    names = NULL;
done:
    free_names(names, (int)(np > 0 ? np : 0));
    free(fixed);
    if (mt >= 0) H5Tclose(mt);
    if (sp >= 0) H5Sclose(sp);
    if (t >= 0) H5Tclose(t);
    if (a >= 0) H5Aclose(a);
    return st;
}

/* Checks the optional `format` and `version` attributes of an open shard. */
static dlt_status check_format(const char *path, hid_t f)
{
    if (H5Aexists(f, "format") > 0) {
        char **s;
        int n;
        DLT_CHECK(read_str_attr(path, f, "format", &s, &n));
        int ok = n == 1 && strcmp(s[0], DLT_IMAGES_FORMAT) == 0;
        dlt_status st = ok ? DLT_OK
                           : DLT_ERR(DLT_ERR_IO,
                                     "%s: format is '%s', expected '%s' (is this an image data set?)",
                                     path, n >= 1 ? s[0] : "", DLT_IMAGES_FORMAT);
        free_names(s, n);
        DLT_CHECK(st);
    }
    if (H5Aexists(f, "version") > 0) {
        hid_t a = H5Aopen(f, "version", H5P_DEFAULT);
        hid_t t = a >= 0 ? H5Aget_type(a) : H5I_INVALID_HID;
        hid_t sp = a >= 0 ? H5Aget_space(a) : H5I_INVALID_HID;
        int64_t v = -1;
        int ok = t >= 0 && sp >= 0 && H5Tget_class(t) == H5T_INTEGER &&
                 H5Sget_simple_extent_npoints(sp) == 1 && H5Aread(a, H5T_NATIVE_INT64, &v) >= 0;
        if (sp >= 0) H5Sclose(sp);
        if (t >= 0) H5Tclose(t);
        if (a >= 0) H5Aclose(a);
        if (!ok) return DLT_ERR(DLT_ERR_IO, "%s: attribute 'version' is not an integer", path);
        if (v != DLT_IMAGES_VERSION)
            return DLT_ERR(DLT_ERR_IO,
                           "%s: shard format version %lld is not supported (this build reads "
                           "version %d); rewrite the shards with this build's dlprep or update dltrain",
                           path, (long long)v, DLT_IMAGES_VERSION);
    }
    return DLT_OK;
}

/* Opens dataset `name` of f and returns its dims (rank in *nd, up to 8) and
 * type; the caller closes both. Missing dataset: DLT_ERR_IO naming path. */
static dlt_status open_dset(const char *path, hid_t f, const char *name, const char *expect,
                            hid_t *d, hid_t *t, hsize_t *dims, int *nd)
{
    *d = *t = H5I_INVALID_HID;
    if (H5Lexists(f, name, H5P_DEFAULT) <= 0)
        return DLT_ERR(DLT_ERR_IO, "%s: no dataset '%s' (expected %s)", path, name, expect);
    *d = H5Dopen2(f, name, H5P_DEFAULT);
    if (*d < 0) return DLT_ERR(DLT_ERR_IO, "%s: '%s' is not a readable dataset", path, name);
    *t = H5Dget_type(*d);
    hid_t sp = H5Dget_space(*d);
    *nd = sp >= 0 ? H5Sget_simple_extent_ndims(sp) : -1;
    int ok = *t >= 0 && *nd >= 0 && *nd <= 8 && H5Sget_simple_extent_dims(sp, dims, NULL) >= 0;
    if (sp >= 0) H5Sclose(sp);
    if (!ok) return DLT_ERR(DLT_ERR_IO, "%s: cannot read the shape of dataset '%s'", path, name);
    return DLT_OK;
}

static void close_dset(hid_t d, hid_t t)
{
    if (t >= 0) H5Tclose(t);
    if (d >= 0) H5Dclose(d);
}

static dlt_status open_file(const char *path, hid_t *f)
{
    struct stat sb;
    if (access(path, R_OK) != 0)
        return DLT_ERR(DLT_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    if (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode))
        return DLT_ERR(DLT_ERR_IO, "%s: is a directory, expected an HDF5 shard file", path);
    if (H5Fis_hdf5(path) <= 0) return DLT_ERR(DLT_ERR_IO, "%s: not an HDF5 file", path);
    *f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (*f < 0) return DLT_ERR(DLT_ERR_IO, "%s: cannot open HDF5 file (corrupt or truncated?)", path);
    return DLT_OK;
}

/* Pass 1 for one shard: validates it against ds (the first shard sets
 * ds->c/h/w and class names) and returns its sample count. */
static dlt_status inspect_shard(dlt_dataset_t ds, const char *path, int first, int64_t *n_out,
                                int64_t *block_out)
{
    dlt_status st = DLT_OK;
    hid_t f = H5I_INVALID_HID, di = H5I_INVALID_HID, ti = H5I_INVALID_HID;
    hid_t dl = H5I_INVALID_HID, tl = H5I_INVALID_HID;
    hsize_t dims[8], ldims[8];
    int nd, lnd;
    char tb[32], db[128];
    char **names = NULL;
    int n_names = 0;

    DLT_CHECK(open_file(path, &f));
    DLT_CHECK_GOTO(check_format(path, f), st, done);
    DLT_CHECK_GOTO(open_dset(path, f, "images", "uint8 [N, C, H, W]", &di, &ti, dims, &nd), st,
                   done);
    if (H5Tget_class(ti) != H5T_INTEGER || H5Tget_size(ti) != 1 || H5Tget_sign(ti) != H5T_SGN_NONE) {
        st = DLT_ERR(DLT_ERR_IO, "%s: dataset 'images' has type %s, expected uint8", path,
                     type_desc(ti, tb, sizeof tb));
        goto done;
    }
    if (nd != 4) {
        st = DLT_ERR(DLT_ERR_IO, "%s: dataset 'images' has shape %s, expected [N, C, H, W]", path,
                     dims_desc(dims, nd, db, sizeof db));
        goto done;
    }
    if (dims[1] == 0 || dims[2] == 0 || dims[3] == 0 || dims[1] > 65536 || dims[2] > 65536 ||
        dims[3] > 65536 || dims[1] * dims[2] * dims[3] > ((hsize_t)1 << 31)) {
        st = DLT_ERR(DLT_ERR_IO, "%s: dataset 'images' has shape %s: C, H, W must be in 1..65536",
                     path, dims_desc(dims, nd, db, sizeof db));
        goto done;
    }
    if (first) {
        ds->c = (int)dims[1];
        ds->h = (int)dims[2];
        ds->w = (int)dims[3];
    } else if ((int)dims[1] != ds->c || (int)dims[2] != ds->h || (int)dims[3] != ds->w) {
        st = DLT_ERR(DLT_ERR_IO, "%s: samples are [%d, %d, %d] but in %s they are [%d, %d, %d]", path,
                     (int)dims[1], (int)dims[2], (int)dims[3], ds->path, ds->c, ds->h, ds->w);
        goto done;
    }
    DLT_CHECK_GOTO(open_dset(path, f, "labels", "integer [N]", &dl, &tl, ldims, &lnd), st, done);
    if (H5Tget_class(tl) != H5T_INTEGER) {
        st = DLT_ERR(DLT_ERR_IO, "%s: dataset 'labels' has type %s, expected an integer type", path,
                     type_desc(tl, tb, sizeof tb));
        goto done;
    }
    if (lnd != 1) {
        st = DLT_ERR(DLT_ERR_IO, "%s: dataset 'labels' has shape %s, expected [N]", path,
                     dims_desc(ldims, lnd, db, sizeof db));
        goto done;
    }
    if (ldims[0] != dims[0]) {
        st = DLT_ERR(DLT_ERR_IO, "%s: dataset 'labels' has %llu entries but 'images' has %llu", path,
                     (unsigned long long)ldims[0], (unsigned long long)dims[0]);
        goto done;
    }
    if (H5Aexists(f, "class_names") > 0) {
        DLT_CHECK_GOTO(read_str_attr(path, f, "class_names", &names, &n_names), st, done);
        if (!ds->names) {
            ds->names = names;
            ds->n_names = n_names;
            names = NULL;
        } else {
            int same = n_names == ds->n_names;
            for (int i = 0; same && i < n_names; i++) same = strcmp(names[i], ds->names[i]) == 0;
            if (!same) {
                st = DLT_ERR(DLT_ERR_IO, "%s: attribute 'class_names' differs from that of an "
                                         "earlier shard", path);
                goto done;
            }
        }
    }
    *n_out = (int64_t)dims[0];
    {
        /* the read block: the chunk extent along N, or a run of a contiguous dataset */
        size_t sb = (size_t)dims[1] * (size_t)dims[2] * (size_t)dims[3];
        int64_t block = (int64_t)(CONTIG_BLOCK_BYTES / sb);
        hid_t dcpl = H5Dget_create_plist(di);
        hsize_t cd[8];
        if (dcpl >= 0 && H5Pget_layout(dcpl) == H5D_CHUNKED && H5Pget_chunk(dcpl, 8, cd) == 4)
            block = (int64_t)cd[0];
        if (dcpl >= 0) H5Pclose(dcpl);
        if ((size_t)block * sb > MAX_BLOCK_BYTES) block = (int64_t)(MAX_BLOCK_BYTES / sb);
        *block_out = block < 1 ? 1 : block;
    }
done:
    free_names(names, n_names);
    close_dset(dl, tl);
    close_dset(di, ti);
    H5Fclose(f);
    return st;
}

/* Pass 2 for one shard: reads its n labels (already checked by
 * inspect_shard) and validates their values. */
static dlt_status load_labels(dlt_dataset_t ds, const char *path, int64_t n, int32_t *labels,
                              int *max_label)
{
    dlt_status st = DLT_OK;
    hid_t f = H5I_INVALID_HID, d = H5I_INVALID_HID;
    int64_t *tmp = NULL;
    if (n == 0) return DLT_OK;
    DLT_CHECK(open_file(path, &f));
    tmp = malloc((size_t)n * sizeof *tmp);
    if (!tmp) {
        st = DLT_ERR(DLT_ERR_NOMEM, "%s: out of memory reading labels", path);
        goto done;
    }
    d = H5Dopen2(f, "labels", H5P_DEFAULT);
    if (d < 0 || H5Dread(d, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, tmp) < 0) {
        st = DLT_ERR(DLT_ERR_IO, "%s: cannot read dataset 'labels' (corrupt or truncated file?)",
                     path);
        goto done;
    }
    for (int64_t i = 0; i < n; i++) {
        if (tmp[i] < 0 || tmp[i] >= INT32_MAX) {
            st = DLT_ERR(DLT_ERR_IO, "%s: label %lld at index %lld is %s", path, (long long)tmp[i],
                         (long long)i, tmp[i] < 0 ? "negative" : "too large");
            goto done;
        }
        if (ds->names && tmp[i] >= ds->n_names) {
            st = DLT_ERR(DLT_ERR_IO, "%s: label %lld at index %lld, but class_names has %d entries",
                         path, (long long)tmp[i], (long long)i, ds->n_names);
            goto done;
        }
        labels[i] = (int32_t)tmp[i];
        if (labels[i] > *max_label) *max_label = labels[i];
    }
done:
    free(tmp);
    if (d >= 0) H5Dclose(d);
    H5Fclose(f);
    return st;
}

static dlt_status open_impl(const char *pattern, dlt_dataset_t ds)
{
    dlt_status st = DLT_OK;
    glob_t g;
    memset(&g, 0, sizeof g);
    int gr = glob(pattern, 0, NULL, &g);
    if (gr == GLOB_NOMATCH || (gr == 0 && g.gl_pathc == 0)) {
        globfree(&g);
        return DLT_ERR(DLT_ERR_IO, "no files match '%s'", pattern);
    }
    if (gr != 0) {
        globfree(&g);
        return DLT_ERR(DLT_ERR_IO, "cannot expand '%s' (%s)", pattern,
                       gr == GLOB_NOSPACE ? "out of memory" : "read error");
    }
    if (g.gl_pathc > INT32_MAX) {
        globfree(&g);
        return DLT_ERR(DLT_ERR_INVALID, "'%s' matches too many files", pattern);
    }
    ds->path = strdup(g.gl_pathv[0]);
    ds->shards = calloc(g.gl_pathc, sizeof *ds->shards);
    if (!ds->path || !ds->shards) {
        st = DLT_ERR(DLT_ERR_NOMEM, "out of memory opening '%s'", pattern);
        goto done;
    }
    ds->n_shards = (int)g.gl_pathc;
    dlt_shard *shards = ds->shards;
    for (size_t i = 0; i < g.gl_pathc; i++) {
        shards[i].path = strdup(g.gl_pathv[i]);
        if (!shards[i].path) {
            st = DLT_ERR(DLT_ERR_NOMEM, "out of memory opening '%s'", pattern);
            goto done;
        }
        DLT_CHECK_GOTO(inspect_shard(ds, shards[i].path, i == 0, &shards[i].n, &shards[i].block),
                       st, done);
        shards[i].first = ds->n;
        ds->n += shards[i].n;
    }
    if (ds->n == 0) {
        st = DLT_ERR(DLT_ERR_IO, "%s: the shards matching '%s' hold no samples", ds->path, pattern);
        goto done;
    }
    ds->sample_bytes = (size_t)ds->c * (size_t)ds->h * (size_t)ds->w;
    ds->labels = malloc((size_t)ds->n * sizeof *ds->labels);
    if (!ds->labels) {
        st = DLT_ERR(DLT_ERR_NOMEM, "'%s': cannot allocate labels for %lld samples", pattern,
                     (long long)ds->n);
        goto done;
    }
    int max_label = -1;
    for (size_t i = 0; i < g.gl_pathc; i++)
        DLT_CHECK_GOTO(load_labels(ds, shards[i].path, shards[i].n, ds->labels + shards[i].first,
                                   &max_label),
                       st, done);
    ds->classes = max_label + 1 > ds->n_names ? max_label + 1 : ds->n_names;
    DLT_CHECK_GOTO(dlt_stream_open(ds->shards, ds->n_shards, ds->sample_bytes, 0, 0, &ds->stream),
                   st, done);
done:
    globfree(&g);
    return st;
}

/* Contract (data.h): opens and validates every shard matching pattern and
 * loads the labels (images stream on demand). On failure *out is NULL and the
 * one-line message names the file (or the pattern if nothing matched);
 * returns DLT_ERR_IO for missing or malformed files. */
dlt_status dlt_dataset_open(const char *pattern, dlt_dataset_t *out)
{
    if (!out) return DLT_ERR(DLT_ERR_INVALID, "dlt_dataset_open: out is NULL");
    *out = NULL;
    if (!pattern || !*pattern) return DLT_ERR(DLT_ERR_INVALID, "data set path is empty");
    dlt_dataset_t ds = calloc(1, sizeof *ds);
    if (!ds) return DLT_ERR(DLT_ERR_NOMEM, "out of memory opening '%s'", pattern);

    H5E_auto2_t old_fn = NULL;
    void *old_data = NULL;
    H5Eget_auto2(H5E_DEFAULT, &old_fn, &old_data);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    dlt_status st = open_impl(pattern, ds);
    H5Eset_auto2(H5E_DEFAULT, old_fn, old_data);

    if (st != DLT_OK) {
        dlt_dataset_close(ds);
        return st;
    }
    *out = ds;
    return DLT_OK;
}

/* Releases everything dlt_dataset_open allocated; NULL is a no-op. */
void dlt_dataset_close(dlt_dataset_t ds)
{
    if (!ds) return;
    dlt_stream_close(ds->stream);
    for (int i = 0; ds->shards && i < ds->n_shards; i++) free(ds->shards[i].path);
    free(ds->shards);
    free(ds->path);
    free(ds->labels);
    free_names(ds->names, ds->n_names);
    free(ds);
}

/* Accessors (data.h); valid until dlt_dataset_close. */
int64_t dlt_dataset_size(dlt_dataset_t ds) { return ds->n; }

void dlt_dataset_shape(dlt_dataset_t ds, int *c, int *h, int *w)
{
    if (c) *c = ds->c;
    if (h) *h = ds->h;
    if (w) *w = ds->w;
}

int dlt_dataset_classes(dlt_dataset_t ds) { return ds->classes; }

const char *dlt_dataset_class_name(dlt_dataset_t ds, int i)
{
    if (!ds->names || i < 0 || i >= ds->n_names) return NULL;
    return ds->names[i];
}

const char *dlt_dataset_path(dlt_dataset_t ds) { return ds->path; }

/* Contract (data.h): copies samples idx[0..n) into x (n, C, H, W) and y (n);
 * DLT_ERR_INVALID (nothing copied) if an index is out of range, DLT_ERR_IO
 * naming the file if a read fails. Thread-safe; does not allocate, so the
 * loader may call it in the step loop. */
dlt_status dlt_dataset_read(dlt_dataset_t ds, const int64_t *idx, int n, uint8_t *x, int32_t *y)
{
    for (int i = 0; i < n; i++)
        if (idx[i] < 0 || idx[i] >= ds->n)
            return DLT_ERR(DLT_ERR_INVALID, "%s: sample index %lld out of range [0, %lld)", ds->path,
                           (long long)idx[i], (long long)ds->n);
    DLT_CHECK(dlt_stream_read(ds->stream, idx, n, x));
    for (int i = 0; y && i < n; i++) y[i] = ds->labels[idx[i]];
    return DLT_OK;
}

/* Contract (data.h): replaces the reader with one of these limits. */
dlt_status dlt_dataset_set_limits(dlt_dataset_t ds, int max_open, size_t cache_bytes)
{
    dlt_stream *s;
    DLT_CHECK(dlt_stream_open(ds->shards, ds->n_shards, ds->sample_bytes, max_open, cache_bytes, &s));
    dlt_stream_close(ds->stream);
    ds->stream = s;
    return DLT_OK;
}

int dlt_dataset_open_files(dlt_dataset_t ds) { return dlt_stream_open_files(ds->stream); }

int64_t dlt_dataset_blocks_read(dlt_dataset_t ds) { return dlt_stream_blocks_read(ds->stream); }
