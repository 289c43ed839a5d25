/* The shard writer every dlprep command shares.
 *
 * A split is written shard by shard: the command's fill() callback produces
 * the next shard's samples into one reusable buffer, which is written as
 * OUTDIR/<split>-NNNNN.h5 in the format data/dataset.c reads: `images` uint8
 * (N, C, H, W) chunked along N, `labels` int64 (N), root attributes format,
 * version, class_names (variable-length UTF-8 strings, as h5py writes a list
 * of str) and source. Each shard goes to "<name>.tmp" and is renamed only
 * once closed, so an interrupted run never leaves a half shard under a name
 * the glob of a config would pick up.
 *
 * Chunks hold up to 256 samples and at most about 1 MiB, so the streaming
 * reader can later fetch a batch's samples without reading whole shards. */
#include "data/dlprep/dlprep.h"

#include <errno.h>
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define DLT_IMAGES_FORMAT "dltrain-images"
#define DLT_IMAGES_VERSION 1

/* mkdir -p */
static dlt_status make_dirs(const char *dir)
{
    char buf[4096];
    if (!*dir) return DLT_ERR(DLT_ERR_INVALID, "output directory name is empty");
    if (snprintf(buf, sizeof buf, "%s", dir) >= (int)sizeof buf)
        return DLT_ERR(DLT_ERR_INVALID, "output directory name too long: %s", dir);
    for (char *p = buf + 1;; p++) {
        if (*p == '/' || *p == '\0') {
            char keep = *p;
            *p = '\0';
            if (mkdir(buf, 0777) != 0 && errno != EEXIST)
                return DLT_ERR(DLT_ERR_IO, "cannot create directory %s: %s", buf, strerror(errno));
            *p = keep;
            if (!keep) break;
        }
    }
    struct stat sb;
    if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode))
        return DLT_ERR(DLT_ERR_IO, "%s is not a directory", dir);
    return DLT_OK;
}

int dlt_prep_str_attr(hid_t f, const char *name, const char *const *v, int n)
{
    hid_t t = H5Tcopy(H5T_C_S1);
    int ok = t >= 0 && H5Tset_size(t, H5T_VARIABLE) >= 0 && H5Tset_cset(t, H5T_CSET_UTF8) >= 0;
    hsize_t d = (hsize_t)(n < 0 ? 1 : n);
    hid_t sp = n < 0 ? H5Screate(H5S_SCALAR) : H5Screate_simple(1, &d, NULL);
    hid_t a = ok && sp >= 0 ? H5Acreate2(f, name, t, sp, H5P_DEFAULT, H5P_DEFAULT) : -1;
    ok = a >= 0 && H5Awrite(a, t, v) >= 0;
    if (a >= 0) H5Aclose(a);
    if (sp >= 0) H5Sclose(sp);
    if (t >= 0) H5Tclose(t);
    return ok;
}

int dlt_prep_i64_attr(hid_t f, const char *name, int64_t v)
{
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t a = sp >= 0 ? H5Acreate2(f, name, H5T_STD_I64LE, sp, H5P_DEFAULT, H5P_DEFAULT) : -1;
    int ok = a >= 0 && H5Awrite(a, H5T_NATIVE_INT64, &v) >= 0;
    if (a >= 0) H5Aclose(a);
    if (sp >= 0) H5Sclose(sp);
    return ok;
}

