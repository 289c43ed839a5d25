/* Layers on the CPU backend: a finite-difference gradient check of every
 * layer type, forward semantics (shapes, layouts, train vs eval), the spec
 * getters and the registry.
 *
 * The gradient check differentiates f = sum(y * R) for a random R with
 * central differences in float and compares with backward(); loss layers
 * ignore dy, so there R is the constant loss scale. Inputs are drawn away
 * from kinks (ReLU at 0, ties in max pooling) by more than eps. Backward is
 * run twice to check that it accumulates. Model-level tests (arenas,
 * resblocks, errors) are in test_model.c. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/layers/layers_internal.h"
#include "core/model.h"
#include "tests/unit/testutil.h"

static dlt_backend *be;

static void be_setup(void) { ck_assert_int_eq(dlt_backend_cpu_create(&be), DLT_OK); }
static void be_teardown(void) { be->destroy(be); }

/* A spec from "k=v k=v" pairs. */
static dlt_layer_spec mkspec(const char *type, const char *kv)
{
    dlt_layer_spec s;
    memset(&s, 0, sizeof s);
    snprintf(s.type, sizeof s.type, "%s", type);
    snprintf(s.name, sizeof s.name, "%s", type);
    char buf[256];
    snprintf(buf, sizeof buf, "%s", kv ? kv : "");
    for (char *save = NULL, *t = strtok_r(buf, " ", &save); t; t = strtok_r(NULL, " ", &save)) {
        char *eq = strchr(t, '=');
        ck_assert(eq != NULL);
        *eq = '\0';
        snprintf(s.kv[s.n_kv].key, sizeof s.kv[0].key, "%s", t);
        snprintf(s.kv[s.n_kv].val, sizeof s.kv[0].val, "%s", eq + 1);
        s.n_kv++;
    }
    return s;
}

static dlt_shape shp(int ndim, int64_t a, int64_t b, int64_t c, int64_t d)
{
    return (dlt_shape){ ndim, { a, b, c, d } };
}

static float *dl(const float *src, size_t n)
{
    float *h = malloc(n * sizeof *h + 1);
    ck_assert(h != NULL);
    ck_assert_int_eq(be->download(be, h, src, n * sizeof *h), DLT_OK);
    return h;
}

static void up(float *dst, const float *h, size_t n)
{
    ck_assert_int_eq(be->upload(be, dst, h, n * sizeof *h), DLT_OK);
}

/* ---- input generators ---- */

typedef enum { FILL_UNIFORM, FILL_AWAY_FROM_ZERO, FILL_DISTINCT, FILL_WIDE } fill_kind;

static void fill(float *x, size_t n, uint64_t seed, fill_kind k)
{
    dlt_rng r = dlt_rng_make(seed);
    switch (k) {
    case FILL_UNIFORM: tu_fill_uniform(x, n, seed, -1.0f, 1.0f); break;
    case FILL_WIDE: tu_fill_uniform(x, n, seed, -3.0f, 3.0f); break;
    case FILL_AWAY_FROM_ZERO: /* |x| >= 0.1: ReLU's kink stays out of reach */
        for (size_t i = 0; i < n; i++) {
            float m = 0.1f + 0.9f * (float)dlt_rng_uniform(&r);
            x[i] = dlt_rng_uniform(&r) < 0.5 ? -m : m;
        }
        break;
    case FILL_DISTINCT: /* a shuffled grid of spacing 0.02: no ties in any window */
        for (size_t i = 0; i < n; i++) x[i] = 0.02f * (float)i - 0.01f * (float)n;
        for (size_t i = n; i > 1; i--) {
            size_t j = (size_t)dlt_rng_below(&r, i);
            float t = x[i - 1];
            x[i - 1] = x[j];
            x[j] = t;
        }
        break;
    }
}

/* ---- the gradient check ---- */

typedef struct {
    const char *type, *kv;
    dlt_shape in[2];
    int n_in;
    int train;
    fill_kind fk;
    float eps;
    int targets;       /* mse: float targets instead of one-hot labels */
} gc_case;

