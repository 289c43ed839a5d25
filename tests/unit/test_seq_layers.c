/* Sequence-model layers on the CPU backend: a finite-difference gradient
 * check of every new layer type (embedding, position/token-type embedding,
 * layernorm, self_attention, transformer, lstm, mlm_head, pooler, per-token
 * cross-entropy), then semantics that a gradient check cannot see: the
 * padding mask, the embedding's padding row, stateful LSTM carrying state,
 * the tied MLM head inside a model (FD over the whole parameter arena), the
 * per-token loss counts, and setup errors.
 *
 * The check differentiates f = sum(y R) for a random R by central
 * differences in float (loss layers: f = 0.7 sum(loss), the loss scale) and
 * compares with backward(), run twice to see that it accumulates. Token ids
 * and labels are not differentiated. Layers with carried state (stateful
 * LSTM) get the same initial state before every forward. */
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

static dlt_layer_spec mkspec(const char *type, const char *name, const char *kv)
{
    dlt_layer_spec s;
    memset(&s, 0, sizeof s);
    snprintf(s.type, sizeof s.type, "%s", type);
    snprintf(s.name, sizeof s.name, "%s", name ? name : type);
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

static float *dl(const float *src, size_t n)
{
    float *h = malloc(n * sizeof *h + 1);
    ck_assert(h != NULL);
    ck_assert_int_eq(be->download(be, h, src, n * sizeof *h), DLT_OK);
    return h;
}

static void up(void *dst, const void *h, size_t bytes)
{
    ck_assert_int_eq(be->upload(be, dst, h, bytes), DLT_OK);
}

static void *dev(size_t bytes)
{
    void *p;
    ck_assert_int_eq(be->alloc(be, bytes, &p), DLT_OK);
    return p;
}

/* Token ids (n, len) with [PAD] = 0 at the end of sample b's last b
 * positions (never the whole sample), other ids in [1, vocab). */
static void make_ids(float *ids, int n, int len, int vocab, int pad)
{
    for (int b = 0; b < n; b++)
        for (int t = 0; t < len; t++) {
            int id = 1 + (b * 5 + t * 3) % (vocab - 1);
            if (pad && t >= len - b && t > 0) id = 0;
            ids[b * len + t] = (float)id;
        }
}

/* ---- the gradient check ---- */

typedef struct {
    const char *type, *kv;
    dlt_shape in;
    int train;
    int ids;         /* > 0: the input is token ids in [0, ids) */
    int mask;        /* ctx.tokens: padded ids of the input's (n, len) */
    float eps;
} sq_case;

typedef struct {
    dlt_layer *l;
    dlt_step_ctx ctx;
    int n;
    size_t ny;
    float *R;                       /* (ny) host */
    float *state0;                  /* host copy of persistent buffers, or NULL */
    float *state_dev;
    size_t state_len;
} gc_state;

static double objective(gc_state *g)
{
    if (g->state0) up(g->state_dev, g->state0, g->state_len * sizeof(float));
    ck_assert_msg(g->l->ops->forward(g->l, &g->ctx, g->n) == DLT_OK, "%s", dlt_last_error());
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
    char label[160];
    snprintf(label, sizeof label, "%s %s %s", g->l->ops->type, g->l->spec->name, what);
    tu_fd_check(be, objective_fn, g, t, n, ga, eps, 120, n + 17, label);
}

static void grad_check(const sq_case *c)
{
    dlt_layer_spec spec = mkspec(c->type, NULL, c->kv);
    gc_state g = { 0 };
    ck_assert_msg(dlt_layer_create_standalone(&spec, &c->in, 1, be, 7, &g.l) == DLT_OK, "%s: %s",
                  c->type, dlt_last_error());
    dlt_layer *l = g.l;
    g.n = (int)c->in.d[0];
    const int len = (int)c->in.d[1];
    g.ny = (size_t)dlt_shape_numel(&l->y.shape);
    g.ctx = (dlt_step_ctx){ .train = c->train, .seed = 11, .step = 3, .sample0 = 5 };
    size_t nx = (size_t)dlt_shape_numel(&c->in);
    float *hx = malloc(nx * sizeof *hx);
    if (c->ids) make_ids(hx, g.n, len, c->ids, 0);
    else tu_fill_uniform(hx, nx, 100, -1.5f, 1.5f);
    up(l->x[0].data, hx, nx * sizeof *hx);
    free(hx);
    float *tokens = NULL;
    int32_t *labels = NULL;
    if (c->mask) {
        float ids[256];
        make_ids(ids, g.n, len, 9, 1);
        tokens = dev((size_t)g.n * len * sizeof(float));
        up(tokens, ids, (size_t)g.n * len * sizeof(float));
        g.ctx.tokens = tokens;
        g.ctx.tokens_len = len;
    }
    for (int i = 0; i < l->n_bufs; i++)
        if (l->buf_persistent[i]) {   /* a fixed, non-zero carried state */
            g.state_len = (size_t)l->buf_len[i];
            g.state_dev = *l->buf_ptr[i];
            g.state0 = malloc(g.state_len * sizeof(float));
            tu_fill_uniform(g.state0, g.state_len, 31, -0.8f, 0.8f);
        }
    g.R = malloc(g.ny * sizeof *g.R);
    if (l->ops->is_loss) {
        for (size_t i = 0; i < g.ny; i++) g.R[i] = 0.7f;
        dlt_loss_set_scale(l, 0.7f);
        int k = (int)c->in.d[c->in.ndim - 1], rows = (int)(nx / (size_t)k);
        int32_t lab[256];
        for (int i = 0; i < rows; i++) lab[i] = i % 4 == 3 ? -1 : (int32_t)((i * 7 + 3) % k);
        labels = dev(sizeof lab);
        up(labels, lab, sizeof lab);
        g.ctx.labels = labels;
    } else {
        tu_fill_uniform(g.R, g.ny, 77, -1.0f, 1.0f);
    }

    dlt_layer_zero_grads(l);
    objective(&g);
    up(l->dy.data, g.R, g.ny * sizeof *g.R);
    ck_assert_msg(l->ops->backward(l, &g.ctx, g.n) == DLT_OK, "%s", dlt_last_error());
    float *gx = c->ids ? NULL : dl(l->dx[0].data, nx), *gp[DLT_MAX_PARAMS];
    for (int i = 0; i < l->n_params; i++)
        gp[i] = dl(l->params[i].g, (size_t)dlt_shape_numel(&l->params[i].shape));
    ck_assert_int_eq(l->ops->backward(l, &g.ctx, g.n), DLT_OK);
    for (int i = 0; i < l->n_params; i++) {
        size_t np = (size_t)dlt_shape_numel(&l->params[i].shape);
        float *twice = dl(l->params[i].g, np);
        for (size_t j = 0; j < np; j++) twice[j] *= 0.5f;
        ck_assert_msg(tu_max_rel_err(twice, gp[i], np) < 1e-5, "%s: %s does not accumulate",
                      c->type, l->params[i].name);
        free(twice);
    }
    if (gx) {
        check_tensor(&g, l->x[0].data, nx, gx, c->eps, "dx");
        free(gx);
    }
    for (int i = 0; i < l->n_params; i++) {
        check_tensor(&g, l->params[i].w, (size_t)dlt_shape_numel(&l->params[i].shape), gp[i],
                     c->eps, l->params[i].name);
        free(gp[i]);
    }
    free(g.R);
    free(g.state0);
    if (tokens) be->free(be, tokens);
    if (labels) be->free(be, labels);
    dlt_layer_free_standalone(l);
}

#define S3(a, b, c) { 3, { a, b, c } }
#define S2(a, b) { 2, { a, b } }

static const sq_case cases[] = {
    { "embedding", "vocab=7 dim=4", S2(2, 5), 1, 7, 0, 1e-2f },
    { "position_embedding", "max_len=6", S3(2, 4, 3), 1, 0, 0, 1e-2f },
    { "token_type_embedding", "", S3(2, 4, 3), 1, 0, 0, 1e-2f },
    { "layernorm", "", S3(2, 3, 5), 1, 0, 0, 5e-3f },
    { "layernorm", "eps=1e-3", S2(4, 6), 1, 0, 0, 5e-3f },
    { "self_attention", "heads=2", S3(2, 4, 6), 1, 0, 1, 1e-2f },
    { "self_attention", "heads=3 dropout=0.3", S3(3, 5, 6), 1, 0, 1, 1e-2f },
    { "self_attention", "heads=1 padding_mask=false", S3(2, 3, 4), 0, 0, 0, 1e-2f },
    { "transformer", "heads=2 ff=10 dropout=0", S3(2, 4, 6), 1, 0, 1, 5e-3f },
    { "transformer", "heads=2 ff=10 dropout=0.2", S3(2, 4, 6), 1, 0, 1, 5e-3f },
    { "transformer", "heads=2 ff=10 dropout=0.2 pre_ln=true", S3(2, 4, 6), 1, 0, 1, 5e-3f },
    { "transformer", "heads=3 ff=7 pre_ln=true", S3(2, 3, 6), 0, 0, 0, 5e-3f },
    /* the probabilities ops (auto picks the lse ops on the CPU) */
    { "self_attention", "heads=2 attention_impl=probs", S3(2, 4, 6), 1, 0, 1, 1e-2f },
    { "self_attention", "heads=3 dropout=0.3 attention_impl=probs", S3(3, 5, 6), 1, 0, 1, 1e-2f },
    { "transformer", "heads=2 ff=10 dropout=0.2 attention_impl=probs", S3(2, 4, 6), 1, 0, 1,
      5e-3f },
    { "transformer", "heads=2 ff=10 dropout=0.2 pre_ln=true attention_impl=probs", S3(2, 4, 6), 1,
      0, 1, 5e-3f },
    { "transformer", "heads=3 ff=7 attention_impl=probs", S3(2, 3, 6), 0, 0, 0, 5e-3f },
    { "lstm", "hidden=5", S3(2, 4, 3), 1, 0, 0, 1e-2f },
    { "lstm", "hidden=4 layers=2 dropout=0.3", S3(2, 5, 3), 1, 0, 0, 1e-2f },
    { "lstm", "hidden=3 layers=2 stateful=true", S3(3, 4, 2), 1, 0, 0, 1e-2f },
    { "mlm_head", "vocab=7", S3(2, 3, 4), 1, 0, 0, 5e-3f },
    { "pooler", "", S3(3, 4, 5), 1, 0, 0, 1e-2f },
    { "linear", "units=3", S3(2, 4, 5), 1, 0, 0, 1e-2f },
    { "linear", "units=2 bias=false", S2(3, 4), 1, 0, 0, 1e-2f },
    { "softmax_cross_entropy", "", S3(2, 4, 6), 1, 0, 0, 1e-2f },
};

START_TEST(test_grad_check)
{
    grad_check(&cases[_i]);
}
END_TEST

/* ---- semantics ---- */

static dlt_layer *mk(const char *type, const char *kv, dlt_shape in)
{
    dlt_layer_spec s = mkspec(type, NULL, kv);
    dlt_layer *l;
    ck_assert_msg(dlt_layer_create_standalone(&s, &in, 1, be, 3, &l) == DLT_OK, "%s",
                  dlt_last_error());
    return l;
}

START_TEST(test_embedding_padding_and_ids)
{
    dlt_layer *l = mk("embedding", "vocab=5 dim=3 padding_idx=0", (dlt_shape)S2(2, 3));
    ck_assert_int_eq(l->y.shape.ndim, 3);
    ck_assert_int_eq(l->y.shape.d[2], 3);
    float *w = dl(l->params[0].w, 15);
    for (int j = 0; j < 3; j++) ck_assert_float_eq(w[j], 0.0f);   /* padding row */
    float ids[6] = { 0, 4, 2, 4, 0, 1 };
    up(l->x[0].data, ids, sizeof ids);
    dlt_step_ctx ctx = { .train = 1 };
    ck_assert_int_eq(l->ops->forward(l, &ctx, 2), DLT_OK);
    float *y = dl(l->y.data, 18);
    for (int t = 0; t < 6; t++)
        for (int j = 0; j < 3; j++) ck_assert_float_eq(y[t * 3 + j], w[(int)ids[t] * 3 + j]);
    float dy[18];
    for (int i = 0; i < 18; i++) dy[i] = 1.0f;
    up(l->dy.data, dy, sizeof dy);
    dlt_layer_zero_grads(l);
    ck_assert_int_eq(l->ops->backward(l, &ctx, 2), DLT_OK);
    float *g = dl(l->params[0].g, 15);
    ck_assert_float_eq(g[0], 0.0f);          /* padding: no gradient */
    ck_assert_float_eq(g[4 * 3], 2.0f);      /* id 4 twice */
    ck_assert_float_eq(g[3 * 3], 0.0f);      /* id 3 unused */
    float bad[6] = { 0, 5, 1, 1, 1, 1 };     /* 5 is outside [0, 5) */
    up(l->x[0].data, bad, sizeof bad);
    ck_assert_int_eq(l->ops->forward(l, &ctx, 2), DLT_ERR_INVALID);
    ck_assert_msg(strstr(dlt_last_error(), "outside") != NULL, "%s", dlt_last_error());
    free(w);
    free(y);
    free(g);
    dlt_layer_free_standalone(l);
}
END_TEST

/* A padded key does not influence any output; masking off lets it. */
START_TEST(test_attention_padding_mask)
{
    const int n = 2, L = 4, D = 6;
    for (int masked = 0; masked < 2; masked++) {
        dlt_layer *l = mk("transformer", _i ? "heads=2 ff=8 dropout=0 attention_impl=lse"
                                            : "heads=2 ff=8 dropout=0 attention_impl=probs",
                          (dlt_shape)S3(n, L, D));
        float x[48], ids[8] = { 3, 1, 2, 0, 5, 6, 7, 8 };   /* sample 0's last token is [PAD] */
        tu_fill_uniform(x, 48, 5, -1, 1);
        float *tok = dev(sizeof ids);
        up(tok, ids, sizeof ids);
        dlt_step_ctx ctx = { .train = 0, .tokens = masked ? tok : NULL, .tokens_len = L };
        up(l->x[0].data, x, sizeof x);
        ck_assert_int_eq(l->ops->forward(l, &ctx, n), DLT_OK);
        float *y0 = dl(l->y.data, 48);
        for (int j = 0; j < D; j++) x[3 * D + j] += 0.5f;   /* change the padded token */
        up(l->x[0].data, x, sizeof x);
        ck_assert_int_eq(l->ops->forward(l, &ctx, n), DLT_OK);
        float *y1 = dl(l->y.data, 48);
        double diff = 0.0;
        for (int i = 0; i < 3 * D; i++) diff = fmax(diff, fabs(y0[i] - y1[i]));
        if (masked) ck_assert_msg(diff < 1e-6, "padded key leaks: %g", diff);
        else ck_assert_msg(diff > 1e-3, "unmasked key has no effect: %g", diff);
        free(y0);
        free(y1);
        be->free(be, tok);
        dlt_layer_free_standalone(l);
    }
}
END_TEST

/* The lse path plans no (heads, len, len) probabilities: its buffers are
 * smaller by n heads (len len - len) floats (up to the 16-float rounding
 * of the transformer's regions), in both attention layers. */
static int64_t buffer_floats(const char *type, const char *kv, dlt_shape in)
{
    dlt_layer *l = mk(type, kv, in);
    int64_t t = 0;
    for (int i = 0; i < l->n_bufs; i++) t += l->buf_len[i];
    dlt_layer_free_standalone(l);
    return t;
}

START_TEST(test_attention_lse_memory)
{
    const int n = 3, L = 40, H = 2;
    const int64_t saved = (int64_t)n * H * ((int64_t)L * L - L);
    const char *types[] = { "self_attention", "transformer" };
    const char *keys[2][2] = { { "heads=2 attention_impl=probs", "heads=2 attention_impl=lse" },
                               { "heads=2 ff=8 attention_impl=probs",
                                 "heads=2 ff=8 attention_impl=lse" } };
    for (int t = 0; t < 2; t++) {
        const int64_t probs = buffer_floats(types[t], keys[t][0], (dlt_shape)S3(n, L, 8));
        const int64_t lse = buffer_floats(types[t], keys[t][1], (dlt_shape)S3(n, L, 8));
        ck_assert_msg(llabs(probs - lse - saved) <= 32, "%s: %lld vs %lld floats", types[t],
                      (long long)probs, (long long)lse);
    }
}
END_TEST

/* Two stateful batches of length L equal one pass over 2L; reset clears. */
START_TEST(test_lstm_stateful)
{
    const int n = 2, L = 3, D = 2, H = 4;
    dlt_layer *a = mk("lstm", "hidden=4 layers=2 stateful=true", (dlt_shape)S3(n, L, D));
    dlt_layer *b = mk("lstm", "hidden=4 layers=2", (dlt_shape)S3(n, 2 * L, D));
    for (int i = 0; i < a->n_params; i++) {
        size_t np = (size_t)dlt_shape_numel(&a->params[i].shape);
        ck_assert_int_eq(be->copy(be, b->params[i].w, a->params[i].w, np * sizeof(float)), DLT_OK);
    }
    float x[2 * 6 * 2];
    tu_fill_uniform(x, 24, 9, -1, 1);
    up(b->x[0].data, x, sizeof x);
    dlt_step_ctx ctx = { .train = 1 };
    ck_assert_int_eq(b->ops->forward(b, &ctx, n), DLT_OK);
    float *full = dl(b->y.data, (size_t)n * 2 * L * H);
    float *y[2];
    for (int half = 0; half < 2; half++) {
        float xs[12];
        for (int s = 0; s < n; s++)
            memcpy(xs + s * L * D, x + (s * 2 * L + half * L) * D, (size_t)L * D * sizeof(float));
        up(a->x[0].data, xs, sizeof xs);
        ck_assert_int_eq(a->ops->forward(a, &ctx, n), DLT_OK);
        y[half] = dl(a->y.data, (size_t)n * L * H);
    }
    for (int s = 0; s < n; s++)
        for (int half = 0; half < 2; half++)
            for (int i = 0; i < L * H; i++)
                ck_assert_float_eq_tol(y[half][s * L * H + i],
                                       full[s * 2 * L * H + half * L * H + i], 1e-5);
    /* after a reset the second half starts from zero state again */
    dlt_layer_reset_state(a);
    float xs[12];
    for (int s = 0; s < n; s++) memcpy(xs + s * L * D, x + s * 2 * L * D, L * D * sizeof(float));
    up(a->x[0].data, xs, sizeof xs);
    ck_assert_int_eq(a->ops->forward(a, &ctx, n), DLT_OK);
    float *y2 = dl(a->y.data, (size_t)n * L * H);
    ck_assert(tu_max_rel_err(y2, y[0], (size_t)n * L * H) < 1e-6);
    free(y2);
    free(y[0]);
    free(y[1]);
    free(full);
    dlt_layer_free_standalone(a);
    dlt_layer_free_standalone(b);
}
END_TEST

/* ---- a small BERT inside a model: tie, mask, per-token loss ---- */

enum { M_L = 5, M_V = 11, M_N = 3 };

static dlt_status build_bert(dlt_model **m, const char *tie, int pre_ln)
{
    static dlt_layer_spec s[6];
    char kv[64];
    s[0] = mkspec("embedding", "emb", "vocab=11 dim=6");   /* padding_idx would freeze row 0 */
    s[1] = mkspec("position_embedding", "pos", "max_len=8");
    s[2] = mkspec("token_type_embedding", "typ", "");
    s[3] = mkspec("layernorm", "ln", "");
    snprintf(kv, sizeof kv, "heads=2 ff=8 dropout=0.1 pre_ln=%d", pre_ln);
    s[4] = mkspec("transformer", "enc0", kv);
    snprintf(kv, sizeof kv, "vocab=11 tie=%s", tie);
    s[5] = mkspec("mlm_head", "mlm", kv);
    dlt_model_cfg cfg = { .layers = s, .n_layers = 6, .loss = "softmax_cross_entropy",
                          .input = { 1, { M_L } }, .max_batch = M_N, .seed = 4 };
    return dlt_model_build(&cfg, be, m);
}

static double model_loss(dlt_model *m, const float *x, const dlt_step_ctx *ctx, float *count)
{
    dlt_model_out out;
    ck_assert_msg(dlt_model_forward(m, x, M_N, ctx, &out) == DLT_OK, "%s", dlt_last_error());
    ck_assert(out.count != NULL);
    float *loss = dl(out.loss, M_N);
    double s = 0.0;
    for (int i = 0; i < M_N; i++) s += loss[i];
    if (count) {
        float *c = dl(out.count, M_N);
        memcpy(count, c, M_N * sizeof *c);
        free(c);
    }
    free(loss);
    return s;
}

START_TEST(test_tied_bert_model_gradients)
{
    dlt_model *m;
    ck_assert_msg(build_bert(&m, "emb", _i) == DLT_OK, "%s", dlt_last_error());
    /* tied: the decoder has no weight of its own */
    int has_dec = 0;
    for (int i = 0; i < dlt_model_n_params(m); i++)
        if (strstr(dlt_model_param(m, i)->name, "decoder.weight")) has_dec = 1;
    ck_assert_int_eq(has_dec, 0);
    float ids[M_N * M_L];
    make_ids(ids, M_N, M_L, M_V, 1);
    float *x = dev(sizeof ids);
    up(x, ids, sizeof ids);
    int32_t lab[M_N * M_L];
    int counted[M_N] = { 0 };
    for (int i = 0; i < M_N * M_L; i++) {
        lab[i] = (i % 3 == 1 && ids[i] != 0) ? (int32_t)((i * 5) % M_V) : -1;
        counted[i / M_L] += lab[i] >= 0;
    }
    int32_t *labels = dev(sizeof lab);
    up(labels, lab, sizeof lab);
    dlt_step_ctx ctx = { .train = 1, .seed = 2, .step = 1, .labels = labels };
    float count[M_N];
    model_loss(m, x, &ctx, count);
    for (int i = 0; i < M_N; i++) ck_assert_float_eq(count[i], (float)counted[i]);
    ck_assert_int_eq(dlt_model_backward(m, M_N, &ctx, 1.0f), DLT_OK);
    size_t np;
    float *w = dlt_model_params(m, &np);
    float *ga = dl(dlt_model_grads(m, NULL), np);
    dlt_rng r = dlt_rng_make(5);
    for (int c = 0; c < 150; c++) {
        size_t i = (size_t)dlt_rng_below(&r, np);
        float v, vp, vm;
        ck_assert_int_eq(be->download(be, &v, w + i, sizeof v), DLT_OK);
        vp = v + 1e-3f;
        vm = v - 1e-3f;
        up(w + i, &vp, sizeof vp);
        double fp = model_loss(m, x, &ctx, NULL);
        up(w + i, &vm, sizeof vm);
        double fm = model_loss(m, x, &ctx, NULL);
        up(w + i, &v, sizeof v);
        double num = (fp - fm) / ((double)vp - (double)vm);
        ck_assert_msg(fabs(num - ga[i]) / fmax(0.05, fabs(num)) < 2e-2,
                      "param element %zu: analytic %.6g numeric %.6g", i, (double)ga[i], num);
    }
    free(ga);
    be->free(be, x);
    be->free(be, labels);
    dlt_model_free(m);
}
END_TEST

START_TEST(test_errors)
{
    dlt_model *m;
    ck_assert_int_eq(build_bert(&m, "nope", 0), DLT_ERR_CONFIG);
    ck_assert_msg(strstr(dlt_last_error(), "no layer is named 'nope'"), "%s", dlt_last_error());
    ck_assert_int_eq(build_bert(&m, "ln", 0), DLT_ERR_CONFIG);
    ck_assert_msg(strstr(dlt_last_error(), "not an embedding"), "%s", dlt_last_error());

    struct {
        const char *type, *kv, *msg;
        dlt_shape in;
    } bad[] = {
        { "transformer", "heads=4 ff=8", "must divide", S3(2, 3, 6) },
        { "transformer", "heads=2 ff=8 activation=tanh", "gelu or relu", S3(2, 3, 6) },
        { "self_attention", "heads=2", "not (n, len, dim)", S2(2, 6) },
        { "lstm", "hidden=4 layers=5", "<= 4", S3(2, 3, 6) },
        { "position_embedding", "max_len=2", "exceed max_len", S3(2, 3, 6) },
        { "embedding", "vocab=4 dim=2 padding_idx=4", "padding_idx", S2(2, 3) },
        { "layernorm", "eps=0", "eps", S3(2, 3, 6) },
        { "transformer", "heads=2 ff=8 attention_impl=fast", "auto, lse or probs", S3(2, 3, 6) },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        dlt_layer_spec s = mkspec(bad[i].type, NULL, bad[i].kv);
        dlt_layer *l = NULL;
        ck_assert_int_ne(dlt_layer_create_standalone(&s, &bad[i].in, 1, be, 1, &l), DLT_OK);
        ck_assert_msg(strstr(dlt_last_error(), bad[i].msg), "%s: %s", bad[i].type,
                      dlt_last_error());
    }
    /* the padding mask must line up with the model input */
    dlt_layer *l = mk("self_attention", "heads=1", (dlt_shape)S3(1, 3, 2));
    float ids[4] = { 1, 2, 3, 4 };
    float *tok = dev(sizeof ids);
    up(tok, ids, sizeof ids);
    dlt_step_ctx ctx = { .tokens = tok, .tokens_len = 4 };
    ck_assert_int_eq(l->ops->forward(l, &ctx, 1), DLT_ERR_SHAPE);
    be->free(be, tok);
    dlt_layer_free_standalone(l);
    /* per-token loss: a label beyond the classes */
    l = mk("softmax_cross_entropy", "", (dlt_shape)S3(1, 2, 3));
    int32_t lab[2] = { 1, 3 };
    int32_t *dlab = dev(sizeof lab);
    up(dlab, lab, sizeof lab);
    ctx = (dlt_step_ctx){ .labels = dlab };
    ck_assert_int_eq(l->ops->forward(l, &ctx, 1), DLT_ERR_INVALID);
    be->free(be, dlab);
    dlt_layer_free_standalone(l);
}
END_TEST

START_TEST(test_registry_has_seq_layers)
{
    const char *types[] = { "embedding", "position_embedding", "token_type_embedding",
                            "layernorm", "self_attention", "transformer", "lstm", "mlm_head",
                            "pooler", "linear" };
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        const dlt_layer_ops *o = dlt_layer_find(types[i]);
        ck_assert_msg(o != NULL, "%s", types[i]);
        ck_assert_ptr_null(dlt_backend_missing_op(be, dlt_layer_backend_ops(o)));
    }
}
END_TEST

int main(void)
{
    Suite *s = suite_create("seq_layers");
    TCase *tc = tcase_create("seq_layers");
    tcase_add_checked_fixture(tc, be_setup, be_teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_loop_test(tc, test_grad_check, 0, (int)(sizeof cases / sizeof cases[0]));
    tcase_add_test(tc, test_embedding_padding_and_ids);
    tcase_add_loop_test(tc, test_attention_padding_mask, 0, 2);
    tcase_add_test(tc, test_attention_lse_memory);
    tcase_add_test(tc, test_lstm_stateful);
    tcase_add_loop_test(tc, test_tied_bert_model_gradients, 0, 2);
    tcase_add_test(tc, test_errors);
    tcase_add_test(tc, test_registry_has_seq_layers);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed != 0;
}
