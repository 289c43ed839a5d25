/* "self_attention": multi-head self-attention on (n, len, dim), as
 * torch.nn.MultiheadAttention(dim, heads, dropout, batch_first=True) called
 * with query = key = value = x and key_padding_mask = (token ids == 0).
 *
 * One packed in-projection gemm produces q, k and v for all heads at once
 * (weight (3 dim, dim), torch's in_proj_weight layout), the backend's
 * attention op does the per-head softmax(q k^T / sqrt(dh)) v with the
 * padding mask and dropout on the probabilities, and one gemm applies the
 * out-projection. The transformer block reuses the same block (dlt_mha_*)
 * with its own parameter prefix.
 *
 * Padding mask: the layer has one input, the hidden states; the token ids
 * come from the step context (ctx->tokens, the model input, set by the model
 * when its input is one token sequence per sample). Keys whose id is 0
 * ([PAD]) get probability 0. A model whose input is not the token sequence
 * of the same length is refused at the first step; padding_mask: false
 * turns masking off. Dropout uses the counter generator keyed by (seed, step,
 * layer index, site) at the global index of each probability, so the masks
 * do not depend on how samples are split across ranks.
 *
 * Two sets of backend ops compute the attention: attention_fwd/bwd save
 * the probabilities (n, heads, len, len) for backward, attention_fwd_lse/
 * bwd_lse save only each row's log-sum-exp (n, heads, len) and recompute
 * the probabilities in backward (flash-style on CUDA). The probabilities of
 * BERT-base at len 512 are 12 MiB per sample and layer, so the choice
 * decides what batch fits. attention_impl: auto takes the lse ops whenever
 * the backend has them (on the CPU they are also faster; mha_pick_lse);
 * lse or probs force one. Only the chosen op's tensor is allocated. */
#include <stdlib.h>
#include <string.h>

#include "core/layers/seq_internal.h"

/* ---- the shared block ---- */

dlt_status dlt_seq_mask_tokens(const dlt_layer *l, const dlt_step_ctx *ctx, int64_t len,
                               int use_mask, const float **out)
{
    *out = NULL;
    if (!use_mask || !ctx->tokens) return DLT_OK;
    if (ctx->tokens_len != len)
        return DLT_LAYER_ERR(l, DLT_ERR_SHAPE,
                             "the padding mask comes from the model input, %lld token ids per "
                             "sample, but the sequence here has %lld positions (set "
                             "padding_mask: false)", (long long)ctx->tokens_len, (long long)len);
    *out = ctx->tokens;
    return DLT_OK;
}

/* attention_impl: auto takes the lse ops whenever the backend has both:
 * on the CPU they measured 0.8-0.97x the probs ops' time from BERT-tiny to
 * BERT-base shapes (docs/decisions.md, "Attention kernels"), and on a GPU
 * they are the flash kernels. */
static int mha_pick_lse(const dlt_backend *be)
{
    return be && be->attention_fwd_lse && be->attention_bwd_lse;
}

dlt_status dlt_mha_setup(dlt_layer *l, dlt_mha *a, const char *prefix, int len, int dim,
                         int heads, float dropout, const char *impl)
{
    if (heads < 1 || dim % heads != 0)
        return DLT_LAYER_ERR(l, DLT_ERR_CONFIG, "heads (%d) must divide the width %d", heads, dim);
    if (!(dropout >= 0.0f && dropout < 1.0f))
        return DLT_LAYER_ERR(l, DLT_ERR_CONFIG, "dropout must be in [0, 1) (got %g)",
                             (double)dropout);
    a->len = len;
    a->dim = dim;
    a->heads = heads;
    a->dropout = dropout;
    const int has_lse = mha_pick_lse(l->be);
    if (strcmp(impl, "auto") == 0) {
        a->lse = has_lse;
    } else if (strcmp(impl, "lse") == 0) {
        if (!has_lse)
            return DLT_LAYER_ERR(l, DLT_ERR_CONFIG,
                                 "attention_impl: lse, but backend %s has no attention_fwd_lse "
                                 "(use auto or probs)", l->be ? l->be->name : "(none)");
        a->lse = 1;
    } else if (strcmp(impl, "probs") == 0) {
        a->lse = 0;
    } else {
        return DLT_LAYER_ERR(l, DLT_ERR_CONFIG,
                             "attention_impl '%s' is not auto, lse or probs", impl);
    }
    char nm[DLT_NAME_LEN];
    snprintf(nm, sizeof nm, "%sin_proj_weight", prefix);
    a->w_in = dlt_layer_add_param(l, nm, (dlt_shape){ 2, { 3 * dim, dim } },
                                  DLT_INIT_UNIFORM_FAN_IN, dim);
    snprintf(nm, sizeof nm, "%sin_proj_bias", prefix);
    a->b_in = dlt_layer_add_param(l, nm, (dlt_shape){ 1, { 3 * dim } }, DLT_INIT_ZERO, dim);
    snprintf(nm, sizeof nm, "%sout_proj.weight", prefix);
    a->w_out = dlt_layer_add_param(l, nm, (dlt_shape){ 2, { dim, dim } },
                                   DLT_INIT_UNIFORM_FAN_IN, dim);
    snprintf(nm, sizeof nm, "%sout_proj.bias", prefix);
    a->b_out = dlt_layer_add_param(l, nm, (dlt_shape){ 1, { dim } }, DLT_INIT_ZERO, dim);
    l->flops += 8.0 * len * (double)dim * dim + 4.0 * (double)len * len * dim;
    return DLT_OK;
}