typedef struct {
    dlt_layer *l;
    dlt_step_ctx ctx;
    int n;
    size_t ny;
    float *R;          /* (ny) host */
    int32_t *labels;   /* backend */
    float *targets;    /* backend */
} gc_state;

static double objective(gc_state *g)
{
    ck_assert_int_eq(g->l->ops->forward(g->l, &g->ctx, g->n), DLT_OK);
    float *y = dl(g->l->y.data, g->ny);
    double f = 0.0;
    for (size_t i = 0; i < g->ny; i++) f += (double)y[i] * g->R[i];
    free(y);
    return f;
}

static double objective_fn(void *g) { return objective(g); }

/* Analytic against numeric d f / d t for (a sample of) the backend tensor t. */
static void check_tensor(gc_state *g, float *t, size_t n, const float *ga, float eps,
                         const char *what)
{
    char label[128];
    snprintf(label, sizeof label, "%s %s", g->l->ops->type, what);
    tu_fd_check(be, objective_fn, g, t, n, ga, eps, 200, n, label);
}

static void grad_check(const gc_case *c)
{
    dlt_layer_spec spec = mkspec(c->type, c->kv);
    gc_state g = { 0 };
    ck_assert_msg(dlt_layer_create_standalone(&spec, c->in, c->n_in, be, 7, &g.l) == DLT_OK,
                  "%s: %s", c->type, dlt_last_error());
    dlt_layer *l = g.l;
    g.n = (int)c->in[0].d[0];
    g.ny = (size_t)dlt_shape_numel(&l->y.shape);
    g.ctx = (dlt_step_ctx){ .train = c->train, .seed = 11, .step = 3, .sample0 = 5 };
    for (int i = 0; i < c->n_in; i++) {
        size_t nx = (size_t)dlt_shape_numel(&c->in[i]);
        float *h = malloc(nx * sizeof *h);
        fill(h, nx, 100 + (uint64_t)i, c->fk);
        up(l->x[i].data, h, nx);
        free(h);
    }
    g.R = malloc(g.ny * sizeof *g.R);
    if (l->ops->is_loss) {
        for (size_t i = 0; i < g.ny; i++) g.R[i] = 0.7f;
        dlt_loss_set_scale(l, 0.7f);
        int k = (int)dlt_shape_sample_numel(&c->in[0]);
        int32_t lab[64];
        for (int i = 0; i < g.n; i++) lab[i] = (int32_t)((i * 7 + 3) % k);
        ck_assert_int_eq(be->alloc(be, sizeof lab, (void **)&g.labels), DLT_OK);
        ck_assert_int_eq(be->upload(be, g.labels, lab, sizeof lab), DLT_OK);
        g.ctx.labels = g.labels;
        if (c->targets) {
            size_t nt = (size_t)dlt_shape_numel(&c->in[0]);
            float *t = malloc(nt * sizeof *t);
            fill(t, nt, 55, FILL_UNIFORM);
            ck_assert_int_eq(be->alloc(be, nt * sizeof *t, (void **)&g.targets), DLT_OK);
            up(g.targets, t, nt);
            free(t);
            g.ctx.targets = g.targets;
        }
    } else {
        fill(g.R, g.ny, 77, FILL_UNIFORM);
    }

    /* analytic, twice to see accumulation */
    dlt_layer_zero_grads(l);
    ck_assert_int_eq(l->ops->forward(l, &g.ctx, g.n), DLT_OK);
    up(l->dy.data, g.R, g.ny);
    ck_assert_msg(l->ops->backward(l, &g.ctx, g.n) == DLT_OK, "%s", dlt_last_error());
    float *gx[2], *gp[DLT_MAX_PARAMS];
    for (int i = 0; i < c->n_in; i++) gx[i] = dl(l->dx[i].data, (size_t)dlt_shape_numel(&c->in[i]));
    for (int i = 0; i < l->n_params; i++)
        gp[i] = dl(l->params[i].g, (size_t)dlt_shape_numel(&l->params[i].shape));
    ck_assert_int_eq(l->ops->backward(l, &g.ctx, g.n), DLT_OK);
    for (int i = 0; i < c->n_in; i++) {
        size_t nx = (size_t)dlt_shape_numel(&c->in[i]);
        float *twice = dl(l->dx[i].data, nx);
        for (size_t j = 0; j < nx; j++) twice[j] *= 0.5f;
        ck_assert_msg(tu_max_rel_err(twice, gx[i], nx) < 1e-5, "%s: backward does not accumulate",
                      c->type);
        free(twice);
    }

    for (int i = 0; i < c->n_in; i++) {
        check_tensor(&g, l->x[i].data, (size_t)dlt_shape_numel(&c->in[i]), gx[i], c->eps, "dx");
        free(gx[i]);
    }
    for (int i = 0; i < l->n_params; i++) {
        check_tensor(&g, l->params[i].w, (size_t)dlt_shape_numel(&l->params[i].shape), gp[i],
                     c->eps, l->params[i].name);
        free(gp[i]);
    }
    free(g.R);
    if (g.labels) be->free(be, g.labels);
    if (g.targets) be->free(be, g.targets);
    dlt_layer_free_standalone(l);
}

