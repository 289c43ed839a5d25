/* The model graph on the CPU backend: resblock and bottleneck expansion, arena layout
 * (parameters contiguous in backward order, gradients at the same offsets),
 * a finite-difference check of the whole residual model on a sample of
 * parameters, deterministic initialisation, rank-independent dropout,
 * describe/flops, and the build errors a config author sees. */
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

/* A spec "type name k=v ... [< in1 in2]" at configs/x.yaml:line. */
static dlt_layer_spec L(int line, const char *type, const char *name, const char *kv,
                        const char *in1, const char *in2)
{
    dlt_layer_spec s;
    memset(&s, 0, sizeof s);
    snprintf(s.type, sizeof s.type, "%s", type);
    snprintf(s.name, sizeof s.name, "%s", name);
    char buf[256];
    snprintf(buf, sizeof buf, "%s", kv);
    for (char *save = NULL, *t = strtok_r(buf, " ", &save); t; t = strtok_r(NULL, " ", &save)) {
        char *eq = strchr(t, '=');
        *eq = '\0';
        snprintf(s.kv[s.n_kv].key, sizeof s.kv[0].key, "%s", t);
        snprintf(s.kv[s.n_kv].val, sizeof s.kv[0].val, "%s", eq + 1);
        s.n_kv++;
    }
    if (in1) snprintf(s.inputs[s.n_inputs++], DLT_NAME_LEN, "%s", in1);
    if (in2) snprintf(s.inputs[s.n_inputs++], DLT_NAME_LEN, "%s", in2);
    s.file = "configs/x.yaml";
    s.line = line;
    return s;
}

/* conv-bn-relu, an identity resblock, a projecting one, pooling, dense. */
static dlt_layer_spec resnet_specs[7];
static const int n_resnet = 7;

static void make_resnet(void)
{
    dlt_layer_spec *s = resnet_specs;
    s[0] = L(10, "conv2d", "c1", "filters=4 kernel=3 padding=1", NULL, NULL);
    s[1] = L(11, "batchnorm", "bn", "", NULL, NULL);
    s[2] = L(12, "relu", "act", "", NULL, NULL);
    s[3] = L(13, "resblock", "r1", "filters=4", NULL, NULL);
    s[4] = L(14, "resblock", "r2", "filters=6 stride=2", "r1", NULL);
    s[5] = L(15, "global_avgpool", "gap", "", NULL, NULL);
    s[6] = L(16, "dense", "fc", "units=5", NULL, NULL);
}

static dlt_model_cfg cfg_of(const dlt_layer_spec *specs, int n, const char *loss, dlt_shape in,
                            int classes, int batch, uint64_t seed)
{
    return (dlt_model_cfg){ .layers = specs, .n_layers = n, .loss = loss, .input = in,
                            .n_classes = classes, .max_batch = batch, .seed = seed };
}

static dlt_model *build_ok(const dlt_model_cfg *c, dlt_backend *b)
{
    dlt_model *m = NULL;
    ck_assert_msg(dlt_model_build(c, b, &m) == DLT_OK, "%s", dlt_last_error());
    return m;
}

static int32_t *dev_labels(const int32_t *lab, int n)
{
    int32_t *d;
    ck_assert_int_eq(be->alloc(be, sizeof *d * (size_t)n, (void **)&d), DLT_OK);
    ck_assert_int_eq(be->upload(be, d, lab, sizeof *d * (size_t)n), DLT_OK);
    return d;
}

static float *dev_floats(size_t n, uint64_t seed, float lo, float hi)
{
    float *h = malloc(n * sizeof *h), *d;
    tu_fill_uniform(h, n, seed, lo, hi);
    ck_assert_int_eq(be->alloc(be, n * sizeof *h, (void **)&d), DLT_OK);
    ck_assert_int_eq(be->upload(be, d, h, n * sizeof *h), DLT_OK);
    free(h);
    return d;
}

static double sum_loss(dlt_model *m, const float *x, int n, const dlt_step_ctx *ctx)
{
    dlt_model_out out;
    ck_assert_msg(dlt_model_forward(m, x, n, ctx, &out) == DLT_OK, "%s", dlt_last_error());
    float h[64];
    ck_assert_int_eq(be->download(be, h, out.loss, sizeof(float) * (size_t)n), DLT_OK);
    double s = 0;
    for (int i = 0; i < n; i++) s += h[i];
    return s;
}

/* Compares the analytic gradient ga (the whole arena) of scale * sum of
 * losses with central differences at 2 random entries of every parameter
 * (generator seed); counts checked and clearly nonzero entries. */
