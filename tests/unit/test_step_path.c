/* What the training step does not do, and must still get right: the model
 * zeroes activation gradients only where they are read (core/model.c
 * zero_input_grads, layer.h zero_dy), and the masked-LM head takes its target
 * rows from host labels instead of downloading them (ctx->labels_host).
 *
 * Method: activation gradients are poisoned with NaN before backward, so any
 * buffer read without being zeroed first turns the gradients into NaN; the
 * results are compared bitwise with a clean run (the CPU backend is
 * deterministic). Downloads are counted by wrapping the CPU backend's
 * download. Finite differences and PyTorch comparisons of the same layers
 * live in test_seq_layers.c / test_torch_seq.c; they run through the same
 * model path. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/model.h"
#include "tests/unit/testutil.h"

static dlt_backend *be;
static dlt_status (*cpu_download)(dlt_backend *, void *, const void *, size_t);
static dlt_status (*cpu_upload)(dlt_backend *, void *, const void *, size_t);
static int downloads, uploads;

/* The CPU's download and upload, counted: each is a sync on a GPU. */
static dlt_status counting_download(dlt_backend *b, void *dst, const void *src, size_t bytes)
{
    downloads++;
    return cpu_download(b, dst, src, bytes);
}
static dlt_status counting_upload(dlt_backend *b, void *dst, const void *src, size_t bytes)
{
    uploads++;
    return cpu_upload(b, dst, src, bytes);
}

static void be_setup(void)
{
    ck_assert_int_eq(dlt_backend_cpu_create(&be), DLT_OK);
    cpu_download = be->download;
    be->download = counting_download;
    cpu_upload = be->upload;
    be->upload = counting_upload;
}
static void be_teardown(void) { be->destroy(be); }

static dlt_layer_spec mkspec(const char *type, const char *name, const char *kv,
                             const char *in0, const char *in1)
{
    dlt_layer_spec s;
    memset(&s, 0, sizeof s);
    snprintf(s.type, sizeof s.type, "%s", type);
    snprintf(s.name, sizeof s.name, "%s", name);
    const char *ins[2] = { in0, in1 };
    for (int i = 0; i < 2; i++)
        if (ins[i]) snprintf(s.inputs[s.n_inputs++], DLT_NAME_LEN, "%s", ins[i]);
    char buf[128];
    snprintf(buf, sizeof buf, "%s", kv);
    for (char *save = NULL, *t = strtok_r(buf, " ", &save); t; t = strtok_r(NULL, " ", &save)) {
        char *eq = strchr(t, '=');
        *eq = '\0';
        snprintf(s.kv[s.n_kv].key, sizeof s.kv[0].key, "%s", t);
        snprintf(s.kv[s.n_kv].val, sizeof s.kv[0].val, "%s", eq + 1);
        s.n_kv++;
    }
    return s;
}

/* Every layer's output gradient (the planned batch) := NaN. */
static void poison_act_grads(dlt_model *m)
{
    for (int k = 0; k < dlt_model_n_layers(m); k++) {
        dlt_layer *l = dlt_model_layer(m, k);
        ck_assert_int_eq(be->fill(be, l->dy.data, (size_t)dlt_shape_numel(&l->dy.shape), NAN),
                         DLT_OK);
    }
}

/* A copy of the gradient arena. */
static float *grads(dlt_model *m, size_t *n)
{
    float *g = dlt_model_grads(m, n);
    float *h = malloc(*n * sizeof *h);
    memcpy(h, g, *n * sizeof *h);
    return h;
}

/* ---- fill_rows ---- */

START_TEST(test_fill_rows)
{
    float x[5 * 3], idx[3] = { 4, 1, 4 };
    for (int i = 0; i < 15; i++) x[i] = (float)i;
    ck_assert_int_eq(be->fill_rows(be, 3, 3, 5, idx, -1.0f, x), DLT_OK);
    for (int r = 0; r < 5; r++)
        for (int j = 0; j < 3; j++)
            ck_assert_float_eq(x[r * 3 + j], r == 1 || r == 4 ? -1.0f : (float)(r * 3 + j));
    float bad[2] = { 0, 5 };   /* 5 is outside [0, 5) */
    ck_assert_int_eq(be->fill_rows(be, 2, 3, 5, bad, 0.0f, x), DLT_ERR_INVALID);
    ck_assert_float_eq(x[0], 0.0f);   /* checked before any row is written: row 0 kept */
    ck_assert_int_eq(be->fill_rows(be, 0, 3, 5, idx, 0.0f, x), DLT_OK);
}
END_TEST