static const gc_case gc_cases[] = {
    { "dense", "units=5", { { 2, { 3, 7 } } }, 1, 1, FILL_UNIFORM, 1e-2f, 0 },
    { "dense", "units=4 bias=false", { { 4, { 2, 3, 2, 2 } } }, 1, 1, FILL_UNIFORM, 1e-2f, 0 },
    { "conv2d", "filters=4 kernel=3 stride=2 padding=1", { { 4, { 2, 3, 7, 9 } } }, 1, 1,
      FILL_UNIFORM, 1e-2f, 0 },
    { "conv2d", "filters=3 kernel=1 bias=false", { { 4, { 2, 2, 4, 3 } } }, 1, 1, FILL_UNIFORM,
      1e-2f, 0 },
    { "conv2d", "filters=2 kernel=2 stride=2", { { 4, { 1, 2, 6, 5 } } }, 1, 1, FILL_UNIFORM,
      1e-2f, 0 },
    { "maxpool", "size=2", { { 4, { 2, 3, 6, 8 } } }, 1, 1, FILL_DISTINCT, 2e-3f, 0 },
    { "maxpool", "size=3 stride=2 padding=1", { { 4, { 2, 2, 7, 9 } } }, 1, 1, FILL_DISTINCT,
      2e-3f, 0 },
    { "avgpool", "size=3 stride=2 padding=1", { { 4, { 2, 2, 7, 9 } } }, 1, 1, FILL_UNIFORM,
      1e-2f, 0 },
    { "avgpool", "size=2 stride=1", { { 4, { 1, 3, 5, 4 } } }, 1, 1, FILL_UNIFORM, 1e-2f, 0 },
    { "global_avgpool", "", { { 4, { 2, 3, 5, 7 } } }, 1, 1, FILL_UNIFORM, 1e-2f, 0 },
    { "batchnorm", "", { { 4, { 4, 3, 3, 5 } } }, 1, 1, FILL_WIDE, 1e-2f, 0 },
    { "batchnorm", "eps=1e-3 momentum=0.2", { { 2, { 8, 5 } } }, 1, 1, FILL_WIDE, 1e-2f, 0 },
    { "relu", "", { { 4, { 2, 3, 4, 5 } } }, 1, 1, FILL_AWAY_FROM_ZERO, 1e-2f, 0 },
    { "sigmoid", "", { { 2, { 3, 7 } } }, 1, 1, FILL_WIDE, 1e-2f, 0 },
    { "tanh", "", { { 2, { 3, 7 } } }, 1, 1, FILL_WIDE, 1e-2f, 0 },
    { "gelu", "", { { 2, { 3, 7 } } }, 1, 1, FILL_WIDE, 1e-2f, 0 },
    { "dropout", "rate=0.3", { { 2, { 4, 25 } } }, 1, 1, FILL_UNIFORM, 1e-2f, 0 },
    { "dropout", "rate=0.3", { { 2, { 4, 25 } } }, 1, 0, FILL_UNIFORM, 1e-2f, 0 },
    { "flatten", "", { { 4, { 2, 3, 2, 2 } } }, 1, 1, FILL_UNIFORM, 1e-2f, 0 },
    { "add", "", { { 4, { 2, 3, 2, 2 } }, { 4, { 2, 3, 2, 2 } } }, 2, 1, FILL_UNIFORM, 1e-2f, 0 },
    { "softmax_cross_entropy", "", { { 2, { 5, 6 } } }, 1, 1, FILL_WIDE, 1e-2f, 0 },
    { "mse", "", { { 2, { 4, 6 } } }, 1, 1, FILL_WIDE, 1e-2f, 0 },
    { "mse", "", { { 2, { 4, 6 } } }, 1, 1, FILL_WIDE, 1e-2f, 1 },
};

