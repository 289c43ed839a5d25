/* "transformer": one transformer encoder block on (n, len, dim), as
 * torch.nn.TransformerEncoderLayer(dim, heads, ff, dropout, activation,
 * batch_first=True, norm_first=pre_ln) with src_key_padding_mask =
 * (token ids == 0). Post-LN (BERT, torch's default):
 *     s1 = x + drop(mha(x));          h1 = norm1(s1)
 *     s2 = h1 + drop(W2 drop(act(W1 h1)));  y = norm2(s2)
 * pre-LN:
 *     s1 = x + drop(mha(norm1(x)));   y = s1 + drop(W2 drop(act(W1 norm2(s1))))
 * Parameter names follow torch's module (self_attn.in_proj_weight, ...,
 * linear1.weight, norm2.bias) so a state dict maps one to one.
 *
 * Why one layer and not a macro of small ones: dense layers flatten their
 * input, and a block is the unit BERT configs repeat. All per-step tensors
 * live in one buffer carved into named regions at setup (the layer table
 * has room for 8 buffers, the block needs up to 15): each region holds
 * max_batch samples. Backward's gradients of the intermediate tensors live in
 * the shared workspace. Activation outputs are dropped out in place, and the
 * attention/ff outputs are written straight into the residual sums, so only
 * what backward reads is kept: the LN inputs, the linear layers' inputs, the
 * pre-activation and the dropout masks (only when dropout > 0). Padding
 * mask and dropout keys work as in the self_attention layer (attention.c);
 * dropout sites: 0 probabilities, 1 after attention, 2 after the
 * activation, 3 after the feed-forward. Only gelu and relu are accepted,
 * the two activations whose derivative needs no output (the output is
 * dropped out in place). */
#include <stdlib.h>
#include <string.h>

#include "core/layers/seq_internal.h"

static const dlt_key_spec transformer_keys[] = {
    { "heads", DLT_KEY_INT, NULL, "attention heads; must divide the width" },
    { "ff", DLT_KEY_INT, NULL, "width of the feed-forward hidden layer" },
    { "dropout", DLT_KEY_FLOAT, "0.1", "dropout on probabilities, sublayer outputs, ff hidden" },
    { "pre_ln", DLT_KEY_BOOL, "false", "layer norm before each sublayer (default: after, BERT)" },
    { "activation", DLT_KEY_STR, "gelu", "feed-forward activation: gelu or relu" },
    { "eps", DLT_KEY_FLOAT, "1e-5", "layer norm epsilon (BERT uses 1e-12)" },
    { "padding_mask", DLT_KEY_BOOL, "true", "mask keys whose model-input token id is 0" },
    DLT_MHA_IMPL_KEY,
    { NULL, 0, NULL, NULL },
};

/* Regions of the per-step buffer, per sample; R_M* only with dropout.
 * R_PROBS holds what the attention op saves: the probabilities, or only
 * the row log-sum-exps on the lse path (dlt_mha_saved_len). */
enum { R_QKV, R_PROBS, R_CTX, R_S1, R_H1, R_F1, R_GD, R_S2, R_STAT, R_M1, R_MF, R_M2, R_N };

typedef struct {
    dlt_mha a;
    int len, dim, ff, pre_ln, mask;
    float drop, eps;
    dlt_act act;
    int w1, b1, w2, b2, g1, be1, g2, be2;   /* parameter indices */
    int64_t off[R_N], per[R_N];              /* region offset (max_batch samples), per sample */
    float *buf;
    int dropped;                             /* the last forward applied dropout */
} tf_priv;

static float *region(const tf_priv *p, int r) { return p->buf + p->off[r]; }