int64_t dlt_mha_qkv_len(const dlt_mha *a) { return (int64_t)a->len * 3 * a->dim; }
int64_t dlt_mha_probs_len(const dlt_mha *a) { return (int64_t)a->heads * a->len * a->len; }

int64_t dlt_mha_saved_len(const dlt_mha *a)
{
    return a->lse ? (int64_t)a->heads * a->len : dlt_mha_probs_len(a);
}

size_t dlt_mha_ws_bytes(const dlt_mha *a, int64_t n)
{
    const size_t op = a->lse ? DLT_ATTN_LSE_WS_FLOATS(n, a->heads, a->len)
                             : 2 * (size_t)a->len * a->len;
    return ((size_t)n * a->len * 4 * a->dim + op) * sizeof(float);
}

/* Dropout of the probabilities in this step: 0 in evaluation. */
static float mha_p(const dlt_mha *a, const dlt_step_ctx *ctx) { return ctx->train ? a->dropout : 0.0f; }

dlt_status dlt_mha_forward(dlt_layer *l, const dlt_mha *a, const dlt_step_ctx *ctx, int n,
                           int site, const float *tokens, const float *x, float *qkv,
                           float *saved, float *ctxv, float *out, float *ws)
{
    dlt_backend *be = l->be;
    const int rows = n * a->len, D = a->dim;
    const dlt_param *P = l->params;
    /* qkv (rows, 3D) = x (rows, D) W_in^T + b_in */
    DLT_CHECK(be->linear_fwd(be, rows, D, 3 * D, x, P[a->w_in].w, P[a->b_in].w, qkv));
    const uint64_t key = dlt_seq_dropout_key(l, ctx, site);
    const uint64_t first = (uint64_t)ctx->sample0 * (uint64_t)dlt_mha_probs_len(a);
    if (a->lse)
        DLT_CHECK(be->attention_fwd_lse(be, n, a->len, a->heads, D / a->heads, qkv, tokens,
                                        mha_p(a, ctx), key, first, ctxv, saved, ws));
    else
        DLT_CHECK(be->attention_fwd(be, n, a->len, a->heads, D / a->heads, qkv, tokens,
                                    mha_p(a, ctx), key, first, saved, ctxv, ws));
    /* out (rows, D) = ctxv W_out^T + b_out */
    return be->linear_fwd(be, rows, D, D, ctxv, P[a->w_out].w, P[a->b_out].w, out);
}

dlt_status dlt_mha_backward(dlt_layer *l, const dlt_mha *a, const dlt_step_ctx *ctx, int n,
                            int site, const float *tokens, const float *x, const float *qkv,
                            const float *saved, const float *ctxv, const float *dout, float *dx,
                            float *ws)
{
    dlt_backend *be = l->be;
    const int rows = n * a->len, D = a->dim;
    const dlt_param *P = l->params;
    float *dctx = ws;                              /* (rows, D) */
    float *dqkv = dctx + (size_t)rows * D;         /* (rows, 3D) */
    float *scratch = dqkv + (size_t)rows * 3 * D;  /* the attention op's scratch */
    DLT_CHECK(be->linear_bwd_w(be, rows, D, D, ctxv, dout, P[a->w_out].g, P[a->b_out].g));
    DLT_CHECK(be->gemm(be, 0, 0, rows, D, D, 1.0f, dout, D, P[a->w_out].w, D, 0.0f, dctx, D));
    DLT_CHECK(be->fill(be, dqkv, (size_t)rows * 3 * D, 0.0f));
    const uint64_t key = dlt_seq_dropout_key(l, ctx, site);
    const uint64_t first = (uint64_t)ctx->sample0 * (uint64_t)dlt_mha_probs_len(a);
    if (a->lse)
        DLT_CHECK(be->attention_bwd_lse(be, n, a->len, a->heads, D / a->heads, qkv, tokens,
                                        mha_p(a, ctx), key, first, ctxv, saved, dctx, dqkv,
                                        scratch));
    else
        DLT_CHECK(be->attention_bwd(be, n, a->len, a->heads, D / a->heads, qkv, mha_p(a, ctx),
                                    key, first, saved, dctx, dqkv, scratch));
    DLT_CHECK(be->linear_bwd_w(be, rows, D, 3 * D, x, dqkv, P[a->w_in].g, P[a->b_in].g));
    if (dx)
        DLT_CHECK(be->gemm(be, 0, 0, rows, D, 3 * D, 1.0f, dqkv, 3 * D, P[a->w_in].w, D, 1.0f,
                           dx, D));
    return DLT_OK;
}

