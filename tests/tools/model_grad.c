/* model_grad: one forward and backward of a token model on a fixed batch,
 * for comparisons with an outside implementation (tests/torch/bert_ref.py).
 *
 *   model_grad CONFIG CKPT BATCH.h5 OUT.h5 [key=value ...]
 *
 * BATCH.h5 holds "tokens" int32 (n, L) and "labels" int32 (n, L) for
 * per-token losses (-1: not a target) or (n) for a classifier: the caller
 * fixes the targets, so no masking randomness enters. The model of CONFIG
 * (with overrides) is built for n sequences of L tokens on the CPU, CKPT's
 * parameters are loaded strictly by name, and one step runs in evaluation
 * mode (no dropout) with the trainer's loss scale, 1 / counted targets.
 * OUT.h5 gets "logits" (the model's logits shape) of a forward without
 * targets (every position), "logits_step" of the step itself (a masked-LM
 * head computes only the target rows there), "loss" (n) per-sample summed
 * losses, and "grad/<layer>.<param>" for every parameter (a tied
 * table once, holding the sum of its uses). Exit status 0 on success, 1 with
 * a message otherwise. A test tool: it lives in tests/, not in dltrain. */
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/device.h"
#include "core/model.h"
#include "launcher/checkpoint.h"
#include "launcher/config.h"

/* Reads the int32 dataset name of f into a malloc'd array; dims (ndim <= 2). */
static int32_t *read_i32(hid_t f, const char *name, int *ndim, hsize_t dims[2])
{
    hid_t d = H5Dopen2(f, name, H5P_DEFAULT);
    if (d < 0) return NULL;
    hid_t s = H5Dget_space(d);
    *ndim = H5Sget_simple_extent_ndims(s);
    int32_t *v = NULL;
    if (*ndim >= 1 && *ndim <= 2) {
        dims[1] = 1;
        H5Sget_simple_extent_dims(s, dims, NULL);
        v = malloc(dims[0] * dims[1] * sizeof *v);
        if (v && H5Dread(d, H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, v) < 0) {
            free(v);
            v = NULL;
        }
    }
    H5Sclose(s);
    H5Dclose(d);
    return v;
}

/* Writes len host floats of the given shape as a float32 dataset. */
static int write_f32(hid_t loc, const char *name, const float *v, const dlt_shape *shape)
{
    hsize_t dims[DLT_MAX_DIMS];
    for (int i = 0; i < shape->ndim; i++) dims[i] = (hsize_t)shape->d[i];
    hid_t s = H5Screate_simple(shape->ndim, dims, NULL);
    hid_t d = H5Dcreate2(loc, name, H5T_NATIVE_FLOAT, s, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    int ok = d >= 0 && H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, v) >= 0;
    if (d >= 0) H5Dclose(d);
    H5Sclose(s);
    return ok;
}

/* Downloads len floats of backend memory into a fresh host array. */
static float *fetch(dlt_backend *be, const float *src, size_t len)
{
    float *h = malloc(len * sizeof *h + 1);
    if (h && be->download(be, h, src, len * sizeof *h) != DLT_OK) {
        free(h);
        return NULL;
    }
    return h;
}

static int fail(const char *what)
{
    fprintf(stderr, "model_grad: %s\n", what);
    return 1;
}

