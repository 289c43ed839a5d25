/* Checkpoint files: writing and reading the HDF5 training state.
 *
 * Design. Every array is one dataset named as the model names it
 * ("fc1.weight"), so a checkpoint is also a weights file anyone can open
 * with h5py, and loading matches by name rather than by arena offset: a
 * model whose layout changed is caught by name and shape, and init-from can
 * load the layers two models share. Optimizer state arenas have the
 * parameter arena's layout, so they are cut per parameter at the same
 * offsets (optimizer/s1/<name>); a ZeRO-1 shard is written from the full
 * layout ckpt_run.c gathered (opt_full) and loads only its segments
 * (dlt_optim_state_put). Scalars are root attributes.
 *
 * Data goes through one host buffer (largest of the arenas) because the
 * arenas may be device memory. Writes happen on rank 0 only; the caller
 * agrees the outcome across ranks. The atomic-rename and manifest steps are
 * in ckpt_files.c; this file only makes and reads the .h5. */
#include "launcher/checkpoint.h"

#include <errno.h>
#include <hdf5.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------ attributes */

static int put_attr(hid_t obj, const char *name, hid_t type, const void *v)
{
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(obj, name, type, sp, H5P_DEFAULT, H5P_DEFAULT);
    int ok = a >= 0 && H5Awrite(a, type, v) >= 0;
    if (a >= 0) H5Aclose(a);
    H5Sclose(sp);
    return ok;
}

static int put_i64(hid_t obj, const char *name, int64_t v) { return put_attr(obj, name, H5T_NATIVE_INT64, &v); }
static int put_f64(hid_t obj, const char *name, double v) { return put_attr(obj, name, H5T_NATIVE_DOUBLE, &v); }

static int put_str(hid_t obj, const char *name, const char *s)
{
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, strlen(s) + 1);
    int ok = put_attr(obj, name, t, s);
    H5Tclose(t);
    return ok;
}

/* 1 when the attribute exists and was read. */
static int get_attr(hid_t obj, const char *name, hid_t type, void *v)
{
    if (H5Aexists(obj, name) <= 0) return 0;
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
    int ok = a >= 0 && H5Aread(a, type, v) >= 0;
    if (a >= 0) H5Aclose(a);
    return ok;
}

static int get_i64(hid_t obj, const char *name, int64_t *v) { return get_attr(obj, name, H5T_NATIVE_INT64, v); }
static int get_f64(hid_t obj, const char *name, double *v) { return get_attr(obj, name, H5T_NATIVE_DOUBLE, v); }

static int get_str(hid_t obj, const char *name, char *buf, size_t len)
{
    buf[0] = '\0';
    if (H5Aexists(obj, name) <= 0) return 0;
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
    if (a < 0) return 0;
    hid_t ft = H5Aget_type(a);
    size_t sz = H5Tget_size(ft);
    int ok = H5Tget_class(ft) == H5T_STRING && sz < len;
    if (ok) {
        hid_t t = H5Tcopy(H5T_C_S1);
        H5Tset_size(t, sz);
        ok = H5Aread(a, t, buf) >= 0;
        buf[sz] = '\0';
        H5Tclose(t);
    }
    H5Tclose(ft);
    H5Aclose(a);
    return ok;
}

/* ------------------------------------------------------------ arrays */

/* Writes the floats of host memory as dataset name of shape s. */
static dlt_status put_host(hid_t loc, const char *name, const dlt_shape *s, const float *host)
{
    hsize_t dims[DLT_MAX_DIMS];
    for (int i = 0; i < s->ndim; i++) dims[i] = (hsize_t)s->d[i];
    hid_t sp = H5Screate_simple(s->ndim, dims, NULL);
    hid_t d = H5Dcreate2(loc, name, H5T_IEEE_F32LE, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    herr_t e = d < 0 ? -1 : H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, host);
    int err = errno;
    if (d >= 0) H5Dclose(d);
    H5Sclose(sp);
    if (e < 0) return DLT_ERR(DLT_ERR_IO, "cannot write dataset %s%s%s", name, err ? ": " : "", err ? strerror(err) : "");
    return DLT_OK;
}