/* ---- the self_attention layer ---- */

static const dlt_key_spec attention_keys[] = {
    { "heads", DLT_KEY_INT, NULL, "attention heads; must divide the width" },
    { "dropout", DLT_KEY_FLOAT, "0.0", "dropout on the attention probabilities" },
    { "padding_mask", DLT_KEY_BOOL, "true", "mask keys whose model-input token id is 0" },
    DLT_MHA_IMPL_KEY,
    { NULL, 0, NULL, NULL },
};

typedef struct {
    dlt_mha a;
    int mask;
    float *qkv;     /* (n, len, 3 dim) */
    float *saved;   /* (n, heads, len, len) probs, or (n, heads, len) lse when a.lse */
    float *ctxv;    /* (n, len, dim) */
} attn_priv;

static dlt_status attention_setup(dlt_layer *l)
{
    const dlt_shape *xs = &l->x[0].shape;
    if (!dlt_seq_is_3d(xs)) {
        char b[96];
        return DLT_LAYER_ERR(l, DLT_ERR_SHAPE, "input %s is not (n, len, dim)",
                             dlt_shape_str(xs, b, sizeof b));
    }
    long heads;
    DLT_CHECK(dlt_spec_int_min(l, "heads", 1, &heads));
    attn_priv *p = calloc(1, sizeof *p);
    if (!p) return DLT_LAYER_ERR(l, DLT_ERR_NOMEM, "out of memory");
    l->priv = p;
    p->mask = (int)dlt_spec_int(l->spec, attention_keys, "padding_mask");
    DLT_CHECK(dlt_mha_setup(l, &p->a, "", (int)xs->d[1], (int)xs->d[2], (int)heads,
                            (float)dlt_spec_float(l->spec, attention_keys, "dropout"),
                            dlt_spec_str(l->spec, attention_keys, "attention_impl")));
    int64_t n = xs->d[0];
    l->y.shape = *xs;
    dlt_layer_add_buffer(l, &p->qkv, n * dlt_mha_qkv_len(&p->a));
    dlt_layer_add_buffer(l, &p->saved, n * dlt_mha_saved_len(&p->a));
    dlt_layer_add_buffer(l, &p->ctxv, n * dlt_shape_sample_numel(xs));
    l->workspace_bytes = dlt_mha_ws_bytes(&p->a, n);
    return DLT_OK;
}

static dlt_status attention_forward(dlt_layer *l, const dlt_step_ctx *ctx, int n)
{
    attn_priv *p = l->priv;
    const float *tokens;
    DLT_CHECK(dlt_seq_mask_tokens(l, ctx, p->a.len, p->mask, &tokens));
    return dlt_mha_forward(l, &p->a, ctx, n, 0, tokens, l->x[0].data, p->qkv, p->saved, p->ctxv,
                           l->y.data, l->workspace);
}

static dlt_status attention_backward(dlt_layer *l, const dlt_step_ctx *ctx, int n)
{
    attn_priv *p = l->priv;
    const float *tokens;
    DLT_CHECK(dlt_seq_mask_tokens(l, ctx, p->a.len, p->mask, &tokens));
    return dlt_mha_backward(l, &p->a, ctx, n, 0, tokens, l->x[0].data, p->qkv, p->saved,
                            p->ctxv, l->dy.data, l->dx[0].data, l->workspace);
}

const dlt_layer_ops dlt_layer_self_attention = {
    .type = "self_attention",
    .keys = attention_keys,
    .n_inputs = 1,
    .is_loss = 0,
    .setup = attention_setup,
    .init = NULL,
    .forward = attention_forward,
    .backward = attention_backward,
    .free = NULL,
};