static void fd_check(dlt_model *m, const float *x, int n, const dlt_step_ctx *ctx, float scale,
                     const float *ga, uint64_t seed, float eps_min, int *checked, int *nonzero)
{
    size_t np;
    float *w = dlt_model_params(m, &np);
    dlt_rng r = dlt_rng_make(seed);
    for (int i = 0; i < dlt_model_n_params(m); i++) {
        const dlt_param *p = dlt_model_param(m, i);
        size_t len = (size_t)dlt_shape_numel(&p->shape);
        for (int t = 0; t < 2; t++) {
            size_t j = (size_t)(p->w - w) + (size_t)dlt_rng_below(&r, len);
            float v;
            ck_assert_int_eq(be->download(be, &v, w + j, sizeof v), DLT_OK);
            /* a ReLU kink within eps spoils one step size, rarely two;
             * deep stacks of them need smaller steps (eps_min) */
            double num = 0.0;
            int ok = 0;
            for (float eps = 2e-3f; eps > eps_min && !ok; eps *= 0.5f) {
                float vp = v + eps, vm = v - eps;
                be->upload(be, w + j, &vp, sizeof vp);
                double fp = scale * sum_loss(m, x, n, ctx);
                be->upload(be, w + j, &vm, sizeof vm);
                double fm = scale * sum_loss(m, x, n, ctx);
                be->upload(be, w + j, &v, sizeof v);
                num = (fp - fm) / ((double)vp - vm);
                ok = fabs(num - ga[j]) < 1e-3 + 2e-2 * fabs(num);
            }
            ck_assert_msg(ok, "%s: analytic %.6g numeric %.6g", p->name, (double)ga[j], num);
            (*checked)++;
            *nonzero += fabs(num) > 1e-3;
        }
    }
}

START_TEST(test_resnet_layout)
{
    make_resnet();
    dlt_model_cfg c = cfg_of(resnet_specs, n_resnet, "softmax_cross_entropy",
                             (dlt_shape){ 3, { 3, 8, 8 } }, 5, 4, 1);
    dlt_model *m = build_ok(&c, be);
    /* 3 + 7 (identity) + 9 (projection) + gap + fc + loss */
    ck_assert_int_eq(dlt_model_n_layers(m), 22);
    ck_assert_str_eq(dlt_model_layer(m, 3)->spec->name, "r1.conv1");
    ck_assert_str_eq(dlt_model_layer(m, 9)->spec->name, "r1.relu2");
    ck_assert_str_eq(dlt_model_layer(m, 15)->spec->name, "r2.downsample.0");
    ck_assert_int_eq(dlt_model_layer(m, 15)->spec->line, 14);
    ck_assert_str_eq(dlt_model_layer(m, 21)->ops->type, "softmax_cross_entropy");
    /* the add joins bn2 with the input of the block (identity) or the projection */
    ck_assert_ptr_eq(dlt_model_layer(m, 8)->x[1].data, dlt_model_layer(m, 2)->y.data);
    ck_assert_ptr_eq(dlt_model_layer(m, 17)->x[1].data, dlt_model_layer(m, 16)->y.data);
    ck_assert_ptr_eq(dlt_model_layer(m, 17)->x[0].data, dlt_model_layer(m, 14)->y.data);
    ck_assert_ptr_null(dlt_model_layer(m, 0)->dx[0].data);   /* no gradient of the input */
    ck_assert_int_eq(dlt_model_logits(m)->shape.d[1], 5);

    size_t np, ng, ns;
    float *w = dlt_model_params(m, &np), *g = dlt_model_grads(m, &ng);
    ck_assert(dlt_model_state(m, &ns) != NULL && ns >= 2 * 2 * 5 * 4);
    ck_assert_uint_eq(np, ng);
    ck_assert_int_eq(dlt_model_n_params(m), 21);
    ck_assert_str_eq(dlt_model_param(m, 0)->name, "fc.weight");
    ck_assert_str_eq(dlt_model_param(m, 1)->name, "fc.bias");
    ck_assert_str_eq(dlt_model_param(m, 2)->name, "r2.downsample.1.weight");
    ck_assert_str_eq(dlt_model_param(m, 20)->name, "c1.bias");
    ck_assert_ptr_null(dlt_model_param(m, 21));
    const float *next = w;
    for (int i = 0; i < dlt_model_n_params(m); i++) {
        const dlt_param *p = dlt_model_param(m, i);
        ck_assert_ptr_eq(p->w, next);
        ck_assert_int_eq(p->g - g, p->w - w);
        ck_assert(strncmp(p->name, "r1.downsample", 13) != 0);
        next = p->w + dlt_shape_numel(&p->shape);
    }
    ck_assert_ptr_eq(next, w + np);
    /* conv1 -> 3*3*4*4 + bias; r2.conv1 is 6 x 4 x 3 x 3 without bias */
    ck_assert_int_eq(dlt_shape_numel(&dlt_model_layer(m, 10)->params[0].shape), 6 * 4 * 9);
    ck_assert_int_eq(dlt_model_layer(m, 10)->n_params, 1);

    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    dlt_model_describe(m, f);
    fclose(f);
    ck_assert(strstr(text, "r2.downsample.0") && strstr(text, "[4, 6, 4, 4]"));
    ck_assert(strstr(text, "MiB") != NULL);
    free(text);
    dlt_model_free(m);
}
END_TEST