static dlt_status transformer_setup(dlt_layer *l)
{
    const dlt_shape *xs = &l->x[0].shape;
    if (!dlt_seq_is_3d(xs)) {
        char b[96];
        return DLT_LAYER_ERR(l, DLT_ERR_SHAPE, "input %s is not (n, len, dim)",
                             dlt_shape_str(xs, b, sizeof b));
    }
    long heads, ff;
    DLT_CHECK(dlt_spec_int_min(l, "heads", 1, &heads));
    DLT_CHECK(dlt_spec_int_min(l, "ff", 1, &ff));
    const dlt_key_spec *K = transformer_keys;
    const char *act = dlt_spec_str(l->spec, K, "activation");
    double eps = dlt_spec_float(l->spec, K, "eps");
    if (!(eps > 0.0)) return DLT_LAYER_ERR(l, DLT_ERR_CONFIG, "eps must be > 0 (got %g)", eps);
    tf_priv *p = calloc(1, sizeof *p);
    if (!p) return DLT_LAYER_ERR(l, DLT_ERR_NOMEM, "out of memory");
    l->priv = p;
    if (strcmp(act, "gelu") == 0) p->act = DLT_ACT_GELU;
    else if (strcmp(act, "relu") == 0) p->act = DLT_ACT_RELU;
    else return DLT_LAYER_ERR(l, DLT_ERR_CONFIG, "activation '%s' is not gelu or relu", act);
    p->len = (int)xs->d[1];
    p->dim = (int)xs->d[2];
    p->ff = (int)ff;
    p->pre_ln = (int)dlt_spec_int(l->spec, K, "pre_ln");
    p->mask = (int)dlt_spec_int(l->spec, K, "padding_mask");
    p->drop = (float)dlt_spec_float(l->spec, K, "dropout");
    p->eps = (float)eps;
    DLT_CHECK(dlt_mha_setup(l, &p->a, "self_attn.", p->len, p->dim, (int)heads, p->drop,
                            dlt_spec_str(l->spec, K, "attention_impl")));
    const int64_t D = p->dim, F = p->ff, L = p->len;
    p->w1 = dlt_layer_add_param(l, "linear1.weight", (dlt_shape){ 2, { F, D } },
                                DLT_INIT_UNIFORM_FAN_IN, D);
    p->b1 = dlt_layer_add_param(l, "linear1.bias", (dlt_shape){ 1, { F } },
                                DLT_INIT_UNIFORM_FAN_IN, D);
    p->w2 = dlt_layer_add_param(l, "linear2.weight", (dlt_shape){ 2, { D, F } },
                                DLT_INIT_UNIFORM_FAN_IN, F);
    p->b2 = dlt_layer_add_param(l, "linear2.bias", (dlt_shape){ 1, { D } },
                                DLT_INIT_UNIFORM_FAN_IN, F);
    p->g1 = dlt_layer_add_param(l, "norm1.weight", (dlt_shape){ 1, { D } }, DLT_INIT_ONE, D);
    p->be1 = dlt_layer_add_param(l, "norm1.bias", (dlt_shape){ 1, { D } }, DLT_INIT_ZERO, D);
    p->g2 = dlt_layer_add_param(l, "norm2.weight", (dlt_shape){ 1, { D } }, DLT_INIT_ONE, D);
    p->be2 = dlt_layer_add_param(l, "norm2.bias", (dlt_shape){ 1, { D } }, DLT_INIT_ZERO, D);

    const int drop = p->drop > 0.0f;
    const int64_t per[R_N] = {
        [R_QKV] = dlt_mha_qkv_len(&p->a), [R_PROBS] = dlt_mha_saved_len(&p->a),
        [R_CTX] = L * D, [R_S1] = L * D, [R_H1] = L * D, [R_F1] = L * F, [R_GD] = L * F,
        [R_S2] = L * D, [R_STAT] = 4 * L, [R_M1] = drop ? L * D : 0,
        [R_MF] = drop ? L * F : 0, [R_M2] = drop ? L * D : 0,
    };
    const int64_t n = xs->d[0];
    int64_t total = 0;
    for (int r = 0; r < R_N; r++) {
        p->per[r] = per[r];
        p->off[r] = total;
        total += (n * per[r] + 15) / 16 * 16;
    }
    dlt_layer_add_buffer(l, &p->buf, total);
    l->y.shape = *xs;
    l->workspace_bytes = dlt_mha_ws_bytes(&p->a, n) + (size_t)n * L * (5 * D + 3 * F) * 4;
    l->flops += 4.0 * (double)L * D * F;
    return DLT_OK;
}

/* y (rows, out) = x (rows, in) W^T + b */
static dlt_status linear(dlt_layer *l, int w, int b, int rows, int in, int out, const float *x,
                         float *y)
{
    return l->be->linear_fwd(l->be, rows, in, out, x, l->params[w].w, l->params[b].w, y);
}

/* dW += dy^T x, db += sum dy, dx = dy W (overwritten) */
static dlt_status linear_bwd(dlt_layer *l, int w, int b, int rows, int in, int out,
                             const float *x, const float *dy, float *dx)
{
    dlt_backend *be = l->be;
    DLT_CHECK(be->linear_bwd_w(be, rows, in, out, x, dy, l->params[w].g, l->params[b].g));
    return be->gemm(be, 0, 0, rows, in, out, 1.0f, dy, out, l->params[w].w, in, 0.0f, dx, in);
}