START_TEST(test_target_rows)
{
    const int32_t lab[7] = { -1, 3, -1, -1, 0, 9, -1 };
    float idx[7] = { -5, -5, -5, -5, -5, -5, -5 };
    ck_assert_int_eq(be->target_rows(be, 7, lab, idx), DLT_OK);
    ck_assert_float_eq(idx[0], 1.0f);
    ck_assert_float_eq(idx[1], 4.0f);
    ck_assert_float_eq(idx[2], 5.0f);
    ck_assert_float_eq(idx[3], -5.0f);   /* only the targets are written */
    ck_assert_int_eq(be->target_rows(be, -1, lab, idx), DLT_ERR_SHAPE);
}
END_TEST

/* ---- residuals and accumulation: every read gradient is zeroed ---- */

/* dense a -> relu r, read by dense b and dense c (a value with two
 * readers), add(b, c), add(s, s) (one reader twice), dense out, loss. */
static dlt_model *build_branchy(void)
{
    static dlt_layer_spec s[7];
    s[0] = mkspec("dense", "a", "units=6", NULL, NULL);
    s[1] = mkspec("relu", "r", "", NULL, NULL);
    s[2] = mkspec("dense", "b", "units=5", "r", NULL);
    s[3] = mkspec("dense", "c", "units=5", "r", NULL);
    s[4] = mkspec("add", "s", "", "b", "c");
    s[5] = mkspec("add", "ss", "", "s", "s");
    s[6] = mkspec("dense", "out", "units=3", "ss", NULL);
    dlt_model_cfg cfg = { .layers = s, .n_layers = 7, .loss = "softmax_cross_entropy",
                          .input = { 1, { 4 } }, .max_batch = 5, .seed = 9 };
    dlt_model *m;
    ck_assert_msg(dlt_model_build(&cfg, be, &m) == DLT_OK, "%s", dlt_last_error());
    return m;
}

START_TEST(test_residual_and_accumulate)
{
    float x[5 * 4];
    tu_fill_uniform(x, 20, 3, -1.0f, 1.0f);
    int32_t y[5] = { 0, 2, 1, 1, 0 };
    dlt_step_ctx ctx = { .train = 1, .labels = y, .labels_host = y };
    dlt_model *clean = build_branchy(), *m = build_branchy();
    size_t n;
    ck_assert_int_eq(dlt_model_forward(clean, x, 4, &ctx, NULL), DLT_OK);
    ck_assert_int_eq(dlt_model_backward(clean, 4, &ctx, 0.25f), DLT_OK);
    float *want = grads(clean, &n);
    int nonzero = 0;
    for (size_t i = 0; i < n; i++) nonzero += want[i] != 0.0f;
    ck_assert_int_gt(nonzero, (int)n / 2);

    /* stale NaN everywhere: what backward reads must have been zeroed */
    ck_assert_int_eq(dlt_model_forward(m, x, 4, &ctx, NULL), DLT_OK);
    poison_act_grads(m);
    ck_assert_int_eq(dlt_model_backward(m, 4, &ctx, 0.25f), DLT_OK);
    float *got = grads(m, &n);
    ck_assert(memcmp(got, want, n * sizeof *got) == 0);
    free(got);

    /* a second micro-batch adds to the parameters' gradients, activation
     * gradients start from zero again */
    poison_act_grads(m);
    ck_assert_int_eq(dlt_model_backward_accumulate(m, 4, &ctx, 0.25f), DLT_OK);
    got = grads(m, &n);
    for (size_t i = 0; i < n; i++) ck_assert_float_eq(got[i], want[i] + want[i]);
    free(got);
    free(want);
    dlt_model_free(clean);
    dlt_model_free(m);
}
END_TEST

/* ---- the sparse masked-LM head ---- */

enum { L = 8, V = 11, N = 3, ROWS = N * L };

static dlt_model *build_bert(void)
{
    static dlt_layer_spec s[4];
    s[0] = mkspec("embedding", "emb", "vocab=11 dim=6", NULL, NULL);
    s[1] = mkspec("layernorm", "ln", "", NULL, NULL);
    s[2] = mkspec("transformer", "enc0", "heads=2 ff=8 dropout=0", NULL, NULL);
    s[3] = mkspec("mlm_head", "mlm", "vocab=11 tie=emb", NULL, NULL);
    dlt_model_cfg cfg = { .layers = s, .n_layers = 4, .loss = "softmax_cross_entropy",
                          .input = { 1, { L } }, .max_batch = N, .seed = 4 };
    dlt_model *m;
    ck_assert_msg(dlt_model_build(&cfg, be, &m) == DLT_OK, "%s", dlt_last_error());
    return m;
}

/* Labels (ROWS): -1 except at the listed rows (at most a quarter of the
 * rows, so the head gathers them). */
static void targets(int32_t *lab, const int *rows, int k)
{
    for (int r = 0; r < ROWS; r++) lab[r] = -1;
    for (int i = 0; i < k; i++) lab[rows[i]] = (rows[i] * 5 + 2) % V;
}

