/* The CPU backend's memory-light attention (attention_fwd_lse /
 * attention_bwd_lse) against the probabilities ops (attention_fwd /
 * attention_bwd), which the layer tests check by finite differences and
 * against PyTorch.
 *
 * Same random qkv and output gradient on both paths; the outputs must agree
 * to float rounding (the two paths normalise differently: probs by 1/sum,
 * lse by exp(-lse)), the dropout masks exactly (a dropped element changes an
 * output by far more than the tolerance), and lse must be the log-sum-exp of
 * the scaled scores computed here in double. Cases cover a padding mask, a
 * sample whose keys are all masked (lse -INFINITY, output 0, no gradient),
 * dropout, no mask, and odd len and dh. Backward outputs start non-zero:
 * the ops accumulate. */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/backend.h"
#include "tests/unit/testutil.h"

static dlt_backend *be;

static void be_setup(void) { ck_assert_int_eq(dlt_backend_cpu_create(&be), DLT_OK); }
static void be_teardown(void) { be->destroy(be); }

typedef struct {
    int n, len, heads, dh;
    float p;
    int mask;        /* 0: tokens NULL; 1: padded tails; 2: also the last sample all padding */
} attn_case;

static const attn_case cases[] = {
    { 2, 4, 2, 3, 0.0f, 0 },
    { 3, 13, 3, 8, 0.0f, 1 },
    { 3, 13, 3, 8, 0.2f, 1 },
    { 3, 7, 2, 5, 0.0f, 2 },
    { 3, 7, 2, 5, 0.3f, 2 },
    { 2, 33, 1, 17, 0.1f, 0 },
    { 2, 64, 2, 64, 0.1f, 1 },
    { 2, 100, 2, 16, 0.1f, 2 },   /* several query blocks, a partial last one */
};

/* Token ids (n, len): sample b has its last b positions padded (id 0) when
 * mask >= 1; with mask 2 the last sample is all padding. */
static float *make_tokens(const attn_case *c)
{
    if (!c->mask) return NULL;
    float *t = malloc((size_t)c->n * c->len * sizeof *t);
    for (int b = 0; b < c->n; b++)
        for (int j = 0; j < c->len; j++) {
            int pad = j >= c->len - b;
            if (c->mask == 2 && b == c->n - 1) pad = 1;
            t[(size_t)b * c->len + j] = pad ? 0.0f : (float)(1 + (b + 3 * j) % 11);
        }
    return t;
}