/* In-place dropout of x (rows of `per` per sample) at site, mask saved. */
static dlt_status drop_inplace(dlt_layer *l, const dlt_step_ctx *ctx, int n, int site,
                               int64_t per, float *x, float *mask)
{
    tf_priv *p = l->priv;
    if (!p->dropped) return DLT_OK;
    return l->be->dropout_fwd(l->be, (size_t)n * per, p->drop, dlt_seq_dropout_key(l, ctx, site),
                              (uint64_t)ctx->sample0 * (uint64_t)per, x, x, mask);
}

static dlt_status transformer_forward(dlt_layer *l, const dlt_step_ctx *ctx, int n)
{
    tf_priv *p = l->priv;
    dlt_backend *be = l->be;
    const int rows = n * p->len, D = p->dim, F = p->ff;
    const size_t nd = (size_t)rows * D;
    const float *x = l->x[0].data, *tokens;
    float *s1 = region(p, R_S1), *h1 = region(p, R_H1), *f1 = region(p, R_F1);
    float *gd = region(p, R_GD), *s2 = region(p, R_S2), *st = region(p, R_STAT);
    float *m1 = st, *r1 = st + rows, *m2 = st + 2 * rows, *r2 = st + 3 * rows;
    DLT_CHECK(dlt_seq_mask_tokens(l, ctx, p->len, p->mask, &tokens));
    p->dropped = ctx->train && p->drop > 0.0f;
    const dlt_param *P = l->params;

    /* attention sublayer: s1 = x + drop(mha(pre_ln ? norm1(x) : x)) */
    const float *ain = x;
    if (p->pre_ln) {
        DLT_CHECK(be->layernorm_fwd(be, rows, D, p->eps, x, P[p->g1].w, P[p->be1].w, h1, m1, r1));
        ain = h1;
    }
    DLT_CHECK(dlt_mha_forward(l, &p->a, ctx, n, 0, tokens, ain, region(p, R_QKV),
                              region(p, R_PROBS), region(p, R_CTX), s1, l->workspace));
    DLT_CHECK(drop_inplace(l, ctx, n, 1, p->per[R_CTX], s1, region(p, R_M1)));
    DLT_CHECK(be->add(be, nd, s1, x, s1));

    /* feed-forward sublayer on fin = norm1(s1) (post) or norm2(s1) (pre) */
    float *fin = h1;
    if (p->pre_ln) {
        fin = s2;   /* pre-LN keeps norm2's output where post-LN keeps the second sum */
        DLT_CHECK(be->layernorm_fwd(be, rows, D, p->eps, s1, P[p->g2].w, P[p->be2].w, fin, m2, r2));
    } else {
        DLT_CHECK(be->layernorm_fwd(be, rows, D, p->eps, s1, P[p->g1].w, P[p->be1].w, h1, m1, r1));
    }
    DLT_CHECK(linear(l, p->w1, p->b1, rows, D, F, fin, f1));
    DLT_CHECK(be->act_fwd(be, p->act, (size_t)rows * F, f1, gd));
    DLT_CHECK(drop_inplace(l, ctx, n, 2, p->per[R_F1], gd, region(p, R_MF)));
    float *sum = p->pre_ln ? l->y.data : s2;
    DLT_CHECK(linear(l, p->w2, p->b2, rows, F, D, gd, sum));
    DLT_CHECK(drop_inplace(l, ctx, n, 3, p->per[R_CTX], sum, region(p, R_M2)));
    DLT_CHECK(be->add(be, nd, sum, p->pre_ln ? s1 : h1, sum));
    if (!p->pre_ln)
        DLT_CHECK(be->layernorm_fwd(be, rows, D, p->eps, s2, P[p->g2].w, P[p->be2].w, l->y.data,
                                    m2, r2));
    return DLT_OK;
}

/* out = dy mask (dropout active) or dy itself; out is zeroed scratch. */
static const float *undrop(dlt_layer *l, size_t len, const float *dy, const float *mask,
                           float *out, dlt_status *st)
{
    tf_priv *p = l->priv;
    if (!p->dropped) return dy;
    *st = l->be->fill(l->be, out, len, 0.0f);
    if (*st == DLT_OK) *st = l->be->mul_acc(l->be, len, dy, mask, out);
    return out;
}