/* Forward and backward of n samples of x at this loss scale; the
 * parameter gradients (*np floats), downloaded into a heap copy. */
static float *backward_grads(dlt_model *m, const float *x, int n, const dlt_step_ctx *ctx,
                             float scale, size_t *np)
{
    sum_loss(m, x, n, ctx);
    ck_assert_int_eq(dlt_model_backward(m, n, ctx, scale), DLT_OK);
    dlt_model_params(m, np);
    float *g = malloc(*np * sizeof *g);
    ck_assert_int_eq(be->download(be, g, dlt_model_grads(m, NULL), *np * sizeof *g), DLT_OK);
    return g;
}

/* d(scale * sum of losses)/d(param) for a sample of parameters of the
 * residual model, batch 3 of a planned 4, batch norm in training mode. */
START_TEST(test_resnet_finite_differences)
{
    make_resnet();
    dlt_model_cfg c = cfg_of(resnet_specs, n_resnet, "softmax_cross_entropy",
                             (dlt_shape){ 3, { 3, 8, 8 } }, 5, 4, 2);
    dlt_model *m = build_ok(&c, be);
    const int n = 3;
    const float scale = 1.0f / 3.0f;
    float *x = dev_floats((size_t)n * 3 * 64, 9, -1.0f, 1.0f);
    int32_t lab[3] = { 4, 0, 2 }, *dlab = dev_labels(lab, 3);
    dlt_step_ctx ctx = { .train = 1, .seed = 1, .labels = dlab };
    size_t np;
    float *ga = backward_grads(m, x, n, &ctx, scale, &np);

    int checked = 0, nonzero = 0;
    fd_check(m, x, n, &ctx, scale, ga, 4, 4e-4f, &checked, &nonzero);
    ck_assert_int_eq(checked, 42);
    ck_assert_int_gt(nonzero, 20);

    /* the loss scale is linear in the gradients */
    float *g2 = backward_grads(m, x, n, &ctx, 2.0f * scale, &np);
    for (size_t i = 0; i < np; i++) g2[i] *= 0.5f;
    ck_assert(tu_max_rel_err(g2, ga, np) < 1e-4);
    free(g2), free(ga);
    be->free(be, x), be->free(be, dlab);
    dlt_model_free(m);
}
END_TEST

/* ResNet-50's bottleneck: a projecting block, an identity one, and one
 * with stride 2 and expansion 2; names, wiring and shapes as torchvision's
 * Bottleneck, and finite differences through all three. */
