/* Check suite: every layer's forward and backward against PyTorch.
 *
 * tests/torch/gen_layers.py writes one HDF5 file per case (layer type, its
 * config keys, train/eval, input, torch's weights, output, upstream gradient
 * R, input and parameter gradients of sum(y * R)) and the list of cases in
 * layer_cases.txt. Each case is replayed here on the CPU backend through
 * dlt_layer_create_standalone(): torch's weights and running statistics are
 * copied in by parameter/state name suffix, the layer runs forward and
 * backward, and every output is compared with max |a-b| / max(1, |b|) <=
 * 1e-4. Every case also runs a second time planned for a larger batch than it
 * uses, with NaN in the unused rows, so a layer that reads past n (batch
 * statistics, sums) fails; backward is run twice to check that gradients
 * accumulate (+=), which residual connections rely on.
 *
 * Dropout cannot match torch's random numbers, so it is tested on its own:
 * keep rate on 100k elements, kept values scaled by 1/(1-rate), gradient ==
 * dy * mask exactly, identity in eval, and the mask of a sample independent of
 * how the batch is split (the design's rank-independence contract). */
#include <check.h>
#include <hdf5.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/backend.h"
#include "core/layer.h"
#include "core/layers/layers_internal.h" /* dlt_loss_correct, dlt_loss_set_scale */
#include "core/model.h"
#include "core/rng.h"
#include "tests/unit/testutil.h"

#define TOL 1e-4
#define MAX_CASES 256
#define EXTRA_ROWS 2 /* planned-but-unused batch rows in the second run of a case */

static char g_cases[MAX_CASES][64];
static int g_ncases;

static dlt_backend *be;

static void setup(void) { ck_assert_int_eq(dlt_backend_cpu_create(&be), DLT_OK); }
static void teardown(void) { be->destroy(be); }

/* ---- reference file access ---- */