START_TEST(test_grad_check)
{
    grad_check(&gc_cases[_i]);
}
END_TEST

/* ---- forward semantics ---- */

static dlt_layer *mk(const char *type, const char *kv, dlt_shape in)
{
    dlt_layer_spec s = mkspec(type, kv);
    dlt_layer *l;
    ck_assert_msg(dlt_layer_create_standalone(&s, &in, 1, be, 3, &l) == DLT_OK, "%s",
                  dlt_last_error());
    return l;
}

static void assert_shape(const dlt_layer *l, int ndim, int64_t a, int64_t b, int64_t c, int64_t d)
{
    dlt_shape want = shp(ndim, a, b, c, d);
    char s1[64], s2[64];
    int same = l->y.shape.ndim == ndim;
    for (int i = 0; same && i < ndim; i++) same = l->y.shape.d[i] == want.d[i];
    ck_assert_msg(same, "%s: output %s, want %s", l->ops->type,
                  dlt_shape_str(&l->y.shape, s1, sizeof s1), dlt_shape_str(&want, s2, sizeof s2));
}

START_TEST(test_output_shapes)
{
    struct {
        const char *type, *kv;
        dlt_shape in, out;
    } t[] = {
        { "dense", "units=10", shp(4, 8, 16, 7, 7), shp(2, 8, 10, 0, 0) },
        { "conv2d", "filters=6 kernel=5", shp(4, 2, 1, 28, 28), shp(4, 2, 6, 24, 24) },
        { "conv2d", "filters=4 kernel=3 stride=2 padding=1", shp(4, 2, 3, 7, 9),
          shp(4, 2, 4, 4, 5) },
        { "maxpool", "size=2", shp(4, 2, 3, 7, 9), shp(4, 2, 3, 3, 4) },
        { "avgpool", "size=3 stride=2 padding=1", shp(4, 1, 2, 7, 9), shp(4, 1, 2, 4, 5) },
        { "global_avgpool", "", shp(4, 3, 5, 4, 4), shp(2, 3, 5, 0, 0) },
        { "flatten", "", shp(4, 3, 5, 4, 2), shp(2, 3, 40, 0, 0) },
        { "batchnorm", "", shp(2, 3, 5, 0, 0), shp(2, 3, 5, 0, 0) },
        { "softmax_cross_entropy", "", shp(2, 6, 10, 0, 0), shp(1, 6, 0, 0, 0) },
        { "mse", "", shp(2, 6, 3, 0, 0), shp(1, 6, 0, 0, 0) },
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        dlt_layer *l = mk(t[i].type, t[i].kv, t[i].in);
        assert_shape(l, t[i].out.ndim, t[i].out.d[0], t[i].out.d[1], t[i].out.d[2],
                     t[i].out.d[3]);
        dlt_layer_free_standalone(l);
    }
}
END_TEST

