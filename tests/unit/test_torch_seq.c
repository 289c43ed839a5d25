/* Check suite: the sequence-model layers' forward and backward against
 * PyTorch, and a 2-block tied BERT model end to end.
 *
 * tests/torch/gen_seq.py writes one HDF5 file per case (layer type and keys,
 * input or token ids, padding tokens, labels, an LSTM's initial state,
 * torch's weights under dltrain's parameter names, output, upstream
 * gradient R and the gradients of sum(y R)). Each case is replayed through
 * dlt_layer_create_standalone() on the CPU backend, planned for one sample
 * more than it runs with NaN in the unused row (a layer reading past n
 * fails), and every output is compared with max |a-b| / max(1, |b|) <= 1e-4.
 * The model case builds embedding, positions, token types, layernorm, two
 * transformer blocks and an MLM head tied to the embedding through
 * dlt_model_build(), loads torch's weights by name and compares the
 * per-sample loss of the per-token cross-entropy (ignored labels, padding
 * mask from the model input) and every parameter gradient. */
#include <check.h>
#include <hdf5.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/layers/layers_internal.h"
#include "core/model.h"
#include "tests/unit/testutil.h"

#define TOL 1e-4
#define MAX_CASES 64

static char g_cases[MAX_CASES][64];
static int g_ncases;
static dlt_backend *be;

static void setup(void) { ck_assert_int_eq(dlt_backend_cpu_create(&be), DLT_OK); }
static void teardown(void) { be->destroy(be); }

static void str_attr(const char *path, const char *name, char *buf, size_t len)
{
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    ck_assert_msg(f >= 0, "cannot open %s", path);
    hid_t a = H5Aopen(f, name, H5P_DEFAULT);
    ck_assert_msg(a >= 0, "%s: no attribute %s", path, name);
    hid_t ft = H5Aget_type(a);
    size_t sz = H5Tget_size(ft);
    ck_assert(sz < len);
    hid_t mt = H5Tcopy(H5T_C_S1);
    H5Tset_size(mt, sz + 1);
    H5Tset_strpad(mt, H5T_STR_NULLTERM);
    memset(buf, 0, len);
    ck_assert(H5Aread(a, mt, buf) >= 0);
    H5Tclose(mt);
    H5Tclose(ft);
    H5Aclose(a);
    H5Fclose(f);
}

static void make_spec(dlt_layer_spec *s, const char *type, const char *name, const char *keys)
{
    memset(s, 0, sizeof *s);
    snprintf(s->type, sizeof s->type, "%s", type);
    snprintf(s->name, sizeof s->name, "%s", name);
    char tmp[256], *save = NULL;
    snprintf(tmp, sizeof tmp, "%s", keys);
    for (char *t = strtok_r(tmp, " ", &save); t; t = strtok_r(NULL, " ", &save)) {
        char *eq = strchr(t, '=');
        ck_assert(eq != NULL);
        *eq = '\0';
        snprintf(s->kv[s->n_kv].key, sizeof s->kv[0].key, "%s", t);
        snprintf(s->kv[s->n_kv].val, sizeof s->kv[0].val, "%s", eq + 1);
        s->n_kv++;
    }
}

static float *dl(const float *src, size_t n)
{
    float *h = malloc(n * sizeof *h + 1);
    ck_assert_int_eq(be->download(be, h, src, n * sizeof *h), DLT_OK);
    return h;
}

static void up(void *dst, const void *src, size_t bytes)
{
    ck_assert_int_eq(be->upload(be, dst, src, bytes), DLT_OK);
}

static void *dev(size_t bytes)
{
    void *p;
    ck_assert_int_eq(be->alloc(be, bytes, &p), DLT_OK);
    return p;
}

static void expect_close(const char *what, const char *cs, const float *got, const float *want,
                         size_t n)
{
    double e = tu_max_rel_err(got, want, n);
    ck_assert_msg(e <= TOL, "%s: %s differs from torch by %.3g", cs, what, e);
}

/* Compares backend tensor t (n floats) with dataset dset of path. */
static void compare(const char *path, const char *dset, const char *cs, const float *t, size_t n)
{
    size_t nr;
    float *want = tu_read_f32(path, dset, &nr, NULL, NULL);
    ck_assert_msg(nr == n, "%s: %s has %zu values, expected %zu", cs, dset, nr, n);
    float *got = dl(t, n);
    expect_close(dset, cs, got, want, n);
    free(got);
    free(want);
}

/* Uploads h (count floats) into rows [0, count) of dst and NaN after, up to total. */
static void upload_nan_tail(float *dst, const float *h, size_t count, size_t total)
{
    float *b = malloc(total * sizeof *b + 1);
    memcpy(b, h, count * sizeof *b);
    for (size_t i = count; i < total; i++) b[i] = NAN;
    up(dst, b, total * sizeof *b);
    free(b);
}