/* One training step: forward and backward; the gradients are returned. */
static float *mlm_step(dlt_model *m, const float *x, const int32_t *lab, int host, int poison,
                       size_t *n)
{
    dlt_step_ctx ctx = { .train = 1, .seed = 2, .step = 1, .labels = lab,
                         .labels_host = host ? lab : NULL };
    ck_assert_int_eq(dlt_model_forward(m, x, N, &ctx, NULL), DLT_OK);
    if (poison) poison_act_grads(m);
    ck_assert_int_eq(dlt_model_backward(m, N, &ctx, 0.1f), DLT_OK);
    return grads(m, n);
}

/* Successive steps with different target rows, activation gradients
 * poisoned before each backward: the head clears exactly this step's
 * targets (rows of the previous step's targets stay NaN), reads nothing
 * else, and the gradients equal those of a fresh model's single step. */
START_TEST(test_sparse_head_zeroes_only_targets)
{
    float x[ROWS];
    for (int i = 0; i < ROWS; i++) x[i] = (float)(1 + (i * 7) % (V - 1));
    const int s1[] = { 1, 5, 9, 14 }, s2[] = { 5, 10, 14, 20, 22 };
    int32_t lab1[ROWS], lab2[ROWS];
    targets(lab1, s1, 4);
    targets(lab2, s2, 5);
    size_t n;
    dlt_model *fresh = build_bert(), *m = build_bert();
    float *want = mlm_step(fresh, x, lab2, 1, 0, &n);
    free(mlm_step(m, x, lab1, 1, 1, &n));
    float *got = mlm_step(m, x, lab2, 1, 1, &n);
    ck_assert(memcmp(got, want, n * sizeof *got) == 0);
    for (size_t i = 0; i < n; i++) ck_assert(isfinite(got[i]));

    /* the non-target rows of the logits gradient were never cleared */
    dlt_layer *head = dlt_model_layer(m, dlt_model_n_layers(m) - 2);
    ck_assert_str_eq(head->ops->type, "mlm_head");
    ck_assert(isnan(head->dy.data[0 * V]) && isnan(head->dy.data[23 * V + 3]));
    ck_assert(isnan(head->dy.data[1 * V]));                                        /* s1 only */
    ck_assert(!isnan(head->dy.data[10 * V]) && !isnan(head->dy.data[14 * V + 4])); /* s2 */
    free(got);
    free(want);
    dlt_model_free(fresh);
    dlt_model_free(m);
}
END_TEST

/* With host labels a step neither downloads nor uploads; without, the
 * head falls back to one download of the labels; the gradients are the
 * same. */
START_TEST(test_head_uses_host_labels)
{
    float x[ROWS];
    for (int i = 0; i < ROWS; i++) x[i] = (float)(1 + (i * 3) % (V - 1));
    const int s[] = { 2, 3, 11, 17, 23 };
    int32_t lab[ROWS];
    targets(lab, s, 5);
    size_t n;
    dlt_model *a = build_bert(), *b = build_bert();
    downloads = uploads = 0;
    float *ga = mlm_step(a, x, lab, 1, 0, &n);
    ck_assert_int_eq(downloads, 0);
    ck_assert_int_eq(uploads, 0);
    float *gb = mlm_step(b, x, lab, 0, 0, &n);
    ck_assert_int_eq(downloads, 1);
    ck_assert(memcmp(ga, gb, n * sizeof *ga) == 0);
    free(ga);
    free(gb);

    /* the row list is built on the device (target_rows) from the labels:
     * the target rows' logits are computed, the others keep their values */
    const float mark = 12345.0f;
    dlt_layer *head = dlt_model_layer(a, dlt_model_n_layers(a) - 2);
    ck_assert_int_eq(be->fill(be, head->y.data, (size_t)ROWS * V, mark), DLT_OK);
    dlt_step_ctx ctx = { .train = 1, .seed = 2, .step = 1, .labels = lab, .labels_host = lab };
    ck_assert_int_eq(dlt_model_forward(a, x, N, &ctx, NULL), DLT_OK);
    for (int i = 0; i < 5; i++) ck_assert(head->y.data[(size_t)s[i] * V + 7] != mark);
    ck_assert(head->y.data[0] == mark && head->y.data[6 * V + 10] == mark);
    dlt_model_free(a);
    dlt_model_free(b);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("step_path");
    TCase *tc = tcase_create("step_path");
    tcase_add_checked_fixture(tc, be_setup, be_teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_fill_rows);
    tcase_add_test(tc, test_target_rows);
    tcase_add_test(tc, test_residual_and_accumulate);
    tcase_add_test(tc, test_sparse_head_zeroes_only_targets);
    tcase_add_test(tc, test_head_uses_host_labels);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed != 0;
}