/* Writes n floats of backend memory src as dataset name of shape s. */
static dlt_status put_array(hid_t loc, dlt_backend *be, const char *name, const dlt_shape *s,
                            const float *src, float *host)
{
    DLT_CHECK(be->download(be, host, src, (size_t)dlt_shape_numel(s) * sizeof(float)));
    return put_host(loc, name, s, host);
}

/* Reads dataset name (of shape want) into host. A missing dataset gives
 * DLT_ERR_INVALID, a shape mismatch DLT_ERR_SHAPE naming both. */
static dlt_status read_host(hid_t loc, const char *file, const char *name, const dlt_shape *want, float *host)
{
    if (H5Lexists(loc, name, H5P_DEFAULT) <= 0)
        return DLT_ERR(DLT_ERR_INVALID, "%s: no dataset '%s'", file, name);
    hid_t d = H5Dopen2(loc, name, H5P_DEFAULT);
    if (d < 0) return DLT_ERR(DLT_ERR_IO, "%s: cannot open dataset '%s'", file, name);
    hid_t sp = H5Dget_space(d);
    hsize_t dims[8];
    int nd = H5Sget_simple_extent_ndims(sp);
    int same = nd == want->ndim && nd <= 8;
    if (nd > 0 && nd <= 8) H5Sget_simple_extent_dims(sp, dims, NULL);
    for (int i = 0; same && i < nd; i++) same = dims[i] == (hsize_t)want->d[i];
    H5Sclose(sp);
    if (!same) {
        dlt_shape got = { nd > DLT_MAX_DIMS ? DLT_MAX_DIMS : (nd < 0 ? 0 : nd), { 0 } };
        for (int i = 0; i < got.ndim; i++) got.d[i] = (int64_t)dims[i];
        char a[64], b[64];
        H5Dclose(d);
        return DLT_ERR(DLT_ERR_SHAPE, "%s: '%s' has shape %s in the checkpoint but %s in the model", file,
                       name, dlt_shape_str(&got, a, sizeof a), dlt_shape_str(want, b, sizeof b));
    }
    herr_t e = H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, host);
    H5Dclose(d);
    if (e < 0) return DLT_ERR(DLT_ERR_IO, "%s: cannot read dataset '%s' (file damaged?)", file, name);
    return DLT_OK;
}

/* read_host, then into backend memory dst. */
static dlt_status get_array(hid_t loc, dlt_backend *be, const char *file, const char *name,
                            const dlt_shape *want, float *dst, float *host)
{
    DLT_CHECK(read_host(loc, file, name, want, host));
    return be->upload(be, dst, host, (size_t)dlt_shape_numel(want) * sizeof(float));
}

/* ------------------------------------------------------------ model walk */

static size_t host_floats(dlt_model *m)
{
    size_t np, ns;
    dlt_model_params(m, &np);
    dlt_model_state(m, &ns);
    return (np > ns ? np : ns) + 1;
}

/* Is name a parameter or state buffer of m? */
static int model_has(dlt_model *m, const char *name)
{
    for (int i = 0; i < dlt_model_n_params(m); i++)
        if (!strcmp(dlt_model_param(m, i)->name, name)) return 1;
    for (int li = 0; li < dlt_model_n_layers(m); li++) {
        dlt_layer *l = dlt_model_layer(m, li);
        for (int b = 0; b < l->n_bufs; b++)
            if (l->buf_persistent[b] && !strcmp(l->buf_name[b], name)) return 1;
    }
    return 0;
}

typedef struct {
    dlt_model *m;
    char extra[DLT_NAME_LEN];   /* first dataset of the file the model lacks */
} extra_scan;

