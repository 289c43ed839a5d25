/* The LSTM op contract on the CPU backend (backend.h lstm_sizes, lstm_fwd,
 * lstm_bwd) and the lstm layer's use of it, beyond what the layer's
 * finite-difference and PyTorch checks see:
 *  - lstm_sizes: the CPU's saved (gates and cells) and scratch sizes, bad
 *    sizes refused;
 *  - h_last/c_last are the final state: a sequence run in two halves, the
 *    second from the first's (h_last, c_last), equals one run over the whole;
 *    train = 0 gives the same outputs;
 *  - backward accumulates, and dx NULL changes nothing else;
 *  - the layer runs a batch smaller than planned (the last of an epoch) as
 *    the first rows of the full one, and refuses a backend whose sizes grow
 *    as the batch shrinks instead of overrunning its buffers. */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/cpu/cpu_seq.h"
#include "core/layers/layers_internal.h"
#include "core/model.h"
#include "tests/unit/testutil.h"

static dlt_backend *be;

static void be_setup(void) { ck_assert_int_eq(dlt_backend_cpu_create(&be), DLT_OK); }
static void be_teardown(void) { be->destroy(be); }

static float *rnd(size_t n, uint64_t seed, float lo, float hi)
{
    float *x = malloc((n ? n : 1) * sizeof *x);
    ck_assert(x != NULL);
    tu_fill_uniform(x, n, seed, lo, hi);
    return x;
}

/* One layer's operands (CPU: backend memory is host memory). */
typedef struct {
    int n, len, din, h;
    float *x, *wih, *whh, *bih, *bhh, *y, *hl, *cl, *saved, *ws;
} op;

static op op_make(int n, int len, int din, int h)
{
    op o = { n, len, din, h, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL };
    size_t sf = 0, wf = 0;
    ck_assert_int_eq(be->lstm_sizes(be, n, len, din, h, &sf, &wf), DLT_OK);
    const size_t g4 = 4 * (size_t)h;
    o.x = rnd((size_t)n * len * din, 1, -1, 1);
    o.wih = rnd(g4 * din, 2, -0.6f, 0.6f);
    o.whh = rnd(g4 * h, 3, -0.6f, 0.6f);
    o.bih = rnd(g4, 4, -0.5f, 0.5f);
    o.bhh = rnd(g4, 5, -0.5f, 0.5f);
    o.y = rnd((size_t)n * len * h, 6, 0, 1);
    o.hl = rnd((size_t)n * h, 7, 0, 1);
    o.cl = rnd((size_t)n * h, 8, 0, 1);
    o.saved = rnd(sf, 9, 0, 1);
    o.ws = rnd(wf, 10, 0, 1);
    return o;
}

static void op_free(op *o)
{
    float *all[] = { o->x, o->wih, o->whh, o->bih, o->bhh, o->y, o->hl, o->cl, o->saved, o->ws };
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) free(all[i]);
}

static void fwd(op *o, int train, const float *x, int len, const float *h0, const float *c0)
{
    ck_assert_int_eq(be->lstm_fwd(be, train, o->n, len, o->din, o->h, x, o->wih, o->whh, o->bih,
                                  o->bhh, h0, c0, o->y, o->hl, o->cl, o->saved, o->ws),
                     DLT_OK);
}

START_TEST(test_sizes)
{
    size_t sf = 0, wf = 0;
    ck_assert_int_eq(be->lstm_sizes(be, 3, 5, 4, 6, &sf, &wf), DLT_OK);
    ck_assert_uint_eq(sf, 3 * 5 * 5 * 6);
    ck_assert_uint_eq(wf, 3 * 5 * 4 * 6 + 2 * 3 * 6);
    ck_assert_int_eq(be->lstm_sizes(be, 0, 5, 4, 6, &sf, &wf), DLT_OK);
    ck_assert_uint_eq(sf, 0);
    ck_assert_int_eq(be->lstm_sizes(be, 3, 0, 4, 6, &sf, &wf), DLT_ERR_SHAPE);
    ck_assert_int_eq(be->lstm_sizes(be, 3, 5, 4, 0, &sf, &wf), DLT_ERR_SHAPE);
    ck_assert_int_eq(be->lstm_sizes(be, -1, 5, 4, 6, &sf, &wf), DLT_ERR_SHAPE);
}
END_TEST