START_TEST(test_bottleneck)
{
    dlt_layer_spec s[7];
    s[0] = L(10, "conv2d", "c1", "filters=4 kernel=3 padding=1 bias=0", NULL, NULL);
    s[1] = L(11, "batchnorm", "bn", "", NULL, NULL);
    s[2] = L(12, "relu", "act", "", NULL, NULL);
    s[3] = L(13, "bottleneck", "b1", "filters=2", NULL, NULL);
    s[4] = L(14, "bottleneck", "b2", "filters=2", NULL, NULL);
    s[5] = L(15, "bottleneck", "b3", "filters=3 stride=2 expansion=2", "b2", NULL);
    s[6] = L(16, "global_avgpool", "gap", "", NULL, NULL);
    dlt_layer_spec all[8];
    memcpy(all, s, sizeof s);
    all[7] = L(17, "dense", "fc", "units=5", NULL, NULL);
    dlt_model_cfg c = cfg_of(all, 8, "softmax_cross_entropy", (dlt_shape){ 3, { 3, 8, 8 } }, 5,
                             4, 3);
    dlt_model *m = build_ok(&c, be);
    /* 3 + 12 (projection) + 10 (identity) + 12 (projection) + gap + fc + loss */
    ck_assert_int_eq(dlt_model_n_layers(m), 40);
    const char *b1[] = { "conv1", "bn1", "relu1", "conv2", "bn2", "relu2", "conv3", "bn3",
                         "downsample.0", "downsample.1", "add", "relu3" };
    for (int i = 0; i < 12; i++) {
        char want[64];
        snprintf(want, sizeof want, "b1.%s", b1[i]);
        ck_assert_str_eq(dlt_model_layer(m, 3 + i)->spec->name, want);
    }
    ck_assert_str_eq(dlt_model_layer(m, 15 + 8)->spec->name, "b2.add");
    /* identity shortcut: b2.add adds b1's output; b1's projection is 2 -> 8 channels */
    ck_assert_ptr_eq(dlt_model_layer(m, 23)->x[1].data, dlt_model_layer(m, 14)->y.data);
    ck_assert_int_eq(dlt_model_layer(m, 14)->y.shape.d[1], 8);
    ck_assert_int_eq(dlt_shape_numel(&dlt_model_layer(m, 11)->params[0].shape), 8 * 4);
    /* b3: the 3x3 convolution carries the stride (v1.5), 6 output channels at 4x4 */
    const dlt_layer *b3c2 = dlt_model_layer(m, 25 + 3);
    ck_assert_str_eq(b3c2->spec->name, "b3.conv2");
    ck_assert_int_eq(b3c2->y.shape.d[2], 4);
    ck_assert_int_eq(dlt_model_layer(m, 36)->y.shape.d[1], 6);
    ck_assert_str_eq(dlt_model_layer(m, 36)->spec->name, "b3.relu3");

    const int n = 3;
    const float scale = 1.0f / 3.0f;
    float *x = dev_floats((size_t)n * 3 * 64, 19, -1.0f, 1.0f);
    int32_t lab[3] = { 1, 4, 0 }, *dlab = dev_labels(lab, 3);
    dlt_step_ctx ctx = { .train = 1, .seed = 1, .labels = dlab };
    size_t np;
    float *ga = backward_grads(m, x, n, &ctx, scale, &np);
    int checked = 0, nonzero = 0;
    fd_check(m, x, n, &ctx, scale, ga, 5, 5e-5f, &checked, &nonzero);
    ck_assert_int_eq(checked, 2 * dlt_model_n_params(m));
    ck_assert_int_gt(nonzero, checked / 3);
    free(ga);
    be->free(be, x), be->free(be, dlab);

    /* a bad expansion is a config error naming the block */
    dlt_model *bad = NULL;
    all[3] = L(13, "bottleneck", "b1", "filters=2 expansion=0", NULL, NULL);
    ck_assert_int_eq(dlt_model_build(&c, be, &bad), DLT_ERR_CONFIG);
    ck_assert_ptr_nonnull(strstr(dlt_last_error(), "expansion"));
    dlt_model_free(m);
}
END_TEST

START_TEST(test_train_eval_and_batch_limits)
{
    make_resnet();
    dlt_model_cfg c = cfg_of(resnet_specs, n_resnet, "softmax_cross_entropy",
                             (dlt_shape){ 3, { 3, 8, 8 } }, 5, 4, 2);
    dlt_model *m = build_ok(&c, be);
    float *x = dev_floats(4 * 3 * 64, 9, -1.0f, 1.0f);
    int32_t lab[4] = { 1, 2, 3, 4 }, *dlab = dev_labels(lab, 4);
    dlt_step_ctx tr = { .train = 1, .labels = dlab }, ev = { .train = 0, .labels = dlab };
    size_t ns;
    float *st = dlt_model_state(m, &ns);
    float *s0 = malloc(ns * sizeof *s0), *s1 = malloc(ns * sizeof *s1);
    be->download(be, s0, st, ns * sizeof *s0);
    double e1 = sum_loss(m, x, 4, &ev);
    be->download(be, s1, st, ns * sizeof *s1);
    ck_assert(memcmp(s0, s1, ns * sizeof *s0) == 0);        /* eval leaves the state */
    double t1 = sum_loss(m, x, 4, &tr);
    be->download(be, s1, st, ns * sizeof *s1);
    ck_assert(memcmp(s0, s1, ns * sizeof *s0) != 0);        /* training updates it */
    ck_assert(fabs(e1 - t1) > 1e-6);
    ck_assert_double_eq_tol(sum_loss(m, x, 4, &tr), t1, 1e-6);

    dlt_model_out out;
    ck_assert_int_eq(dlt_model_forward(m, x, 5, &tr, &out), DLT_ERR_INVALID);
    ck_assert_int_eq(dlt_model_forward(m, x, 0, &tr, &out), DLT_ERR_INVALID);
    ck_assert_int_eq(dlt_model_forward(m, x, 4, &tr, &out), DLT_OK);
    ck_assert_ptr_nonnull(out.correct);
    free(s0), free(s1);
    be->free(be, x), be->free(be, dlab);
    dlt_model_free(m);
}
END_TEST