static herr_t scan_extra(hid_t g, const char *name, const H5L_info_t *info, void *arg)
{
    extra_scan *s = arg;
    H5O_info_t oi;
    if (H5Oget_info_by_name(g, name, &oi, H5P_DEFAULT) < 0 || oi.type != H5O_TYPE_DATASET) return 0;
    if (!strcmp(name, "config") || model_has(s->m, name)) return 0;
    snprintf(s->extra, sizeof s->extra, "%s", name);
    return 1;
}

/* Writes params, state and (opt != NULL) optimizer state: opt's arenas,
 * or the gathered full layout of a sharded one (opt_full). */
static dlt_status put_arenas(hid_t f, const dlt_ckpt_src *src, float *host)
{
    dlt_model *m = src->model;
    const dlt_optim *opt = src->opt;
    dlt_backend *be = dlt_model_layer(m, 0)->be;
    for (int i = 0; i < dlt_model_n_params(m); i++) {
        const dlt_param *p = dlt_model_param(m, i);
        DLT_CHECK(put_array(f, be, p->name, &p->shape, p->w, host));
    }
    for (int li = 0; li < dlt_model_n_layers(m); li++) {
        dlt_layer *l = dlt_model_layer(m, li);
        for (int b = 0; b < l->n_bufs; b++) {
            if (!l->buf_persistent[b]) continue;
            dlt_shape s = { 1, { l->buf_len[b] } };
            DLT_CHECK(put_array(f, be, l->buf_name[b], &s, *l->buf_ptr[b], host));
        }
    }
    if (!opt || (!opt->s1 && !opt->s2)) return DLT_OK;
    size_t n;
    float *w0 = dlt_model_params(m, &n);
    hid_t g = H5Gcreate2(f, "optimizer", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (g < 0) return DLT_ERR(DLT_ERR_IO, "cannot create group optimizer");
    dlt_status st = DLT_OK;
    float *arena[2] = { opt->s1, opt->s2 };
    for (int k = 0; k < 2 && st == DLT_OK; k++) {
        if (!arena[k]) continue;
        if (opt->shard && !src->opt_full[k]) {
            st = DLT_ERR(DLT_ERR_INVALID, "sharded optimizer state (comm.zero) is written only through the "
                         "collective dlt_ckpt_run_* calls, which gather it");
            break;
        }
        hid_t gk = H5Gcreate2(g, k ? "s2" : "s1", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        if (gk < 0) {
            st = DLT_ERR(DLT_ERR_IO, "cannot create group optimizer/s%d", k + 1);
            break;
        }
        for (int i = 0; i < dlt_model_n_params(m) && st == DLT_OK; i++) {
            const dlt_param *p = dlt_model_param(m, i);
            st = opt->shard ? put_host(gk, p->name, &p->shape, src->opt_full[k] + (p->w - w0))
                            : put_array(gk, be, p->name, &p->shape, arena[k] + (p->w - w0), host);
        }
        H5Gclose(gk);
    }
    H5Gclose(g);
    return st;
}

static char *config_text(const dlt_config *cfg)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f) return NULL;
    dlt_config_write(cfg, f);
    fclose(f);
    return buf;
}

static dlt_status put_config(hid_t f, const dlt_config *cfg)
{
    char *text = config_text(cfg);
    if (!text) return DLT_ERR(DLT_ERR_NOMEM, "out of memory writing the config text");
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, strlen(text) + 1);
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t d = H5Dcreate2(f, "config", t, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    int ok = d >= 0 && H5Dwrite(d, t, H5S_ALL, H5S_ALL, H5P_DEFAULT, text) >= 0;
    if (d >= 0) H5Dclose(d);
    H5Sclose(sp);
    H5Tclose(t);
    free(text);
    return ok ? DLT_OK : DLT_ERR(DLT_ERR_IO, "cannot write dataset config");
}