START_TEST(test_dense_and_conv_match_naive)
{
    /* dense: y = x W^T + b with W (units, in) */
    dlt_layer *l = mk("dense", "units=3", shp(2, 2, 4, 0, 0));
    float x[8], w[12], b[3];
    fill(x, 8, 1, FILL_UNIFORM);
    fill(w, 12, 2, FILL_UNIFORM);
    fill(b, 3, 3, FILL_UNIFORM);
    up(l->x[0].data, x, 8), up(l->params[0].w, w, 12), up(l->params[1].w, b, 3);
    dlt_step_ctx ctx = { .train = 1 };
    ck_assert_int_eq(l->ops->forward(l, &ctx, 2), DLT_OK);
    float *y = dl(l->y.data, 6);
    for (int i = 0; i < 2; i++)
        for (int u = 0; u < 3; u++) {
            double s = b[u];
            for (int j = 0; j < 4; j++) s += (double)x[i * 4 + j] * w[u * 4 + j];
            ck_assert_double_eq_tol(y[i * 3 + u], s, 1e-5);
        }
    free(y);
    ck_assert_double_eq(l->flops, 2.0 * 4 * 3);
    dlt_layer_free_standalone(l);

    /* conv2d: torch layout w (k, c, r, s), cross-correlation, zero padding */
    l = mk("conv2d", "filters=2 kernel=3 stride=2 padding=1", shp(4, 1, 2, 5, 4));
    float cx[40], cw[36], cb[2];
    fill(cx, 40, 4, FILL_UNIFORM);
    fill(cw, 36, 5, FILL_UNIFORM);
    fill(cb, 2, 6, FILL_UNIFORM);
    up(l->x[0].data, cx, 40), up(l->params[0].w, cw, 36), up(l->params[1].w, cb, 2);
    ck_assert_int_eq(l->ops->forward(l, &ctx, 1), DLT_OK);
    assert_shape(l, 4, 1, 2, 3, 2);
    y = dl(l->y.data, 12);
    for (int k = 0; k < 2; k++)
        for (int oy = 0; oy < 3; oy++)
            for (int ox = 0; ox < 2; ox++) {
                double s = cb[k];
                for (int c = 0; c < 2; c++)
                    for (int r = 0; r < 3; r++)
                        for (int q = 0; q < 3; q++) {
                            int iy = oy * 2 - 1 + r, ix = ox * 2 - 1 + q;
                            if (iy < 0 || iy >= 5 || ix < 0 || ix >= 4) continue;
                            s += (double)cx[(c * 5 + iy) * 4 + ix] * cw[((k * 2 + c) * 3 + r) * 3 + q];
                        }
                ck_assert_double_eq_tol(y[(k * 3 + oy) * 2 + ox], s, 1e-5);
            }
    free(y);
    ck_assert_double_eq(l->flops, 2.0 * 2 * 9 * 2 * 3 * 2);
    dlt_layer_free_standalone(l);
}
END_TEST

START_TEST(test_param_init)
{
    dlt_layer *a = mk("conv2d", "filters=8 kernel=3", shp(4, 1, 4, 5, 5));
    dlt_layer *b = mk("conv2d", "filters=8 kernel=3", shp(4, 1, 4, 5, 5));
    ck_assert_str_eq(a->params[0].name, "conv2d.weight");
    ck_assert_str_eq(a->params[1].name, "conv2d.bias");
    ck_assert_int_eq(a->params[0].fan_in, 36);
    size_t n = 8 * 4 * 9;
    float *wa = dl(a->params[0].w, n), *wb = dl(b->params[0].w, n), *ba = dl(a->params[1].w, 8);
    double bound = 1.0 / 6.0, mx = 0.0;
    for (size_t i = 0; i < n; i++) {
        ck_assert(wa[i] == wb[i]);             /* same (seed, name): same values */
        ck_assert(fabs(wa[i]) <= bound);
        mx = fmax(mx, fabs(wa[i]));
    }
    ck_assert(mx > 0.8 * bound);               /* uses the range, not a constant */
    ck_assert(wa[0] != ba[0] && fabs(ba[0]) <= bound);
    free(wa), free(wb), free(ba);
    dlt_layer_free_standalone(a);
    dlt_layer_free_standalone(b);
}
END_TEST