/* Two halves chained through (h_last, c_last) equal the whole sequence. */
START_TEST(test_final_state_continues)
{
    const int n = 3, L = 4, D = 5, H = 6;
    op whole = op_make(n, 2 * L, D, H), half = op_make(n, L, D, H);
    float *h0 = rnd((size_t)n * H, 11, -1, 1), *c0 = rnd((size_t)n * H, 12, -1, 1);
    fwd(&whole, 1, whole.x, 2 * L, h0, c0);
    float *xs = malloc((size_t)n * L * D * sizeof *xs), *ys = malloc((size_t)n * L * H * sizeof *ys);
    float *hc = malloc(2 * (size_t)n * H * sizeof *hc);
    for (int part = 0; part < 2; part++) {
        for (int b = 0; b < n; b++)
            memcpy(xs + (size_t)b * L * D, whole.x + ((size_t)b * 2 * L + (size_t)part * L) * D,
                   (size_t)L * D * sizeof *xs);
        if (part) memcpy(hc, half.hl, (size_t)n * H * sizeof *hc);
        if (part) memcpy(hc + (size_t)n * H, half.cl, (size_t)n * H * sizeof *hc);
        /* weights of `whole` for both */
        ck_assert_int_eq(be->lstm_fwd(be, part, n, L, D, H, xs, whole.wih, whole.whh, whole.bih,
                                      whole.bhh, part ? hc : h0, part ? hc + (size_t)n * H : c0,
                                      ys, half.hl, half.cl, half.saved, half.ws),
                         DLT_OK);
        for (int b = 0; b < n; b++)
            ck_assert(tu_max_rel_err(ys + (size_t)b * L * H,
                                     whole.y + ((size_t)b * 2 * L + (size_t)part * L) * H,
                                     (size_t)L * H) < 1e-6);
    }
    ck_assert(tu_max_rel_err(half.hl, whole.hl, (size_t)n * H) < 1e-6);
    ck_assert(tu_max_rel_err(half.cl, whole.cl, (size_t)n * H) < 1e-6);
    /* h_last is the last step's output, and c_last differs from it (a cell
     * state, not a copy of h) */
    for (int b = 0; b < n; b++)
        ck_assert(tu_max_rel_err(whole.hl + (size_t)b * H,
                                 whole.y + ((size_t)b * 2 * L + 2 * L - 1) * H, H) == 0.0);
    ck_assert(tu_max_rel_err(whole.cl, whole.hl, (size_t)n * H) > 1e-3);
    free(xs), free(ys), free(hc), free(h0), free(c0);
    op_free(&whole);
    op_free(&half);
}
END_TEST

/* Backward adds into its outputs; dx NULL leaves the weight gradients as
 * they are with dx. */
START_TEST(test_bwd_accumulates)
{
    const int n = 2, L = 5, D = 3, H = 4, g4 = 4 * H;
    op o = op_make(n, L, D, H);
    float *h0 = rnd((size_t)n * H, 13, -1, 1), *c0 = rnd((size_t)n * H, 14, -1, 1);
    float *dy = rnd((size_t)n * L * H, 15, -1, 1);
    const size_t sz[5] = { (size_t)n * L * D, (size_t)g4 * D, (size_t)g4 * H, g4, g4 };
    float *zero[5], *start[5], *no_dx[5];
    for (int run = 0; run < 3; run++) {
        float **g = run == 0 ? zero : run == 1 ? start : no_dx;
        for (int i = 0; i < 5; i++) g[i] = run == 1 ? rnd(sz[i], 20 + i, -1, 1) : calloc(sz[i], 4);
        fwd(&o, 1, o.x, L, h0, c0);
        ck_assert_int_eq(be->lstm_bwd(be, n, L, D, H, o.x, o.wih, o.whh, h0, c0, o.y, o.saved, dy,
                                      run == 2 ? NULL : g[0], g[1], g[2], g[3], g[4], o.ws),
                         DLT_OK);
    }
    float *s0[5];
    for (int i = 0; i < 5; i++) {
        s0[i] = rnd(sz[i], 20 + i, -1, 1);
        for (size_t j = 0; j < sz[i]; j++) s0[i][j] += zero[i][j];
        ck_assert_msg(tu_max_rel_err(start[i], s0[i], sz[i]) < 1e-5, "output %d accumulates", i);
        if (i > 0)
            ck_assert_msg(tu_max_rel_err(no_dx[i], zero[i], sz[i]) == 0.0,
                          "output %d without dx", i);
        double mag = 0.0;
        for (size_t j = 0; j < sz[i]; j++) mag = fmax(mag, fabs(zero[i][j]));
        ck_assert_msg(mag > 1e-3, "output %d is not all zero", i);
    }
    for (size_t j = 0; j < sz[0]; j++) ck_assert(no_dx[0][j] == 0.0f); /* never written */
    for (int i = 0; i < 5; i++) free(zero[i]), free(start[i]), free(no_dx[i]), free(s0[i]);
    free(h0), free(c0), free(dy);
    op_free(&o);
}
END_TEST

/* train = 0 computes the same outputs. */
START_TEST(test_inference_mode)
{
    op o = op_make(2, 3, 4, 5);
    fwd(&o, 1, o.x, 3, NULL, NULL);
    float y1[30], c1[10];
    memcpy(y1, o.y, sizeof y1);
    memcpy(c1, o.cl, sizeof c1);
    fwd(&o, 0, o.x, 3, NULL, NULL);
    ck_assert(tu_max_rel_err(o.y, y1, 30) == 0.0);
    ck_assert(tu_max_rel_err(o.cl, c1, 10) == 0.0);
    op_free(&o);
}
END_TEST