START_TEST(test_lse_matches_probs)
{
    const attn_case *c = &cases[_i];
    const int n = c->n, len = c->len, H = c->heads, dh = c->dh, D = H * dh;
    const size_t nq = (size_t)n * len * 3 * D, no = (size_t)n * len * D;
    const size_t np = (size_t)n * H * len * len, nl = (size_t)n * H * len;
    const uint64_t key = 0xabc, first = 12345;
    float *qkv = malloc(nq * sizeof *qkv), *dout = malloc(no * sizeof *dout);
    tu_fill_uniform(qkv, nq, 1 + (uint64_t)_i, -2.0f, 2.0f);
    tu_fill_uniform(dout, no, 50 + (uint64_t)_i, -1.0f, 1.0f);
    float *tok = make_tokens(c);
    float *probs = malloc(np * sizeof *probs), *ws = malloc(2 * (size_t)len * len * sizeof *ws);
    float *out_p = malloc(no * sizeof *out_p), *out_l = malloc(no * sizeof *out_l);
    float *lse = malloc(nl * sizeof *lse);
    float *ws_l = malloc(DLT_ATTN_LSE_WS_FLOATS(n, H, len) * sizeof *ws_l);
    float *dq_p = malloc(nq * sizeof *dq_p), *dq_l = malloc(nq * sizeof *dq_l);
    tu_fill_uniform(dq_p, nq, 99, -1.0f, 1.0f);
    memcpy(dq_l, dq_p, nq * sizeof *dq_p);
    float *dq0 = malloc(nq * sizeof *dq0);
    memcpy(dq0, dq_p, nq * sizeof *dq0);

    ck_assert_int_eq(be->attention_fwd(be, n, len, H, dh, qkv, tok, c->p, key, first, probs,
                                       out_p, ws), DLT_OK);
    ck_assert_int_eq(be->attention_fwd_lse(be, n, len, H, dh, qkv, tok, c->p, key, first, out_l,
                                           lse, ws_l), DLT_OK);
    double e = tu_max_rel_err(out_l, out_p, no);
    ck_assert_msg(e < 2e-5, "case %d: fwd out differs by %g", _i, e);

    /* lse against the scores in double */
    const double scale = 1.0 / sqrt((double)dh);
    for (int b = 0; b < n; b++)
        for (int h = 0; h < H; h++)
            for (int i = 0; i < len; i++) {
                const float *q = qkv + ((size_t)b * len + i) * 3 * D + (size_t)h * dh;
                double mx = -INFINITY, s[128];
                int any = 0;
                for (int j = 0; j < len; j++) {
                    s[j] = -INFINITY;
                    if (tok && tok[(size_t)b * len + j] == 0.0f) continue;
                    const float *k = qkv + ((size_t)b * len + j) * 3 * D + D + (size_t)h * dh;
                    double d = 0.0;
                    for (int t = 0; t < dh; t++) d += (double)q[t] * k[t];
                    s[j] = d * scale;
                    mx = fmax(mx, s[j]);
                    any = 1;
                }
                const float got = lse[((size_t)b * H + h) * len + i];
                if (!any) {
                    ck_assert_msg(got == -INFINITY, "case %d: all-masked row lse %g", _i,
                                  (double)got);
                    for (int t = 0; t < dh; t++)
                        ck_assert_float_eq(out_l[((size_t)b * len + i) * D + h * dh + t], 0.0f);
                    continue;
                }
                double sum = 0.0;
                for (int j = 0; j < len; j++)
                    if (s[j] > -INFINITY) sum += exp(s[j] - mx);
                const double want = mx + log(sum);
                ck_assert_msg(fabs(got - want) < 1e-5 * fmax(1.0, fabs(want)),
                              "case %d: lse %g, want %g", _i, (double)got, want);
            }

    ck_assert_int_eq(be->attention_bwd(be, n, len, H, dh, qkv, c->p, key, first, probs, dout,
                                       dq_p, ws), DLT_OK);
    ck_assert_int_eq(be->attention_bwd_lse(be, n, len, H, dh, qkv, tok, c->p, key, first, out_l,
                                           lse, dout, dq_l, ws_l), DLT_OK);
    /* compare the gradients themselves (minus the common start) */
    for (size_t i = 0; i < nq; i++) {
        dq_p[i] -= dq0[i];
        dq_l[i] -= dq0[i];
    }
    e = tu_max_rel_err(dq_l, dq_p, nq);
    ck_assert_msg(e < 1e-4, "case %d: bwd dqkv differs by %g", _i, e);
    double mag = 0.0;
    for (size_t i = 0; i < nq; i++) mag = fmax(mag, fabs(dq_p[i]));
    ck_assert_msg(mag > 1e-3, "case %d: gradient is zero", _i);
    if (c->mask == 2) {   /* the all-padding sample gets no gradient */
        for (size_t i = (size_t)(n - 1) * len * 3 * D; i < nq; i++)
            ck_assert_float_eq(dq_l[i], 0.0f);
    }
    free(qkv), free(dout), free(tok), free(probs), free(ws), free(out_p), free(out_l);
    free(lse), free(ws_l), free(dq_p), free(dq_l), free(dq0);
}
END_TEST

/* Dropout must change the output (the masks are drawn) and differ with the key. */
START_TEST(test_lse_dropout_draws)
{
    const int n = 1, len = 9, H = 2, dh = 4, D = H * dh;
    const size_t nq = (size_t)n * len * 3 * D, no = (size_t)n * len * D;
    float *qkv = malloc(nq * sizeof *qkv), a[72], b[72], z[72], lse[18];
    float *ws = malloc(DLT_ATTN_LSE_WS_FLOATS(n, H, len) * sizeof *ws);
    tu_fill_uniform(qkv, nq, 5, -1.0f, 1.0f);
    dlt_backend *B = be;
    ck_assert_int_eq(B->attention_fwd_lse(B, n, len, H, dh, qkv, NULL, 0.0f, 1, 0, z, lse, ws), 0);
    ck_assert_int_eq(B->attention_fwd_lse(B, n, len, H, dh, qkv, NULL, 0.5f, 1, 0, a, lse, ws), 0);
    ck_assert_int_eq(B->attention_fwd_lse(B, n, len, H, dh, qkv, NULL, 0.5f, 2, 0, b, lse, ws), 0);
    ck_assert(tu_max_rel_err(a, z, no) > 1e-2);
    ck_assert(tu_max_rel_err(a, b, no) > 1e-2);
    ck_assert_int_eq(B->attention_fwd_lse(B, n, len, H, dh, qkv, NULL, 1.0f, 1, 0, a, lse, ws),
                     DLT_ERR_INVALID);
    free(qkv), free(ws);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("attn");
    TCase *tc = tcase_create("lse");
    tcase_add_checked_fixture(tc, be_setup, be_teardown);
    tcase_add_loop_test(tc, test_lse_matches_probs, 0, sizeof cases / sizeof cases[0]);
    tcase_add_test(tc, test_lse_dropout_draws);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *r = srunner_create(suite());
    srunner_run_all(r, CK_NORMAL);
    int failed = srunner_ntests_failed(r);
    srunner_free(r);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