START_TEST(test_batchnorm_train_eval)
{
    dlt_layer *l = mk("batchnorm", "", shp(4, 4, 2, 3, 3));
    ck_assert_int_eq(l->n_bufs, 4);
    ck_assert_str_eq(l->buf_name[0], "batchnorm.running_mean");
    ck_assert(l->buf_persistent[0] && l->buf_persistent[1] && !l->buf_persistent[2]);
    float *rm = *l->buf_ptr[0], *rv = *l->buf_ptr[1];
    float *h = dl(l->params[0].w, 2);
    ck_assert(h[0] == 1.0f && h[1] == 1.0f);    /* gamma ONE */
    free(h);
    h = dl(rv, 2);
    ck_assert(h[0] == 1.0f && h[1] == 1.0f);    /* running_var 1 */
    free(h);

    float x[72];
    fill(x, 72, 9, FILL_WIDE);
    for (int i = 0; i < 72; i++) x[i] += 2.0f;  /* mean about 2 */
    up(l->x[0].data, x, 72);
    dlt_step_ctx ctx = { .train = 0 };
    ck_assert_int_eq(l->ops->forward(l, &ctx, 4), DLT_OK);
    float *y = dl(l->y.data, 72);
    for (int i = 0; i < 72; i++) ck_assert_double_eq_tol(y[i], x[i] / sqrt(1.0 + 1e-5), 1e-5);
    free(y);

    ctx.train = 1;
    ck_assert_int_eq(l->ops->forward(l, &ctx, 4), DLT_OK);
    y = dl(l->y.data, 72);
    float *m = dl(rm, 2);
    for (int c = 0; c < 2; c++) {
        double s = 0, s2 = 0, xs = 0;
        for (int i = 0; i < 4; i++)
            for (int j = 0; j < 9; j++) {
                double v = y[(i * 2 + c) * 9 + j];
                s += v, s2 += v * v, xs += x[(i * 2 + c) * 9 + j];
            }
        ck_assert_double_eq_tol(s / 36, 0.0, 1e-5);
        ck_assert_double_eq_tol(s2 / 36, 1.0, 1e-3);
        ck_assert_double_eq_tol(m[c], 0.1 * xs / 36, 1e-5); /* momentum 0.1 from 0 */
    }
    free(y), free(m);
    dlt_layer_free_standalone(l);
}
END_TEST

/* Dropout masks depend on (seed, step, layer index, global element) only. */
START_TEST(test_dropout_masks)
{
    const int n = 8, per = 2500;
    dlt_layer *l = mk("dropout", "rate=0.3", shp(2, n, per, 0, 0));
    float *x = malloc(sizeof(float) * n * per);
    for (int i = 0; i < n * per; i++) x[i] = 1.0f + (float)(i % 7);
    up(l->x[0].data, x, (size_t)n * per);
    dlt_step_ctx ctx = { .train = 1, .seed = 5, .step = 2, .sample0 = 40 };
    ck_assert_int_eq(l->ops->forward(l, &ctx, n), DLT_OK);
    float *y1 = dl(l->y.data, (size_t)n * per);
    size_t kept = 0;
    for (int i = 0; i < n * per; i++) {
        if (y1[i] != 0.0f) {
            kept++;
            ck_assert_double_eq_tol(y1[i], x[i] / 0.7, 1e-5);
        }
    }
    ck_assert_double_eq_tol((double)kept / (n * per), 0.7, 0.015);

    ck_assert_int_eq(l->ops->forward(l, &ctx, n), DLT_OK);   /* same ctx, same mask */
    float *y2 = dl(l->y.data, (size_t)n * per);
    ck_assert(memcmp(y1, y2, sizeof(float) * n * per) == 0);
    free(y2);

    /* the last 3 samples on a "rank" whose first sample is 45 */
    dlt_step_ctx c2 = ctx;
    c2.sample0 = 45;
    up(l->x[0].data, x + 5 * per, 3 * (size_t)per);
    ck_assert_int_eq(l->ops->forward(l, &c2, 3), DLT_OK);
    y2 = dl(l->y.data, 3 * (size_t)per);
    ck_assert(memcmp(y1 + 5 * per, y2, sizeof(float) * 3 * per) == 0);
    free(y2);

    /* another step draws another mask; eval is the identity */
    up(l->x[0].data, x, (size_t)n * per);
    c2 = ctx;
    c2.step = 3;
    ck_assert_int_eq(l->ops->forward(l, &c2, n), DLT_OK);
    y2 = dl(l->y.data, (size_t)n * per);
    ck_assert(memcmp(y1, y2, sizeof(float) * n * per) != 0);
    free(y2);
    c2.train = 0;
    ck_assert_int_eq(l->ops->forward(l, &c2, n), DLT_OK);
    y2 = dl(l->y.data, (size_t)n * per);
    ck_assert(memcmp(x, y2, sizeof(float) * n * per) == 0);
    free(y2), free(y1), free(x);
    dlt_layer_free_standalone(l);
}
END_TEST