START_TEST(test_layer_vs_torch)
{
    char file[128], path[512], type[32], keys[256];
    const char *cs = g_cases[_i % g_ncases];
    snprintf(file, sizeof file, "seq_%s.h5", cs);
    tu_ref_path(file, path, sizeof path);
    str_attr(path, "type", type, sizeof type);
    str_attr(path, "keys", keys, sizeof keys);
    if (_i >= g_ncases) {   /* second round: attention layers on the probabilities ops */
        if (strcmp(type, "self_attention") != 0 && strcmp(type, "transformer") != 0) return;
        const size_t kl = strlen(keys);
        snprintf(keys + kl, sizeof keys - kl, " attention_impl=probs");
    }
    int ids = (int)tu_read_attr(path, "ids");

    int64_t dims[8];
    int nd;
    size_t nx;
    float *x = tu_read_f32(path, "x", &nx, dims, &nd);
    const int n = (int)dims[0], len = (int)dims[1];
    dlt_shape in = { nd, { 0 } };
    for (int i = 0; i < nd; i++) in.d[i] = dims[i];
    in.d[0] = n + 1;   /* one planned row stays unused (NaN) */
    dlt_layer_spec spec;
    make_spec(&spec, type, "L", keys);
    dlt_layer *l;
    ck_assert_msg(dlt_layer_create_standalone(&spec, &in, 1, be, 1, &l) == DLT_OK, "%s: %s", cs,
                  dlt_last_error());
    const size_t per = nx / (size_t)n;
    upload_nan_tail(l->x[0].data, x, nx, nx + per);

    for (int i = 0; i < l->n_params; i++) {
        char ds[96];
        snprintf(ds, sizeof ds, "w.%s", strchr(l->params[i].name, '.') + 1);
        size_t np;
        float *w = tu_read_f32(path, ds, &np, NULL, NULL);
        ck_assert_msg(np == (size_t)dlt_shape_numel(&l->params[i].shape), "%s: %s size", cs, ds);
        up(l->params[i].w, w, np * sizeof *w);
        free(w);
    }
    dlt_step_ctx ctx = { .train = 1, .seed = 1 };
    float *tok = NULL;
    int32_t *lab = NULL;
    if (tu_has(path, "tokens")) {
        size_t nt;
        float *t = tu_read_f32(path, "tokens", &nt, NULL, NULL);
        tok = dev((nt + (size_t)len) * sizeof *tok);
        upload_nan_tail(tok, t, nt, nt + (size_t)len);
        ctx.tokens = tok;
        ctx.tokens_len = len;
        free(t);
    }
    if (tu_has(path, "labels")) {
        size_t nl;
        float *lf = tu_read_f32(path, "labels", &nl, NULL, NULL);
        int32_t *li = malloc(nl * sizeof *li);
        for (size_t i = 0; i < nl; i++) li[i] = (int32_t)lf[i];
        lab = dev(nl * sizeof *lab);
        up(lab, li, nl * sizeof *li);
        ctx.labels = lab;
        free(lf);
        free(li);
    }
    if (tu_has(path, "h0")) {   /* stateful LSTM: state (layers, 2, n + 1, hidden) */
        size_t nh;
        int64_t hd[3];
        float *h0 = tu_read_f32(path, "h0", &nh, hd, NULL);
        float *c0 = tu_read_f32(path, "c0", &nh, NULL, NULL);
        float *state = NULL;
        for (int i = 0; i < l->n_bufs; i++)
            if (l->buf_persistent[i]) state = *l->buf_ptr[i];
        ck_assert(state != NULL);
        const size_t blk = (size_t)hd[1] * hd[2], stride = (size_t)(n + 1) * hd[2];
        for (int64_t k = 0; k < hd[0]; k++) {
            up(state + (2 * k) * stride, h0 + k * blk, blk * sizeof(float));
            up(state + (2 * k + 1) * stride, c0 + k * blk, blk * sizeof(float));
        }
        free(h0);
        free(c0);
    }

    ck_assert_msg(l->ops->forward(l, &ctx, n) == DLT_OK, "%s: %s", cs, dlt_last_error());
    size_t ny = (size_t)n * (size_t)dlt_shape_sample_numel(&l->y.shape);
    compare(path, "y", cs, l->y.data, ny);
    if (l->ops->is_loss) {
        compare(path, "correct", cs, dlt_loss_correct(l), (size_t)n);
        compare(path, "count", cs, dlt_loss_count(l), (size_t)n);
    }
    size_t nr;
    float *R = tu_read_f32(path, "dy", &nr, NULL, NULL);
    up(l->dy.data, R, nr * sizeof *R);
    free(R);
    dlt_layer_zero_grads(l);
    ck_assert_msg(l->ops->backward(l, &ctx, n) == DLT_OK, "%s: %s", cs, dlt_last_error());
    if (!ids) compare(path, "dx", cs, l->dx[0].data, nx);
    for (int i = 0; i < l->n_params; i++) {
        char ds[96];
        snprintf(ds, sizeof ds, "g.%s", strchr(l->params[i].name, '.') + 1);
        compare(path, ds, cs, l->params[i].g, (size_t)dlt_shape_numel(&l->params[i].shape));
    }
    free(x);
    if (tok) be->free(be, tok);
    if (lab) be->free(be, lab);
    dlt_layer_free_standalone(l);
}
END_TEST