static dlt_status put_scalars(hid_t f, const dlt_ckpt_src *s, const dlt_train_pos *p)
{
    int64_t in3[3] = { s->input[0], s->input[1], s->input[2] };
    hsize_t three = 3;
    hid_t sp = H5Screate_simple(1, &three, NULL);
    hid_t a = H5Acreate2(f, "input", H5T_STD_I64LE, sp, H5P_DEFAULT, H5P_DEFAULT);
    int ok = a >= 0 && H5Awrite(a, H5T_NATIVE_INT64, in3) >= 0;
    if (a >= 0) H5Aclose(a);
    H5Sclose(sp);
    ok = ok && put_str(f, "format", DLT_CKPT_FORMAT) && put_i64(f, "version", DLT_CKPT_VERSION);
    ok = ok && put_i64(f, "step", p->step) && put_i64(f, "epoch", p->epoch) &&
         put_i64(f, "epoch_step", p->epoch_step) && put_i64(f, "evaluated", p->evaluated) &&
         put_f64(f, "best", p->best) && put_i64(f, "bad_epochs", p->bad_epochs) &&
         put_f64(f, "best_ckpt", p->best_ckpt) && put_i64(f, "skips", p->skips);
    ok = ok && put_i64(f, "world", s->world) && put_i64(f, "classes", s->classes) &&
         put_f64(f, "loss_scale", 1.0);
    if (s->cfg)
        ok = ok && put_i64(f, "seed", (int64_t)s->cfg->seed) && put_i64(f, "global_batch", s->cfg->batch_size) &&
             put_str(f, "optimizer", s->cfg->optimizer);
    if (s->opt) ok = ok && put_i64(f, "opt_step", s->opt->step);
    return ok ? DLT_OK : DLT_ERR(DLT_ERR_IO, "cannot write checkpoint attributes");
}

/* Writes the .h5 itself to tmp (no rename); ckpt_files.c does the rest. */
dlt_status dlt_ckpt_write_h5(const dlt_ckpt_src *src, const dlt_train_pos *pos, const char *tmp)
{
    float *host = malloc(host_floats(src->model) * sizeof *host);
    if (!host) return DLT_ERR(DLT_ERR_NOMEM, "checkpoint: out of host memory");
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    errno = 0;
    hid_t f = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    dlt_status st = DLT_OK;
    if (f < 0) {
        st = DLT_ERR(DLT_ERR_IO, "%s: cannot create: %s", tmp, errno ? strerror(errno) : "HDF5 error");
    } else {
        st = put_scalars(f, src, pos);
        if (st == DLT_OK && src->cfg) st = put_config(f, src->cfg);
        if (st == DLT_OK) st = put_arenas(f, src, host);
        errno = 0;
        if (H5Fclose(f) < 0 && st == DLT_OK)
            st = DLT_ERR(DLT_ERR_IO, "%s: cannot write: %s", tmp, errno ? strerror(errno) : "HDF5 error");
        else if (st != DLT_OK) {
            char why[768]; /* the message is formatted into the buffer it quotes */
            snprintf(why, sizeof why, "%s", dlt_last_error());
            st = DLT_ERR(st, "%s: %s", tmp, why);
        }
    }
    free(host);
    return st;
}

/* ------------------------------------------------------------ reading */

static dlt_status open_ckpt(const char *path, hid_t *out)
{
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    FILE *probe = fopen(path, "rb");
    if (!probe) return DLT_ERR(DLT_ERR_IO, "%s: cannot open checkpoint: %s", path, strerror(errno));
    fclose(probe);
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) return DLT_ERR(DLT_ERR_IO, "%s: not an HDF5 file (truncated or corrupt checkpoint?)", path);
    char fmt[64];
    int64_t ver = 0;
    if (get_str(f, "format", fmt, sizeof fmt) && strcmp(fmt, DLT_CKPT_FORMAT)) {
        H5Fclose(f);
        return DLT_ERR(DLT_ERR_IO, "%s: format '%s' is not a dltrain checkpoint", path, fmt);
    }
    if (get_i64(f, "version", &ver) && ver > DLT_CKPT_VERSION) {
        H5Fclose(f);
        return DLT_ERR(DLT_ERR_IO, "%s: checkpoint version %lld is newer than this dltrain reads (%d); "
                       "use a newer dltrain", path, (long long)ver, DLT_CKPT_VERSION);
    }
    *out = f;
    return DLT_OK;
}