static dlt_status transformer_backward(dlt_layer *l, const dlt_step_ctx *ctx, int n)
{
    tf_priv *p = l->priv;
    dlt_backend *be = l->be;
    const int rows = n * p->len, D = p->dim, F = p->ff;
    const size_t nd = (size_t)rows * D, nf = (size_t)rows * F;
    const dlt_param *P = l->params;
    float *s1 = region(p, R_S1), *h1 = region(p, R_H1), *f1 = region(p, R_F1);
    float *gd = region(p, R_GD), *s2 = region(p, R_S2), *st = region(p, R_STAT);
    float *m1 = st, *r1 = st + rows, *m2 = st + 2 * rows, *r2 = st + 3 * rows;
    float *ws = (float *)((char *)l->workspace + dlt_mha_ws_bytes(&p->a, n));
    float *A = ws, *B = A + nd, *C = B + nd, *E = C + nd, *G = E + nd;   /* (rows, D) each */
    float *FA = G + nd, *FB = FA + nf, *FC = FB + nf;                    /* (rows, F) each */
    dlt_status s = DLT_OK;

    /* ds_ff: gradient at the feed-forward residual sum, into A */
    DLT_CHECK(be->fill(be, A, nd, 0.0f));
    if (p->pre_ln) DLT_CHECK(be->axpy(be, nd, 1.0f, l->dy.data, A));
    else DLT_CHECK(be->layernorm_bwd(be, rows, D, s2, l->dy.data, P[p->g2].w, m2, r2, A,
                                     P[p->g2].g, P[p->be2].g));
    /* the residual branch's source gets A: s1 (pre) or h1 (post), collected in C */
    DLT_CHECK(be->copy(be, C, A, nd * sizeof(float)));
    const float *df2 = undrop(l, nd, A, region(p, R_M2), B, &s);
    DLT_CHECK(s);
    DLT_CHECK(linear_bwd(l, p->w2, p->b2, rows, F, D, gd, df2, FA));
    const float *dg = undrop(l, nf, FA, region(p, R_MF), FB, &s);
    DLT_CHECK(s);
    DLT_CHECK(be->fill(be, FC, nf, 0.0f));
    DLT_CHECK(be->act_bwd(be, p->act, nf, f1, gd, dg, FC));
    const float *fin = p->pre_ln ? s2 : h1;
    DLT_CHECK(linear_bwd(l, p->w1, p->b1, rows, D, F, fin, FC, E));   /* E = d fin */
    /* ds1 into G */
    DLT_CHECK(be->fill(be, G, nd, 0.0f));
    if (p->pre_ln) {
        DLT_CHECK(be->axpy(be, nd, 1.0f, C, G));
        DLT_CHECK(be->layernorm_bwd(be, rows, D, s1, E, P[p->g2].w, m2, r2, G, P[p->g2].g,
                                    P[p->be2].g));
    } else {
        DLT_CHECK(be->axpy(be, nd, 1.0f, E, C));   /* d h1 = residual + ff input */
        DLT_CHECK(be->layernorm_bwd(be, rows, D, s1, C, P[p->g1].w, m1, r1, G, P[p->g1].g,
                                    P[p->be1].g));
    }
    /* s1 = x + drop(mha(ain)) */
    const float *tokens;
    DLT_CHECK(dlt_seq_mask_tokens(l, ctx, p->len, p->mask, &tokens));
    float *dx = l->dx[0].data;
    if (dx) DLT_CHECK(be->axpy(be, nd, 1.0f, G, dx));
    const float *da = undrop(l, nd, G, region(p, R_M1), B, &s);
    DLT_CHECK(s);
    if (!p->pre_ln)
        return dlt_mha_backward(l, &p->a, ctx, n, 0, tokens, l->x[0].data, region(p, R_QKV),
                                region(p, R_PROBS), region(p, R_CTX), da, dx, l->workspace);
    DLT_CHECK(be->fill(be, A, nd, 0.0f));
    DLT_CHECK(dlt_mha_backward(l, &p->a, ctx, n, 0, tokens, h1, region(p, R_QKV),
                               region(p, R_PROBS), region(p, R_CTX), da, A, l->workspace));
    return be->layernorm_bwd(be, rows, D, l->x[0].data, A, P[p->g1].w, m1, r1, dx, P[p->g1].g,
                             P[p->be1].g);
}

const dlt_layer_ops dlt_layer_transformer = {
    .type = "transformer",
    .keys = transformer_keys,
    .n_inputs = 1,
    .is_loss = 0,
    .setup = transformer_setup,
    .init = NULL,
    .forward = transformer_forward,
    .backward = transformer_backward,
    .free = NULL,
};