START_TEST(test_loss_values)
{
    /* equal logits: loss log(k) for every sample */
    dlt_layer *l = mk("softmax_cross_entropy", "", shp(2, 3, 4, 0, 0));
    float z[12] = { 0 };
    z[4 + 2] = 5.0f;                       /* sample 1 predicts class 2 */
    up(l->x[0].data, z, 12);
    int32_t lab[3] = { 1, 2, 0 }, *dlab;
    ck_assert_int_eq(be->alloc(be, sizeof lab, (void **)&dlab), DLT_OK);
    ck_assert_int_eq(be->upload(be, dlab, lab, sizeof lab), DLT_OK);
    dlt_step_ctx ctx = { .train = 1, .labels = dlab };
    ck_assert_int_eq(l->ops->forward(l, &ctx, 3), DLT_OK);
    float *y = dl(l->y.data, 3), *c = dl(dlt_loss_correct(l), 3);
    ck_assert_double_eq_tol(y[0], log(4.0), 1e-5);
    ck_assert_double_eq_tol(y[1], -5.0 + log(exp(5.0) + 3.0), 1e-5);
    ck_assert(c[1] == 1.0f && c[2] == 1.0f); /* sample 2: tie, first argmax is 0 */
    ck_assert(c[0] == 0.0f);
    free(y), free(c);
    dlt_step_ctx nolab = { .train = 1 };
    ck_assert_int_eq(l->ops->forward(l, &nolab, 3), DLT_ERR_INVALID);
    dlt_layer_free_standalone(l);

    /* mse on labels: one-hot targets, mean over the sample */
    l = mk("mse", "", shp(2, 3, 4, 0, 0));
    up(l->x[0].data, z, 12);
    ck_assert_int_eq(l->ops->forward(l, &ctx, 3), DLT_OK);
    ck_assert_ptr_null(dlt_loss_correct(l));
    y = dl(l->y.data, 3);
    ck_assert_double_eq_tol(y[0], 0.25, 1e-6);
    ck_assert_double_eq_tol(y[1], (16.0 + 0) / 4, 1e-6);
    free(y);
    be->free(be, dlab);
    dlt_layer_free_standalone(l);
}
END_TEST

START_TEST(test_setup_errors)
{
    struct {
        const char *type, *kv;
        dlt_shape in;
        dlt_status st;
        const char *msg;
    } t[] = {
        { "conv2d", "filters=4 kernel=3", shp(2, 2, 10, 0, 0), DLT_ERR_SHAPE, "not (n, c, h, w)" },
        { "conv2d", "kernel=3", shp(4, 2, 1, 5, 5), DLT_ERR_CONFIG, "'filters'" },
        { "conv2d", "filters=2 kernel=7", shp(4, 2, 1, 5, 5), DLT_ERR_SHAPE, "smaller than" },
        { "dense", "units=0", shp(2, 2, 3, 0, 0), DLT_ERR_CONFIG, "'units' must be >= 1" },
        { "maxpool", "size=2 padding=2", shp(4, 2, 1, 5, 5), DLT_ERR_CONFIG, "half" },
        { "dropout", "rate=1", shp(2, 2, 3, 0, 0), DLT_ERR_CONFIG, "rate" },
        { "softmax_cross_entropy", "", shp(4, 2, 3, 2, 2), DLT_ERR_SHAPE, "flatten" },
        { "resblock", "filters=4", shp(4, 2, 3, 8, 8), DLT_ERR_INVALID, "macro" },
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        dlt_layer_spec s = mkspec(t[i].type, t[i].kv);
        s.file = "configs/x.yaml";
        s.line = 12;
        dlt_layer *l = NULL;
        ck_assert_int_eq(dlt_layer_create_standalone(&s, &t[i].in, 1, be, 1, &l), t[i].st);
        ck_assert_ptr_null(l);
        ck_assert_msg(strstr(dlt_last_error(), t[i].msg) != NULL, "%s", dlt_last_error());
        ck_assert_msg(strstr(dlt_last_error(), "(configs/x.yaml:12)") != NULL, "%s",
                      dlt_last_error());
    }
}
END_TEST