dlt_status dlt_ckpt_read_meta(const char *path, int input[3], int *classes, int *found)
{
    hid_t f;
    DLT_CHECK(open_ckpt(path, &f));
    int64_t in3[3], k = 0;
    *found = 0;
    if (H5Aexists(f, "input") > 0 && get_i64(f, "classes", &k)) {
        hid_t a = H5Aopen(f, "input", H5P_DEFAULT);
        if (a >= 0 && H5Aread(a, H5T_NATIVE_INT64, in3) >= 0) {
            for (int i = 0; i < 3; i++) input[i] = (int)in3[i];
            *classes = (int)k;
            *found = 1;
        }
        if (a >= 0) H5Aclose(a);
    }
    H5Fclose(f);
    return DLT_OK;
}

/* Loads the model arrays; strict demands all of them and no extra ones. */
static dlt_status get_model(hid_t f, const char *path, dlt_model *m, int strict, int *loaded, int *kept,
                            FILE *summary, float *host)
{
    dlt_backend *be = dlt_model_layer(m, 0)->be;
    *loaded = *kept = 0;
    if (strict) {
        extra_scan s = { .m = m };
        H5Literate(f, H5_INDEX_NAME, H5_ITER_NATIVE, NULL, scan_extra, &s);
        if (s.extra[0])
            return DLT_ERR(DLT_ERR_INVALID, "%s: the checkpoint holds '%s', which this model has no layer for "
                           "(checkpoint of another model?)", path, s.extra);
    }
    for (int i = 0; i < dlt_model_n_params(m); i++) {
        const dlt_param *p = dlt_model_param(m, i);
        dlt_status st = get_array(f, be, path, p->name, &p->shape, p->w, host);
        if (st == DLT_OK) {
            (*loaded)++;
            if (summary) fprintf(summary, "  loaded       %s\n", p->name);
            continue;
        }
        if (st == DLT_ERR_INVALID && strict)
            return DLT_ERR(DLT_ERR_INVALID, "%s: the checkpoint has no parameter '%s' (checkpoint of another model?)",
                           path, p->name);
        if (strict || (st != DLT_ERR_INVALID && st != DLT_ERR_SHAPE)) return st;
        (*kept)++;
        if (summary)
            fprintf(summary, "  initialised  %s (%s)\n", p->name,
                    st == DLT_ERR_SHAPE ? "shape differs" : "not in the checkpoint");
    }
    for (int li = 0; li < dlt_model_n_layers(m); li++) {
        dlt_layer *l = dlt_model_layer(m, li);
        for (int b = 0; b < l->n_bufs; b++) {
            if (!l->buf_persistent[b]) continue;
            dlt_shape s = { 1, { l->buf_len[b] } };
            dlt_status st = get_array(f, be, path, l->buf_name[b], &s, *l->buf_ptr[b], host);
            if (st == DLT_OK || (!strict && (st == DLT_ERR_INVALID || st == DLT_ERR_SHAPE))) continue;
            return st;
        }
    }
    return DLT_OK;
}

dlt_status dlt_ckpt_load_weights(const char *path, dlt_model *m, int strict, int *loaded, int *kept,
                                 FILE *summary)
{
    hid_t f;
    DLT_CHECK(open_ckpt(path, &f));
    float *host = malloc(host_floats(m) * sizeof *host);
    int l0, k0;
    dlt_status st = host ? get_model(f, path, m, strict, loaded ? loaded : &l0, kept ? kept : &k0, summary, host)
                         : DLT_ERR(DLT_ERR_NOMEM, "checkpoint: out of host memory");
    free(host);
    H5Fclose(f);
    return st;
}

/* The file's state is in the full layout; dlt_optim_state_put keeps what
 * this optimizer holds (everything, or its ZeRO shard). */