static int run(const char *config, const char *ckpt, const char *batch, const char *outp,
               char **over, int n_over)
{
    static dlt_config c;
    if (dlt_config_load(config, over, n_over, &c) != DLT_OK) return fail(dlt_last_error());
    hid_t f = H5Fopen(batch, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) return fail("cannot open the batch file");
    int tnd, lnd;
    hsize_t td[2], ld[2];
    int32_t *tok = read_i32(f, "tokens", &tnd, td);
    int32_t *lab = read_i32(f, "labels", &lnd, ld);
    H5Fclose(f);
    if (!tok || !lab || tnd != 2 || ld[0] != td[0] || (lnd == 2 && ld[1] != td[1]))
        return fail("the batch file needs tokens (n, L) and labels (n, L) or (n) int32");
    const int n = (int)td[0], L = (int)td[1];
    const size_t n_lab = (size_t)ld[0] * (lnd == 2 ? ld[1] : 1);

    dlt_backend *be;
    dlt_model *m;
    if (dlt_device_open("cpu", 0, &be) != DLT_OK) return fail(dlt_last_error());
    dlt_model_cfg mc = { .layers = c.layers, .n_layers = c.n_layers, .loss = c.loss,
                         .input = { 1, { L } }, .max_batch = n, .seed = c.seed };
    if (dlt_model_build(&mc, be, &m) != DLT_OK) return fail(dlt_last_error());
    int loaded = 0, kept = 0;
    if (dlt_ckpt_load_weights(ckpt, m, 1, &loaded, &kept, NULL) != DLT_OK)
        return fail(dlt_last_error());

    float *xh = malloc((size_t)n * L * sizeof *xh);
    float *x;
    int32_t *y;
    double counted = 0;
    for (size_t i = 0; i < n_lab; i++) counted += lab[i] >= 0;
    for (size_t i = 0; i < (size_t)n * L; i++) xh[i] = (float)tok[i];
    if (be->alloc(be, (size_t)n * L * sizeof(float), (void **)&x) != DLT_OK ||
        be->alloc(be, n_lab * sizeof(int32_t), (void **)&y) != DLT_OK ||
        be->upload(be, x, xh, (size_t)n * L * sizeof(float)) != DLT_OK ||
        be->upload(be, y, lab, n_lab * sizeof(int32_t)) != DLT_OK)
        return fail(dlt_last_error());
    /* every position's logits first (no targets: a masked-LM head then
     * computes all rows), then the step with the targets, whose backward
     * is the one measured (and which may compute only target rows) */
    int32_t *none = malloc(n_lab * sizeof *none);
    for (size_t i = 0; i < n_lab; i++) none[i] = lnd == 2 ? -1 : lab[i];   /* (n): a class each */
    dlt_step_ctx ctx0 = { .train = 0, .seed = c.seed, .labels = y, .labels_host = none };
    dlt_model_out out;
    const dlt_tensor *lg = dlt_model_logits(m);
    dlt_shape ls = lg->shape;
    ls.d[0] = n;
    float *full = NULL;
    if (be->upload(be, y, none, n_lab * sizeof(int32_t)) != DLT_OK ||
        dlt_model_forward(m, x, n, &ctx0, &out) != DLT_OK ||
        !(full = fetch(be, lg->data, (size_t)dlt_shape_numel(&ls))) ||
        be->upload(be, y, lab, n_lab * sizeof(int32_t)) != DLT_OK)
        return fail(dlt_last_error());
    free(none);
    dlt_step_ctx ctx = { .train = 0, .seed = c.seed, .labels = y, .labels_host = lab };
    if (dlt_model_forward(m, x, n, &ctx, &out) != DLT_OK ||
        dlt_model_backward(m, n, &ctx, (float)(1.0 / (counted > 0 ? counted : 1))) != DLT_OK ||
        be->sync(be) != DLT_OK)
        return fail(dlt_last_error());

    hid_t o = H5Fcreate(outp, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (o < 0) return fail("cannot create the output file");
    int ok = write_f32(o, "logits", full, &ls);
    free(full);
    float *h = fetch(be, lg->data, (size_t)dlt_shape_numel(&ls));
    ok = ok && h && write_f32(o, "logits_step", h, &ls);
    free(h);
    h = fetch(be, out.loss, (size_t)n);
    ok = ok && h && write_f32(o, "loss", h, &(dlt_shape){ 1, { n } });
    free(h);
    hid_t g = H5Gcreate2(o, "grad", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    for (int i = 0; ok && i < dlt_model_n_params(m); i++) {
        const dlt_param *p = dlt_model_param(m, i);
        h = fetch(be, p->g, (size_t)dlt_shape_numel(&p->shape));
        ok = h && write_f32(g, p->name, h, &p->shape);
        free(h);
    }
    H5Gclose(g);
    H5Fclose(o);
    be->free(be, x);
    be->free(be, y);
    dlt_model_free(m);
    be->destroy(be);
    free(xh);
    free(tok);
    free(lab);
    if (!ok) return fail("writing the output failed");
    printf("model_grad: %d sequences of %d tokens, %d parameters, %.0f counted targets -> %s\n", n,
           L, loaded, counted, outp);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 5) {
        fprintf(stderr, "usage: model_grad CONFIG CKPT BATCH.h5 OUT.h5 [key=value ...]\n");
        return 2;
    }
    return run(argv[1], argv[2], argv[3], argv[4], argv + 5, argc - 5);
}