static dlt_layer *mk(const char *kv, int n, dlt_backend *b)
{
    dlt_layer_spec s;
    memset(&s, 0, sizeof s);
    snprintf(s.type, sizeof s.type, "lstm");
    snprintf(s.name, sizeof s.name, "lstm");
    char buf[128];
    snprintf(buf, sizeof buf, "%s", kv);
    for (char *save = NULL, *t = strtok_r(buf, " ", &save); t; t = strtok_r(NULL, " ", &save)) {
        char *eq = strchr(t, '=');
        *eq = '\0';
        snprintf(s.kv[s.n_kv].key, sizeof s.kv[0].key, "%s", t);
        snprintf(s.kv[s.n_kv].val, sizeof s.kv[0].val, "%s", eq + 1);
        s.n_kv++;
    }
    dlt_shape in = { 3, { n, 4, 3 } };
    dlt_layer *l;
    ck_assert_msg(dlt_layer_create_standalone(&s, &in, 1, b, 5, &l) == DLT_OK, "%s",
                  dlt_last_error());
    return l;
}

/* A batch of 2 in a layer planned for 3 gives the first 2 rows of the
 * batch-3 result, forward (with carried state) and backward. */
START_TEST(test_layer_smaller_batch)
{
    dlt_layer *l = mk("hidden=5 layers=2 stateful=true", 3, be);
    const size_t nx = 3 * 4 * 3, ny = 3 * 4 * 5;
    float *x = rnd(nx, 31, -1, 1), *dy = rnd(ny, 32, -1, 1);
    memcpy(l->x[0].data, x, nx * sizeof *x);
    memcpy(l->dy.data, dy, ny * sizeof *dy);
    dlt_step_ctx ctx = { .train = 1 };
    float *y3 = malloc(ny * sizeof *y3), *dx3 = malloc(nx * sizeof *dx3);
    for (int pass = 0; pass < 2; pass++) { /* the second pass starts from carried state */
        ck_assert_int_eq(l->ops->forward(l, &ctx, 3), DLT_OK);
        dlt_layer_zero_grads(l);
        ck_assert_int_eq(l->ops->backward(l, &ctx, 3), DLT_OK);
    }
    memcpy(y3, l->y.data, ny * sizeof *y3);
    memcpy(dx3, l->dx[0].data, nx * sizeof *dx3);
    dlt_layer_reset_state(l);
    for (int pass = 0; pass < 2; pass++) {
        ck_assert_int_eq(l->ops->forward(l, &ctx, 2), DLT_OK);
        dlt_layer_zero_grads(l);
        ck_assert_int_eq(l->ops->backward(l, &ctx, 2), DLT_OK);
    }
    ck_assert(tu_max_rel_err(l->y.data, y3, 2 * 4 * 5) < 1e-6);
    ck_assert(tu_max_rel_err(l->dx[0].data, dx3, 2 * 4 * 3) < 1e-6);
    free(x), free(dy), free(y3), free(dx3);
    dlt_layer_free_standalone(l);
}
END_TEST

/* A backend that wants more for a smaller batch breaks lstm_sizes' promise:
 * the layer must refuse the step, not overrun its plan. */
static dlt_status greedy_sizes(dlt_backend *b, int n, int len, int din, int h, size_t *saved,
                               size_t *ws)
{
    DLT_CHECK(dlt_cpu_lstm_sizes(b, n, len, din, h, saved, ws));
    if (n < 3) *saved += 1000;
    return DLT_OK;
}

START_TEST(test_layer_refuses_growing_sizes)
{
    dlt_backend greedy = *be;
    greedy.lstm_sizes = greedy_sizes;
    dlt_layer *l = mk("hidden=5", 3, &greedy);
    dlt_step_ctx ctx = { .train = 1 };
    ck_assert_int_eq(l->ops->forward(l, &ctx, 3), DLT_OK);
    ck_assert_int_eq(l->ops->forward(l, &ctx, 2), DLT_ERR_SHAPE);
    ck_assert_ptr_nonnull(strstr(dlt_last_error(), "more LSTM state"));
    dlt_layer_free_standalone(l);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("lstm");
    TCase *tc = tcase_create("lstm");
    tcase_add_checked_fixture(tc, be_setup, be_teardown);
    tcase_add_test(tc, test_sizes);
    tcase_add_test(tc, test_final_state_continues);
    tcase_add_test(tc, test_bwd_accumulates);
    tcase_add_test(tc, test_inference_mode);
    tcase_add_test(tc, test_layer_smaller_batch);
    tcase_add_test(tc, test_layer_refuses_growing_sizes);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed != 0;
}