START_TEST(test_tied_bert_vs_torch)
{
    char path[512];
    tu_ref_path("seq_model_bert.h5", path, sizeof path);
    dlt_layer_spec s[7];
    make_spec(&s[0], "embedding", "emb", "vocab=13 dim=8");
    make_spec(&s[1], "position_embedding", "pos", "max_len=8");
    make_spec(&s[2], "token_type_embedding", "typ", "");
    make_spec(&s[3], "layernorm", "ln", "");
    make_spec(&s[4], "transformer", "enc0", "heads=2 ff=16 dropout=0");
    make_spec(&s[5], "transformer", "enc1", "heads=2 ff=16 dropout=0");
    make_spec(&s[6], "mlm_head", "mlm", "vocab=13 tie=emb");
    int64_t dims[8];
    size_t nt, nl;
    float *tokens = tu_read_f32(path, "tokens", &nt, dims, NULL);
    const int n = (int)dims[0], len = (int)dims[1];
    dlt_model_cfg cfg = { .layers = s, .n_layers = 7, .loss = "softmax_cross_entropy",
                          .input = { 1, { len } }, .max_batch = n, .seed = 1 };
    dlt_model *m;
    ck_assert_msg(dlt_model_build(&cfg, be, &m) == DLT_OK, "%s", dlt_last_error());
    for (int i = 0; i < dlt_model_n_params(m); i++) {
        const dlt_param *p = dlt_model_param(m, i);
        char ds[96];
        snprintf(ds, sizeof ds, "w.%s", p->name);
        ck_assert_msg(tu_has(path, ds), "torch has no %s", ds);
        size_t np;
        float *w = tu_read_f32(path, ds, &np, NULL, NULL);
        ck_assert_int_eq(np, dlt_shape_numel(&p->shape));
        up(p->w, w, np * sizeof *w);
        free(w);
    }
    float *lf = tu_read_f32(path, "labels", &nl, NULL, NULL);
    int32_t li[64];
    ck_assert(nl <= 64);
    for (size_t i = 0; i < nl; i++) li[i] = (int32_t)lf[i];
    int32_t *lab = dev(sizeof li);
    up(lab, li, sizeof li);
    float *x = dev(nt * sizeof *x);
    up(x, tokens, nt * sizeof *x);
    dlt_step_ctx ctx = { .train = 1, .seed = 3, .labels = lab };
    dlt_model_out out;
    ck_assert_msg(dlt_model_forward(m, x, n, &ctx, &out) == DLT_OK, "%s", dlt_last_error());
    compare(path, "loss", "bert", out.loss, (size_t)n);
    ck_assert_int_eq(dlt_model_backward(m, n, &ctx, 1.0f), DLT_OK);
    for (int i = 0; i < dlt_model_n_params(m); i++) {
        const dlt_param *p = dlt_model_param(m, i);
        char ds[96];
        snprintf(ds, sizeof ds, "g.%s", p->name);
        compare(path, ds, "bert", p->g, (size_t)dlt_shape_numel(&p->shape));
    }
    free(tokens);
    free(lf);
    be->free(be, lab);
    be->free(be, x);
    dlt_model_free(m);
}
END_TEST

static void load_case_list(void)
{
    char path[512], line[128];
    tu_ref_path("seq_cases.txt", path, sizeof path);
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "cannot open %s (run tests/torch/gen_seq.py)\n", path);
        exit(1);
    }
    while (g_ncases < MAX_CASES && fgets(line, sizeof line, f)) {
        line[strcspn(line, "\r\n")] = '\0';
        if (line[0]) snprintf(g_cases[g_ncases++], sizeof g_cases[0], "%.63s", line);
    }
    fclose(f);
}

int main(void)
{
    load_case_list();
    Suite *s = suite_create("torch_seq");
    TCase *tc = tcase_create("torch_seq");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_loop_test(tc, test_layer_vs_torch, 0, 2 * g_ncases);
    tcase_add_test(tc, test_tied_bert_vs_torch);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed != 0;
}