/* Initialisation depends on (seed, parameter name) only; dropout masks on the
 * global sample index, so splitting a batch across "ranks" changes nothing. */
START_TEST(test_determinism)
{
    dlt_layer_spec a[3] = { L(1, "dense", "h", "units=8", NULL, NULL),
                            L(2, "dropout", "drop", "rate=0.4", NULL, NULL),
                            L(3, "dense", "fc", "units=3", NULL, NULL) };
    dlt_layer_spec b[4] = { a[0], a[1], L(3, "tanh", "t", "", NULL, NULL), a[2] };
    dlt_shape in = { 1, { 6 } };
    dlt_model_cfg ca = cfg_of(a, 3, "mse", in, 3, 4, 7), cb = cfg_of(b, 4, "mse", in, 3, 4, 7);
    dlt_model *ma = build_ok(&ca, be), *mb = build_ok(&cb, be);
    ck_assert_double_eq(dlt_model_flops(ma), 2.0 * 6 * 8 + 2.0 * 8 * 3);
    const dlt_param *pa = dlt_model_param(ma, 0), *pb = dlt_model_param(mb, 0);
    ck_assert_str_eq(pa->name, "fc.weight");
    ck_assert_str_eq(pb->name, "fc.weight");
    ck_assert(memcmp(pa->w, pb->w, sizeof(float) * 24) == 0);
    ca.seed = 8;
    dlt_model *mc = build_ok(&ca, be);
    ck_assert(memcmp(pa->w, dlt_model_param(mc, 0)->w, sizeof(float) * 24) != 0);
    dlt_model_free(mc);

    float *x = dev_floats(4 * 6, 3, -1.0f, 1.0f);
    int32_t lab[4] = { 0, 2, 1, 2 }, *dlab = dev_labels(lab, 4);
    dlt_step_ctx ctx = { .train = 1, .seed = 99, .step = 5, .sample0 = 10, .labels = dlab };
    dlt_model_out out;
    float whole[4], part[4];
    ck_assert_int_eq(dlt_model_forward(ma, x, 4, &ctx, &out), DLT_OK);
    ck_assert_ptr_null(out.correct);
    be->download(be, whole, out.loss, sizeof whole);
    ck_assert_int_eq(dlt_model_forward(ma, x, 2, &ctx, &out), DLT_OK);
    be->download(be, part, out.loss, 2 * sizeof(float));
    dlt_step_ctx c2 = ctx;
    c2.sample0 = 12;
    c2.labels = dlab + 2;
    ck_assert_int_eq(dlt_model_forward(ma, x + 12, 2, &c2, &out), DLT_OK);
    be->download(be, part + 2, out.loss, 2 * sizeof(float));
    for (int i = 0; i < 4; i++) ck_assert_float_eq(whole[i], part[i]);
    be->free(be, x), be->free(be, dlab);
    dlt_model_free(ma);
    dlt_model_free(mb);
}
END_TEST

static void expect_error(const dlt_layer_spec *s, int n, const char *loss, dlt_shape in,
                         int classes, dlt_backend *b, dlt_status want, const char *msg1,
                         const char *msg2)
{
    dlt_model_cfg c = cfg_of(s, n, loss, in, classes, 4, 1);
    dlt_model *m = (dlt_model *)1;
    ck_assert_int_eq(dlt_model_build(&c, b, &m), want);
    ck_assert_ptr_null(m);
    const char *e = dlt_last_error();
    ck_assert_msg(strstr(e, msg1) != NULL, "'%s' lacks '%s'", e, msg1);
    ck_assert_msg(!msg2 || strstr(e, msg2) != NULL, "'%s' lacks '%s'", e, msg2);
}