/* Writes one complete shard file at path (n > 0 samples). */
static dlt_status write_shard(const char *path, const dlt_prep_split *s, int64_t n,
                              const uint8_t *images, const int64_t *labels)
{
    size_t sample = (size_t)s->c * (size_t)s->h * (size_t)s->w;
    hsize_t dims[4] = { (hsize_t)n, (hsize_t)s->c, (hsize_t)s->h, (hsize_t)s->w };
    int64_t per_chunk = (int64_t)((1u << 20) / sample);
    per_chunk = per_chunk < 1 ? 1 : per_chunk > 256 ? 256 : per_chunk;
    hsize_t chunk[4] = { (hsize_t)(n < per_chunk ? n : per_chunk), dims[1], dims[2], dims[3] };
    hsize_t ldims[1] = { (hsize_t)n };

    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (f < 0) return DLT_ERR(DLT_ERR_IO, "%s: cannot create HDF5 file", path);
    hid_t sp = H5Screate_simple(4, dims, NULL);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    int ok = sp >= 0 && dcpl >= 0 && H5Pset_chunk(dcpl, 4, chunk) >= 0;
    hid_t d = ok ? H5Dcreate2(f, "images", H5T_STD_U8LE, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT) : -1;
    ok = d >= 0 && H5Dwrite(d, H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, images) >= 0;
    if (d >= 0) H5Dclose(d);
    if (dcpl >= 0) H5Pclose(dcpl);
    if (sp >= 0) H5Sclose(sp);

    sp = ok ? H5Screate_simple(1, ldims, NULL) : -1;
    d = sp >= 0 ? H5Dcreate2(f, "labels", H5T_STD_I64LE, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT)
                : -1;
    ok = d >= 0 && H5Dwrite(d, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, labels) >= 0;
    if (d >= 0) H5Dclose(d);
    if (sp >= 0) H5Sclose(sp);

    const char *fmt = DLT_IMAGES_FORMAT;
    ok = ok && dlt_prep_str_attr(f, "format", &fmt, -1) &&
         dlt_prep_i64_attr(f, "version", DLT_IMAGES_VERSION) &&
         dlt_prep_str_attr(f, "class_names", s->class_names, s->n_classes) &&
         dlt_prep_str_attr(f, "source", &s->source, -1);
    if (H5Fclose(f) < 0) ok = 0;
    if (!ok) return DLT_ERR(DLT_ERR_IO, "%s: writing the shard failed (disk full?)", path);
    return DLT_OK;
}

static dlt_status write_split_impl(const dlt_prep_out *out, const dlt_prep_split *s, int *n_shards)
{
    dlt_status st = DLT_OK;
    size_t sample = (size_t)s->c * (size_t)s->h * (size_t)s->w;
    int64_t cap = s->n < out->shard_size ? s->n : out->shard_size;
    uint8_t *images = malloc((size_t)cap * sample);
    int64_t *labels = malloc((size_t)cap * sizeof *labels);
    char path[4096], tmp[4200];
    int k = 0;
    if (!images || !labels) {
        st = DLT_ERR(DLT_ERR_NOMEM, "out of memory for a shard of %lld samples", (long long)cap);
        goto done;
    }
    for (int64_t first = 0; first < s->n; first += cap, k++) {
        int64_t n = s->n - first < cap ? s->n - first : cap;
        snprintf(path, sizeof path, "%s/%s-%05d.h5", out->outdir, s->split, k);
        snprintf(tmp, sizeof tmp, "%s.tmp", path);
        DLT_CHECK_GOTO(s->fill(s->ctx, first, n, images, labels), st, done);
        st = write_shard(tmp, s, n, images, labels);
        if (st == DLT_OK && rename(tmp, path) != 0)
            st = DLT_ERR(DLT_ERR_IO, "cannot rename %s to %s: %s", tmp, path, strerror(errno));
        if (st != DLT_OK) {
            unlink(tmp);
            goto done;
        }
    }
    /* Shards k, k+1, ... of an earlier, larger run would join this split's glob. */
    for (int j = k;; j++) {
        snprintf(path, sizeof path, "%s/%s-%05d.h5", out->outdir, s->split, j);
        if (access(path, F_OK) != 0) break;
        if (unlink(path) != 0) {
            st = DLT_ERR(DLT_ERR_IO, "cannot remove stale shard %s: %s", path, strerror(errno));
            goto done;
        }
    }
    *n_shards = k;
done:
    free(images);
    free(labels);
    return st;
}

/* Contract (dlprep.h). DLT_ERR_INVALID for an empty split or a bad shard
 * size, DLT_ERR_IO naming the file for anything the file system refuses. */
dlt_status dlt_prep_write_split(const dlt_prep_out *out, const dlt_prep_split *s, int *n_shards)
{
    if (s->n < 1 || out->shard_size < 1 || s->c < 1 || s->h < 1 || s->w < 1)
        return DLT_ERR(DLT_ERR_INVALID, "split '%s': nothing to write", s->split);
    DLT_CHECK(make_dirs(out->outdir));
    H5E_auto2_t old_fn = NULL;
    void *old_data = NULL;
    H5Eget_auto2(H5E_DEFAULT, &old_fn, &old_data);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    dlt_status st = write_split_impl(out, s, n_shards);
    H5Eset_auto2(H5E_DEFAULT, old_fn, old_data);
    return st;
}