static dlt_status get_optim(hid_t f, const char *path, dlt_model *m, dlt_optim *o, float *host)
{
    size_t n;
    float *w0 = dlt_model_params(m, &n);
    float *arena[2] = { o->s1, o->s2 };
    for (int k = 0; k < 2; k++) {
        if (!arena[k]) continue;
        char grp[32];
        snprintf(grp, sizeof grp, "optimizer/s%d", k + 1);
        if (H5Lexists(f, "optimizer", H5P_DEFAULT) <= 0 || H5Lexists(f, grp, H5P_DEFAULT) <= 0)
            return DLT_ERR(DLT_ERR_INVALID, "%s: the checkpoint has no optimizer state %s, which this run's "
                           "optimizer (optimizer.type/momentum) needs", path, grp);
        hid_t g = H5Gopen2(f, grp, H5P_DEFAULT);
        dlt_status st = DLT_OK;
        for (int i = 0; i < dlt_model_n_params(m) && st == DLT_OK; i++) {
            const dlt_param *p = dlt_model_param(m, i);
            st = read_host(g, path, p->name, &p->shape, host);
            if (st == DLT_OK)
                st = dlt_optim_state_put(o, k, (size_t)(p->w - w0), host, (size_t)dlt_shape_numel(&p->shape));
        }
        H5Gclose(g);
        DLT_CHECK(st);
    }
    return DLT_OK;
}

dlt_status dlt_ckpt_load(const char *path, const dlt_ckpt_src *dst, dlt_train_pos *pos)
{
    hid_t f;
    DLT_CHECK(open_ckpt(path, &f));
    dlt_status st = DLT_OK;
    float *host = malloc(host_floats(dst->model) * sizeof *host);
    int64_t gb = 0, step = 0, v;
    char opt[32];
    if (!host) {
        st = DLT_ERR(DLT_ERR_NOMEM, "checkpoint: out of host memory");
        goto out;
    }
    if (!get_i64(f, "step", &step) || !get_i64(f, "global_batch", &gb)) {
        st = DLT_ERR(DLT_ERR_IO, "%s: not a training checkpoint (no step/global_batch; a weights file? "
                     "use model.init_from for those)", path);
        goto out;
    }
    if (gb != dst->cfg->batch_size) {
        st = DLT_ERR(DLT_ERR_CONFIG, "%s: train.batch_size is %lld in the checkpoint but %d in this run; "
                     "resuming needs the same global batch (the world size may differ)",
                     path, (long long)gb, dst->cfg->batch_size);
        goto out;
    }
    if (get_str(f, "optimizer", opt, sizeof opt) && strcmp(opt, dst->cfg->optimizer)) {
        st = DLT_ERR(DLT_ERR_CONFIG, "%s: optimizer.type is %s in the checkpoint but %s in this run", path, opt,
                     dst->cfg->optimizer);
        goto out;
    }
    int l, k;
    st = get_model(f, path, dst->model, 1, &l, &k, NULL, host);
    if (st == DLT_OK && dst->opt) st = get_optim(f, path, dst->model, dst->opt, host);
    if (st != DLT_OK) goto out;
    memset(pos, 0, sizeof *pos);
    pos->step = step;
    get_i64(f, "epoch", &pos->epoch);
    get_i64(f, "epoch_step", &pos->epoch_step);
    if (get_i64(f, "evaluated", &v)) pos->evaluated = (int)v;
    if (!get_f64(f, "best", &pos->best)) pos->best = NAN;
    if (get_i64(f, "bad_epochs", &v)) pos->bad_epochs = (int)v;
    if (!get_f64(f, "best_ckpt", &pos->best_ckpt)) pos->best_ckpt = NAN;
    if (get_i64(f, "skips", &v)) pos->skips = (int)v;
    if (dst->opt && get_i64(f, "opt_step", &v)) dst->opt->step = v;
out:
    free(host);
    H5Fclose(f);
    return st;
}