START_TEST(test_build_errors)
{
    dlt_shape img = { 3, { 1, 8, 8 } };
    const char *ce = "softmax_cross_entropy";
    dlt_layer_spec s1[] = { L(20, "conv2d", "c1", "filters=4 kernel=3 padding=1", NULL, NULL),
                            L(23, "dense", "fc1", "units=10", "nope", NULL) };
    expect_error(s1, 2, ce, img, 10, be, DLT_ERR_CONFIG, "layer 'fc1' (configs/x.yaml:23)",
                 "unknown input 'nope'");

    dlt_layer_spec s2[] = { L(20, "conv2d", "c1", "filters=4 kernel=3 padding=1", NULL, NULL),
                            L(21, "maxpool", "p", "size=2", NULL, NULL),
                            L(22, "add", "sum", "", "c1", "p"),
                            L(23, "flatten", "f", "", NULL, NULL) };
    expect_error(s2, 4, ce, img, 10, be, DLT_ERR_SHAPE, "layer 'sum' (configs/x.yaml:22)",
                 "[4, 4, 8, 8] and [4, 4, 4, 4]");

    dlt_layer_spec s3[] = { L(20, "dense", "fc1", "units=10", NULL, NULL),
                            L(21, "conv2d", "c2", "filters=4 kernel=3", NULL, NULL) };
    expect_error(s3, 2, ce, img, 10, be, DLT_ERR_SHAPE, "layer 'c2' (configs/x.yaml:21)",
                 "input [4, 10] is not (n, c, h, w)");

    dlt_layer_spec s4[] = { L(20, "add", "sum", "", NULL, NULL) };
    expect_error(s4, 1, ce, img, 10, be, DLT_ERR_CONFIG, "'sum'", "takes 2 inputs, got 1");

    dlt_layer_spec s5[] = { L(20, "flatten", "x", "", NULL, NULL),
                            L(21, "dense", "x", "units=3", NULL, NULL) };
    expect_error(s5, 2, ce, img, 3, be, DLT_ERR_CONFIG, "'x' is already used", NULL);

    dlt_layer_spec s6[] = { L(20, "flatten", "f", "", NULL, NULL),
                            L(21, "mse", "l", "", NULL, NULL) };
    expect_error(s6, 2, ce, img, 3, be, DLT_ERR_CONFIG, "model.loss", NULL);
    expect_error(s6, 1, "hinge", img, 3, be, DLT_ERR_CONFIG, "'hinge'", NULL);
    expect_error(s6, 1, ce, img, 100, be, DLT_ERR_SHAPE, "100 classes", NULL);

    dlt_layer_spec s7[] = { L(20, "flatten", "f", "", NULL, NULL),
                            L(21, "resblock", "rb", "filters=4", NULL, NULL) };
    expect_error(s7, 2, ce, img, 3, be, DLT_ERR_SHAPE, "layer 'rb' (configs/x.yaml:21)",
                 "not (n, c, h, w)");

    dlt_layer_spec s8[] = { L(20, "dense", "fc1", "units=4", NULL, NULL),
                            L(21, "dense", "fc2", "units=4", "fc1", "input") };
    expect_error(s8, 2, ce, img, 3, be, DLT_ERR_CONFIG, "takes 1 input, got 2", NULL);

    /* a backend without convolutions */
    dlt_backend partial = *be;
    partial.name = "fake";
    partial.conv2d_fwd = NULL;
    expect_error(s1, 2, ce, img, 10, &partial, DLT_ERR_UNSUPPORTED,
                 "layer 'c1' (configs/x.yaml:20)", "conv2d_fwd, not supported on backend fake");

    /* an explicit "input" works, and so does a layer fed by two names */
    dlt_layer_spec ok[] = { L(20, "flatten", "f", "", "input", NULL),
                            L(21, "dense", "a", "units=4", "f", NULL),
                            L(22, "dense", "b", "units=4", "f", NULL),
                            L(23, "add", "s", "", "a", "b") };
    dlt_model_cfg c = cfg_of(ok, 4, ce, img, 4, 4, 1);
    dlt_model *m = build_ok(&c, be);
    dlt_model_free(m);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("model");
    TCase *tc = tcase_create("model");
    tcase_add_checked_fixture(tc, be_setup, be_teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_resnet_layout);
    tcase_add_test(tc, test_resnet_finite_differences);
    tcase_add_test(tc, test_bottleneck);
    tcase_add_test(tc, test_train_eval_and_batch_limits);
    tcase_add_test(tc, test_determinism);
    tcase_add_test(tc, test_build_errors);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed != 0;
}
