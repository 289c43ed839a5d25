/* metrics.jsonl records, directories, and the final-weights file. */
#include "launcher/metrics.h"

#include <errno.h>
#include <hdf5.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

dlt_status dlt_mkdirs(const char *path)
{
    char buf[1024];
    if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf)
        return DLT_ERR(DLT_ERR_INVALID, "%s: path too long", path);
    for (char *p = buf + 1;; p++) {
        char c = *p;
        if (c == '/' || c == '\0') {
            *p = '\0';
            if (mkdir(buf, 0777) != 0 && errno != EEXIST)
                return DLT_ERR(DLT_ERR_IO, "%s: cannot create directory: %s", buf, strerror(errno));
            *p = c;
        }
        if (c == '\0') break;
    }
    return DLT_OK;
}

static void put_num(FILE *f, const char *key, double v)
{
    if (isfinite(v))
        fprintf(f, ", \"%s\": %.8g", key, v);
    else
        fprintf(f, ", \"%s\": null", key);
}

void dlt_record_write(FILE *f, const dlt_record *r)
{
    fprintf(f, "{\"split\": \"%s\", \"step\": %lld, \"epoch\": %lld", r->split, (long long)r->step,
            (long long)r->epoch);
    put_num(f, "loss", r->loss);
    if (!isnan(r->accuracy)) put_num(f, "accuracy", r->accuracy);
    put_num(f, "samples_per_s", r->samples_per_s);
    if (!isnan(r->lr)) put_num(f, "lr", r->lr);
    if (!isnan(r->grad_norm)) put_num(f, "grad_norm", r->grad_norm);
    if (!isnan(r->data_wait)) put_num(f, "data_wait", r->data_wait);
    if (r->time_breakdown) {
        static const char *const phase[5] = { "data", "forward", "backward", "comm", "optimizer" };
        fputs(", \"time_s\": {", f);
        for (int i = 0; i < 5; i++)
            fprintf(f, "%s\"%s\": %.6g", i ? ", " : "", phase[i],
                    isfinite(r->time_breakdown[i]) ? r->time_breakdown[i] : 0.0);
        fputs("}", f);
    }
    fputs("}\n", f);
    fflush(f);
}

static dlt_status write_dataset(hid_t file, dlt_backend *be, const char *name, const dlt_shape *shape,
                                const float *data, float *host)
{
    hsize_t dims[DLT_MAX_DIMS];
    size_t n = 1;
    for (int i = 0; i < shape->ndim; i++) {
        dims[i] = (hsize_t)shape->d[i];
        n *= dims[i];
    }
    DLT_CHECK(be->download(be, host, data, n * sizeof(float)));
    hid_t space = H5Screate_simple(shape->ndim, dims, NULL);
    hid_t d = H5Dcreate2(file, name, H5T_IEEE_F32LE, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    herr_t e = d < 0 ? -1 : H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, host);
    if (d >= 0) H5Dclose(d);
    H5Sclose(space);
    return e < 0 ? DLT_ERR(DLT_ERR_IO, "cannot write dataset %s", name) : DLT_OK;
}

dlt_status dlt_weights_save(dlt_model *m, const char *path)
{
    char tmp[1100];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    size_t n_params, n_state;
    dlt_model_params(m, &n_params);
    dlt_model_state(m, &n_state);
    size_t cap = n_params > n_state ? n_params : n_state;
    float *host = malloc((cap ? cap : 1) * sizeof *host);
    if (!host) return DLT_ERR(DLT_ERR_NOMEM, "weights: out of memory");

    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    hid_t f = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    dlt_status st = DLT_OK;
    if (f < 0) {
        st = DLT_ERR(DLT_ERR_IO, "%s: cannot create", tmp);
        goto out;
    }
    dlt_backend *be = dlt_model_layer(m, 0)->be;
    for (int i = 0; i < dlt_model_n_params(m) && st == DLT_OK; i++) {
        const dlt_param *p = dlt_model_param(m, i);
        st = write_dataset(f, be, p->name, &p->shape, p->w, host);
    }
    for (int li = 0; li < dlt_model_n_layers(m) && st == DLT_OK; li++) {
        dlt_layer *l = dlt_model_layer(m, li);
        for (int b = 0; b < l->n_bufs && st == DLT_OK; b++) {
            if (!l->buf_persistent[b]) continue;
            dlt_shape s = { 1, { l->buf_len[b] } };
            st = write_dataset(f, be, l->buf_name[b], &s, *l->buf_ptr[b], host);
        }
    }
    if (H5Fclose(f) < 0 && st == DLT_OK) st = DLT_ERR(DLT_ERR_IO, "%s: cannot close", tmp);
    if (st == DLT_OK && rename(tmp, path) != 0)
        st = DLT_ERR(DLT_ERR_IO, "%s: cannot rename to %s: %s", tmp, path, strerror(errno));
out:
    if (st != DLT_OK) remove(tmp);
    free(host);
    return st;
}