/* Fixed-length string attribute (written by h5py from numpy bytes). */
static void read_str_attr(const char *path, const char *name, char *buf, size_t len)
{
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    ck_assert_msg(f >= 0, "cannot open %s", path);
    ck_assert_msg(H5Aexists(f, name) > 0, "%s: no attribute %s", path, name);
    hid_t a = H5Aopen(f, name, H5P_DEFAULT);
    hid_t ft = H5Aget_type(a);
    ck_assert_msg(H5Tget_class(ft) == H5T_STRING && !H5Tis_variable_str(ft),
                  "%s: attribute %s is not a fixed-length string", path, name);
    size_t sz = H5Tget_size(ft);
    ck_assert_msg(sz < len, "%s: attribute %s too long", path, name);
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

/* Integer attribute, or def when absent. */
static int int_attr_or(const char *path, const char *name, int def)
{
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    ck_assert_msg(f >= 0, "cannot open %s", path);
    int has = H5Aexists(f, name) > 0;
    H5Fclose(f);
    return has ? (int)tu_read_attr(path, name) : def;
}

/* One case's description, from the file's attributes. */
typedef struct {
    char path[512];
    char name[64];
    char type[32];
    char keys[256];
    int train, n_inputs, check_backward, has_targets;
} ref_case;

static void load_case(int idx, ref_case *c)
{
    char file[128];
    snprintf(c->name, sizeof c->name, "%s", g_cases[idx]);
    snprintf(file, sizeof file, "layer_%s.h5", c->name);
    tu_ref_path(file, c->path, sizeof c->path);
    read_str_attr(c->path, "type", c->type, sizeof c->type);
    read_str_attr(c->path, "keys", c->keys, sizeof c->keys);
    c->train = (int)tu_read_attr(c->path, "train");
    c->n_inputs = (int)tu_read_attr(c->path, "n_inputs");
    c->check_backward = (int)tu_read_attr(c->path, "check_backward");
    c->has_targets = int_attr_or(c->path, "has_targets", 0);
}

/* Spec of type with "k=v k=v" keys. */
static void make_spec(dlt_layer_spec *s, const char *type, const char *keys, int n_inputs)
{
    memset(s, 0, sizeof *s);
    snprintf(s->type, sizeof s->type, "%s", type);
    snprintf(s->name, sizeof s->name, "L");
    s->n_inputs = n_inputs;
    char tmp[256], *save = NULL;
    snprintf(tmp, sizeof tmp, "%s", keys);
    for (char *tok = strtok_r(tmp, " ", &save); tok; tok = strtok_r(NULL, " ", &save)) {
        char *eq = strchr(tok, '=');
        ck_assert_msg(eq != NULL, "bad key '%s'", tok);
        ck_assert(s->n_kv < DLT_MAX_KV);
        *eq = '\0';
        snprintf(s->kv[s->n_kv].key, sizeof s->kv[0].key, "%s", tok);
        snprintf(s->kv[s->n_kv].val, sizeof s->kv[0].val, "%s", eq + 1);
        s->n_kv++;
    }
}

/* ---- device helpers ---- */

static void upload(void *dst, const void *src, size_t bytes)
{
    ck_assert_int_eq(be->upload(be, dst, src, bytes), DLT_OK);
}

static float *download(const float *src, size_t n)
{
    float *h = malloc((n ? n : 1) * sizeof *h);
    ck_assert(h != NULL);
    ck_assert_int_eq(be->download(be, h, src, n * sizeof *h), DLT_OK);
    return h;
}

static const char *suffix_of(const char *name)
{
    const char *dot = strrchr(name, '.');
    return dot ? dot + 1 : name;
}

/* Compares got (n) with scale * ref (n); the message names the case, the
 * quantity, the worst element and both values. */
static void compare(const ref_case *c, const char *what, int extra, const float *got,
                    const float *ref, size_t n, float scale)
{
    double m = 0;
    size_t at = 0;
    for (size_t i = 0; i < n; i++) {
        double want = (double)scale * ref[i];
        double e = fabs((double)got[i] - want) / fmax(1.0, fabs(want));
        if (!(e <= m)) m = e, at = i;
    }
    ck_assert_msg(m <= TOL, "%s (%s, planned batch +%d): %s max rel err %.3g at [%zu]: got %.8g, "
                  "torch %.8g", c->name, c->type, extra, what, m, at, n ? got[at] : 0.0,
                  n ? (double)scale * ref[at] : 0.0);
}

/* Downloads dev (n floats) and compares it with dataset dset of the case. */
static void compare_dev(const ref_case *c, const char *dset, int extra, const float *dev,
                        size_t n, float scale, const char *what)
{
    size_t rn;
    float *ref = tu_read_f32(c->path, dset, &rn, NULL, NULL);
    ck_assert_msg(rn == n, "%s: %s has %zu values, the layer %zu", c->name, dset, rn, n);
    float *got = download(dev, n);
    compare(c, what ? what : dset, extra, got, ref, n, scale);
    free(got);
    free(ref);
}

/* Reads dataset dset into a device buffer of rows_planned rows (the rows
 * past the file's fill with NaN); returns the file's dims. */
static void upload_rows(const ref_case *c, const char *dset, float *dev, int64_t rows_planned,
                        int64_t *dims, int *ndim)
{
    size_t n;
    float *h = tu_read_f32(c->path, dset, &n, dims, ndim);
    size_t per = dims[0] ? n / (size_t)dims[0] : 0;
    size_t total = (size_t)rows_planned * per;
    float *buf = malloc((total ? total : 1) * sizeof *buf);
    ck_assert(buf != NULL);
    for (size_t i = 0; i < total; i++) buf[i] = i < n ? h[i] : NAN;
    upload(dev, buf, total * sizeof *buf);
    free(buf);
    free(h);
}

/* ---- one case ---- */

/* Copies torch's parameters and state into the layer and checks that the
 * layer has exactly the parameters torch has. */
static void load_params(const ref_case *c, dlt_layer *l)
{
    static const char *const known[] = { "weight", "bias" };
    for (size_t k = 0; k < sizeof known / sizeof known[0]; k++) {
        int found = 0;
        for (int i = 0; i < l->n_params; i++)
            if (!strcmp(suffix_of(l->params[i].name), known[k])) found = 1;
        ck_assert_msg(found == tu_has(c->path, known[k]), "%s: torch %s '%s', dltrain %s",
                      c->name, tu_has(c->path, known[k]) ? "has" : "has no", known[k],
                      found ? "has" : "has not");
    }
    for (int i = 0; i < l->n_params; i++) {
        const dlt_param *p = &l->params[i];
        const char *sfx = suffix_of(p->name);
        ck_assert_msg(tu_has(c->path, sfx), "%s: parameter %s not in torch's", c->name, p->name);
        size_t n;
        int64_t dims[8];
        int nd;
        float *h = tu_read_f32(c->path, sfx, &n, dims, &nd);
        ck_assert_msg(nd == p->shape.ndim, "%s: %s has %d dims, torch %d", c->name, p->name,
                      p->shape.ndim, nd);
        for (int d = 0; d < nd; d++)
            ck_assert_msg(dims[d] == p->shape.d[d], "%s: %s dim %d is %lld, torch %lld", c->name,
                          p->name, d, (long long)p->shape.d[d], (long long)dims[d]);
        upload(p->w, h, n * sizeof *h);
        free(h);
    }
    for (int b = 0; b < l->n_bufs; b++) {
        if (!l->buf_persistent[b]) continue;
        const char *sfx = suffix_of(l->buf_name[b]);
        ck_assert_msg(tu_has(c->path, sfx), "%s: state %s not in torch's", c->name,
                      l->buf_name[b]);
        size_t n;
        float *h = tu_read_f32(c->path, sfx, &n, NULL, NULL);
        ck_assert_msg((int64_t)n == l->buf_len[b], "%s: state %s has %lld values, torch %zu",
                      c->name, l->buf_name[b], (long long)l->buf_len[b], n);
        upload(*l->buf_ptr[b], h, n * sizeof *h);
        free(h);
    }
}

/* Checks the input and parameter gradients against scale * torch's. */
static void check_grads(const ref_case *c, dlt_layer *l, int n, int extra, float scale,
                        const char *pass)
{
    char what[96];
    for (int i = 0; i < l->n_in; i++) {
        char dset[16];
        if (c->n_inputs == 1)
            snprintf(dset, sizeof dset, "dx");
        else
            snprintf(dset, sizeof dset, "dx%d", i);
        snprintf(what, sizeof what, "%s %s", dset, pass);
        size_t len = (size_t)n * (size_t)dlt_shape_sample_numel(&l->dx[i].shape);
        compare_dev(c, dset, extra, l->dx[i].data, len, scale, what);
    }
    for (int i = 0; i < l->n_params; i++) {
        const dlt_param *p = &l->params[i];
        char dset[64];
        snprintf(dset, sizeof dset, "%s_grad", suffix_of(p->name));
        snprintf(what, sizeof what, "%s %s", dset, pass);
        compare_dev(c, dset, extra, p->g, (size_t)dlt_shape_numel(&p->shape), scale, what);
    }
}

static void run_case(int idx, int extra)
{
    ref_case c;
    load_case(idx, &c);
    dlt_layer_spec spec;
    make_spec(&spec, c.type, c.keys, c.n_inputs);

    /* input shapes, planned for `extra` more rows than used */
    dlt_shape in[2];
    int64_t dims[8];
    int nd;
    ck_assert(c.n_inputs >= 1 && c.n_inputs <= 2);
    for (int i = 0; i < c.n_inputs; i++) {
        char dset[16];
        snprintf(dset, sizeof dset, c.n_inputs == 1 ? "x" : "x%d", i);
        size_t cnt;
        free(tu_read_f32(c.path, dset, &cnt, dims, &nd));
        ck_assert(nd >= 1 && nd <= DLT_MAX_DIMS);
        in[i].ndim = nd;
        for (int d = 0; d < nd; d++) in[i].d[d] = dims[d];
        in[i].d[0] += extra;
    }
    int n = (int)(in[0].d[0] - extra);

    dlt_layer *l = NULL;
    dlt_status st = dlt_layer_create_standalone(&spec, in, c.n_inputs, be, 7, &l);
    ck_assert_msg(st == DLT_OK, "%s: create %s '%s': %s", c.name, c.type, c.keys,
                  dlt_last_error());
    for (int i = 0; i < c.n_inputs; i++) {
        char dset[16];
        snprintf(dset, sizeof dset, c.n_inputs == 1 ? "x" : "x%d", i);
        upload_rows(&c, dset, l->x[i].data, in[i].d[0], dims, &nd);
    }
    load_params(&c, l);

    /* labels and targets for loss layers */
    int32_t *labels_dev = NULL;
    float *targets_dev = NULL;
    if (tu_has(c.path, "labels")) {
        size_t nl;
        float *lf = tu_read_f32(c.path, "labels", &nl, NULL, NULL);
        int32_t *li = malloc(nl * sizeof *li);
        ck_assert(li != NULL);
        for (size_t i = 0; i < nl; i++) li[i] = (int32_t)lf[i];
        ck_assert_int_eq(be->alloc(be, nl * sizeof *li, (void **)&labels_dev), DLT_OK);
        upload(labels_dev, li, nl * sizeof *li);
        free(li);
        free(lf);
    }
    if (c.has_targets) {
        size_t nt;
        float *t = tu_read_f32(c.path, "targets", &nt, NULL, NULL);
        ck_assert_int_eq(be->alloc(be, nt * sizeof *t, (void **)&targets_dev), DLT_OK);
        upload(targets_dev, t, nt * sizeof *t);
        free(t);
    }
    dlt_step_ctx ctx = { .train = c.train, .seed = 1, .step = 0, .sample0 = 0,
                         .labels = labels_dev, .targets = targets_dev };

    /* forward */
    st = l->ops->forward(l, &ctx, n);
    ck_assert_msg(st == DLT_OK, "%s: forward: %s", c.name, dlt_last_error());
    size_t yn;
    int64_t ydims[8];
    int ynd;
    free(tu_read_f32(c.path, "y", &yn, ydims, &ynd));
    ck_assert_msg(l->y.shape.ndim == ynd, "%s: output has %d dims, torch %d", c.name,
                  l->y.shape.ndim, ynd);
    for (int d = 1; d < ynd; d++)
        ck_assert_msg(l->y.shape.d[d] == ydims[d], "%s: output dim %d is %lld, torch %lld",
                      c.name, d, (long long)l->y.shape.d[d], (long long)ydims[d]);
    compare_dev(&c, "y", extra, l->y.data, yn, 1.0f, NULL);
    if (tu_has(c.path, "correct")) {
        const float *corr = dlt_loss_correct(l);
        ck_assert_msg(corr != NULL, "%s: no per-sample correctness", c.name);
        compare_dev(&c, "correct", extra, corr, (size_t)n, 1.0f, NULL);
    }
    for (int b = 0; b < l->n_bufs; b++) {
        if (!l->buf_persistent[b]) continue;
        char dset[96];
        snprintf(dset, sizeof dset, "%s_out", suffix_of(l->buf_name[b]));
        if (tu_has(c.path, dset))
            compare_dev(&c, dset, extra, *l->buf_ptr[b], (size_t)l->buf_len[b], 1.0f, NULL);
    }

    if (c.check_backward) {
        /* dy = R in the used rows, NaN in the planned-only ones */
        upload_rows(&c, "dy", l->dy.data, l->y.shape.d[0], dims, &nd);
        dlt_layer_zero_grads(l);
        st = l->ops->backward(l, &ctx, n);
        ck_assert_msg(st == DLT_OK, "%s: backward: %s", c.name, dlt_last_error());
        check_grads(&c, l, n, extra, 1.0f, "(first backward)");
        /* backward accumulates: a second one without zeroing doubles everything */
        st = l->ops->backward(l, &ctx, n);
        ck_assert_msg(st == DLT_OK, "%s: backward: %s", c.name, dlt_last_error());
        check_grads(&c, l, n, extra, 2.0f, "(accumulated twice)");
        if (l->ops->is_loss) {
            /* the model's loss_scale (1 / global batch) multiplies the gradient */
            dlt_loss_set_scale(l, 0.25f);
            dlt_layer_zero_grads(l);
            st = l->ops->backward(l, &ctx, n);
            ck_assert_msg(st == DLT_OK, "%s: backward: %s", c.name, dlt_last_error());
            check_grads(&c, l, n, extra, 0.25f, "(loss_scale 0.25)");
        }
    }
    if (labels_dev) be->free(be, labels_dev);
    if (targets_dev) be->free(be, targets_dev);
    dlt_layer_free_standalone(l);
}

START_TEST(test_torch_case)
{
    run_case(_i, 0);
}
END_TEST

START_TEST(test_torch_case_larger_plan)
{
    run_case(_i, EXTRA_ROWS);
}
END_TEST

/* Every layer type must have a torch case, so a type cannot silently drop out. */
START_TEST(test_all_types_covered)
{
    static const char *const types[] = { "dense", "conv2d", "maxpool", "avgpool",
                                         "global_avgpool", "batchnorm", "relu", "sigmoid",
                                         "tanh", "gelu", "flatten", "add",
                                         "softmax_cross_entropy", "mse" };
    ck_assert_msg(g_ncases >= 50, "only %d torch layer cases (run tests/torch/gen_layers.py)",
                  g_ncases);
    for (size_t t = 0; t < sizeof types / sizeof types[0]; t++) {
        int found = 0;
        for (int i = 0; i < g_ncases && !found; i++) {
            ref_case c;
            load_case(i, &c);
            found = !strcmp(c.type, types[t]);
        }
        ck_assert_msg(found, "no torch case for layer type %s", types[t]);
        ck_assert_msg(dlt_layer_find(types[t]) != NULL, "layer type %s not registered", types[t]);
    }
}
END_TEST

/* ---- dropout: statistics and exact gradients (not comparable with torch's RNG) ---- */

#define DROP_ROWS 100
#define DROP_COLS 1000

static dlt_layer *dropout_layer(const char *keys, int rows)
{
    dlt_layer_spec spec;
    make_spec(&spec, "dropout", keys, 1);
    dlt_shape in = { 2, { rows, DROP_COLS } };
    dlt_layer *l = NULL;
    ck_assert_msg(dlt_layer_create_standalone(&spec, &in, 1, be, 7, &l) == DLT_OK, "%s",
                  dlt_last_error());
    return l;
}

/* Runs forward on x (rows x DROP_COLS, host) and returns y (host, malloc'd). */
static float *dropout_fwd(dlt_layer *l, const dlt_step_ctx *ctx, const float *x, int rows)
{
    size_t len = (size_t)rows * DROP_COLS;
    upload(l->x[0].data, x, len * sizeof *x);
    ck_assert_int_eq(l->ops->forward(l, ctx, rows), DLT_OK);
    return download(l->y.data, len);
}

START_TEST(test_dropout_train_stats_and_grad)
{
    const float rate = 0.3f, keep_scale = 1.0f / (1.0f - rate);
    size_t len = (size_t)DROP_ROWS * DROP_COLS;
    float *x = malloc(len * sizeof *x), *dy = malloc(len * sizeof *dy);
    ck_assert(x && dy);
    tu_fill_uniform(x, len, 11, 0.5f, 1.5f); /* never 0, so y == 0 means dropped */
    tu_fill_uniform(dy, len, 12, -1.0f, 1.0f);
    dlt_layer *l = dropout_layer("rate=0.3", DROP_ROWS);
    dlt_step_ctx ctx = { .train = 1, .seed = 5, .step = 3, .sample0 = 0 };
    float *y = dropout_fwd(l, &ctx, x, DROP_ROWS);

    size_t dropped = 0;
    double worst = 0;
    for (size_t i = 0; i < len; i++) {
        if (y[i] == 0.0f) {
            dropped++;
        } else {
            double e = fabs((double)y[i] - (double)x[i] * keep_scale) / fabs((double)y[i]);
            if (e > worst) worst = e;
        }
    }
    /* binomial sd = sqrt(0.21 / 1e5) = 0.00145; 0.01 is ~7 sd */
    double frac = (double)dropped / (double)len;
    ck_assert_msg(fabs(frac - rate) < 0.01, "dropped fraction %.4f, expected %.2f", frac, rate);
    ck_assert_msg(worst < 1e-6, "kept values not x/(1-rate): rel err %g", worst);

    upload(l->dy.data, dy, len * sizeof *dy);
    dlt_layer_zero_grads(l);
    ck_assert_int_eq(l->ops->backward(l, &ctx, DROP_ROWS), DLT_OK);
    float *dx = download(l->dx[0].data, len);
    for (size_t i = 0; i < len; i++) {
        float want = y[i] == 0.0f ? 0.0f : dy[i] * keep_scale;
        ck_assert_msg(fabsf(dx[i] - want) <= 1e-6f * fabsf(want), "dx[%zu] = %g, want %g", i,
                      (double)dx[i], (double)want);
    }

    /* another step draws another mask */
    ctx.step = 4;
    float *y2 = dropout_fwd(l, &ctx, x, DROP_ROWS);
    size_t differ = 0;
    for (size_t i = 0; i < len; i++) differ += (y[i] == 0.0f) != (y2[i] == 0.0f);
    /* independent masks differ in 2 p (1-p) = 42% of elements */
    ck_assert_msg(differ > len / 4, "masks of steps 3 and 4 differ in only %zu elements", differ);

    free(y2);
    free(dx);
    free(y);
    free(x);
    free(dy);
    dlt_layer_free_standalone(l);
}
END_TEST

START_TEST(test_dropout_eval_identity)
{
    size_t len = (size_t)DROP_ROWS * DROP_COLS;
    float *x = malloc(len * sizeof *x), *dy = malloc(len * sizeof *dy);
    ck_assert(x && dy);
    tu_fill_uniform(x, len, 21, -2.0f, 2.0f);
    tu_fill_uniform(dy, len, 22, -1.0f, 1.0f);
    dlt_layer *l = dropout_layer("rate=0.5", DROP_ROWS);
    dlt_step_ctx ctx = { .train = 0, .seed = 5, .step = 3, .sample0 = 0 };
    float *y = dropout_fwd(l, &ctx, x, DROP_ROWS);
    ck_assert_msg(memcmp(y, x, len * sizeof *x) == 0, "eval dropout is not the identity");
    upload(l->dy.data, dy, len * sizeof *dy);
    dlt_layer_zero_grads(l);
    ck_assert_int_eq(l->ops->backward(l, &ctx, DROP_ROWS), DLT_OK);
    float *dx = download(l->dx[0].data, len);
    ck_assert_msg(memcmp(dx, dy, len * sizeof *dy) == 0, "eval dropout gradient is not dy");
    free(dx);
    free(y);
    free(x);
    free(dy);
    dlt_layer_free_standalone(l);
}
END_TEST

START_TEST(test_dropout_rate0_identity)
{
    size_t len = (size_t)DROP_ROWS * DROP_COLS;
    float *x = malloc(len * sizeof *x);
    ck_assert(x != NULL);
    tu_fill_uniform(x, len, 31, -2.0f, 2.0f);
    dlt_layer *l = dropout_layer("rate=0", DROP_ROWS);
    dlt_step_ctx ctx = { .train = 1, .seed = 5, .step = 3, .sample0 = 0 };
    float *y = dropout_fwd(l, &ctx, x, DROP_ROWS);
    ck_assert_msg(memcmp(y, x, len * sizeof *x) == 0, "rate 0 dropout is not the identity");
    free(y);
    free(x);
    dlt_layer_free_standalone(l);
}
END_TEST

/* The second half of a batch, run alone with sample0 = its global index (as
 * on another rank), gets the same mask as inside the whole batch. */
START_TEST(test_dropout_rank_independent)
{
    const int half = DROP_ROWS / 2;
    size_t len = (size_t)DROP_ROWS * DROP_COLS, hlen = (size_t)half * DROP_COLS;
    float *x = malloc(len * sizeof *x);
    ck_assert(x != NULL);
    tu_fill_uniform(x, len, 41, 0.5f, 1.5f);
    dlt_layer *whole = dropout_layer("rate=0.4", DROP_ROWS);
    dlt_layer *part = dropout_layer("rate=0.4", half);
    dlt_step_ctx ctx = { .train = 1, .seed = 9, .step = 17, .sample0 = 0 };
    float *yw = dropout_fwd(whole, &ctx, x, DROP_ROWS);
    ctx.sample0 = half;
    float *yp = dropout_fwd(part, &ctx, x + hlen, half);
    ck_assert_msg(memcmp(yp, yw + hlen, hlen * sizeof *yp) == 0,
                  "dropout mask depends on how the batch is split");
    free(yp);
    free(yw);
    free(x);
    dlt_layer_free_standalone(part);
    dlt_layer_free_standalone(whole);
}
END_TEST

/* ---- suite ---- */

/* Reads layer_cases.txt; a missing list leaves g_ncases 0, which
 * test_all_types_covered reports. */
static void read_case_list(void)
{
    char path[512], line[128];
    tu_ref_path("layer_cases.txt", path, sizeof path);
    FILE *f = fopen(path, "r");
    if (!f) return;
    while (g_ncases < MAX_CASES && fgets(line, sizeof line, f)) {
        line[strcspn(line, "\r\n")] = '\0';
        if (line[0]) snprintf(g_cases[g_ncases++], sizeof g_cases[0], "%.63s", line);
    }
    fclose(f);
}

static Suite *torch_layers_suite(void)
{
    Suite *s = suite_create("torch_layers");
    TCase *tc = tcase_create("torch");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_all_types_covered);
    tcase_add_loop_test(tc, test_torch_case, 0, g_ncases);
    tcase_add_loop_test(tc, test_torch_case_larger_plan, 0, g_ncases);
    suite_add_tcase(s, tc);

    TCase *td = tcase_create("dropout");
    tcase_add_checked_fixture(td, setup, teardown);
    tcase_add_test(td, test_dropout_train_stats_and_grad);
    tcase_add_test(td, test_dropout_eval_identity);
    tcase_add_test(td, test_dropout_rate0_identity);
    tcase_add_test(td, test_dropout_rank_independent);
    suite_add_tcase(s, td);
    return s;
}

int main(void)
{
    read_case_list();
    SRunner *sr = srunner_create(torch_layers_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed != 0;
}