/* ---- specs and registry ---- */

START_TEST(test_spec_getters)
{
    static const dlt_key_spec keys[] = {
        { "units", DLT_KEY_INT, NULL, "" },      { "bias", DLT_KEY_BOOL, "true", "" },
        { "rate", DLT_KEY_FLOAT, "0.5", "" },    { "mode", DLT_KEY_STR, "fan_in", "" },
        { NULL, 0, NULL, NULL },
    };
    dlt_layer_spec s = mkspec("dense", "units=12 rate=0.25");
    ck_assert_int_eq(dlt_spec_int(&s, keys, "units"), 12);
    ck_assert_int_eq(dlt_spec_int(&s, keys, "bias"), 1);
    ck_assert_double_eq(dlt_spec_float(&s, keys, "rate"), 0.25);
    ck_assert_str_eq(dlt_spec_str(&s, keys, "mode"), "fan_in");
    const char *falses[] = { "false", "False", "no", "off", "0" };
    for (int i = 0; i < 5; i++) {
        s = mkspec("dense", "");
        s.n_kv = 1;
        snprintf(s.kv[0].key, sizeof s.kv[0].key, "bias");
        snprintf(s.kv[0].val, sizeof s.kv[0].val, "%s", falses[i]);
        ck_assert_int_eq(dlt_spec_int(&s, keys, "bias"), 0);
    }
}
END_TEST

START_TEST(test_registry)
{
    const char *types[] = { "dense", "conv2d", "maxpool", "avgpool", "global_avgpool",
                            "batchnorm", "relu", "sigmoid", "tanh", "gelu", "dropout", "flatten",
                            "add", "resblock", "softmax_cross_entropy", "mse",
                            /* sequence models (test_seq_layers.c) */
                            "embedding", "position_embedding", "token_type_embedding",
                            "layernorm", "self_attention", "transformer", "lstm", "mlm_head",
                            "pooler", "linear", "bottleneck" };
    int n = 0;
    for (const dlt_layer_ops *const *p = dlt_layer_all(); *p; p++) n++;
    ck_assert_int_eq(n, (int)(sizeof types / sizeof types[0]));
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        const dlt_layer_ops *o = dlt_layer_find(types[i]);
        ck_assert_msg(o != NULL, "%s", types[i]);
        ck_assert_str_eq(o->type, types[i]);
        ck_assert_ptr_nonnull(o->keys);
        ck_assert_ptr_null(dlt_backend_missing_op(be, dlt_layer_backend_ops(o)));
    }
    ck_assert_ptr_null(dlt_layer_find("conv3d"));
    ck_assert(dlt_layer_find("mse")->is_loss && !dlt_layer_find("dense")->is_loss);
    ck_assert_int_eq(dlt_layer_find("add")->n_inputs, 2);
    const dlt_key_spec *k = dlt_layer_find("resblock")->keys;
    ck_assert_str_eq(k[0].name, "filters");
    ck_assert_ptr_null(k[0].def);                 /* required */
}
END_TEST

int main(void)
{
    Suite *s = suite_create("layers");
    TCase *tc = tcase_create("layers");
    tcase_add_checked_fixture(tc, be_setup, be_teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_loop_test(tc, test_grad_check, 0, (int)(sizeof gc_cases / sizeof gc_cases[0]));
    tcase_add_test(tc, test_output_shapes);
    tcase_add_test(tc, test_dense_and_conv_match_naive);
    tcase_add_test(tc, test_param_init);
    tcase_add_test(tc, test_batchnorm_train_eval);
    tcase_add_test(tc, test_dropout_masks);
    tcase_add_test(tc, test_loss_values);
    tcase_add_test(tc, test_setup_errors);
    tcase_add_test(tc, test_spec_getters);
    tcase_add_test(tc, test_registry);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed != 0;
}
