/* Output heads of BERT-style encoders: "mlm_head" (masked-language-model
 * prediction, tied to the input embedding) and "pooler" (the first token's
 * vector through dense + tanh, the input of a sentence classifier).
 *
 * mlm_head on (n, len, dim) -> logits (n, len, vocab), as BERT's
 * BertLMPredictionHead: dense(dim, dim) + gelu + layernorm, then a decoder
 * whose weight is the (vocab, dim) table of the embedding layer named by key
 * `tie`, plus a bias of its own (decoder.bias). The tie is resolved after the
 * model has allocated its arenas (dlt_layers_link, called by the model):
 * the head reads the embedding's weight and accumulates into its gradient,
 * so the shared table gets the sum of both uses and exists once in the
 * arena and in checkpoints. Without `tie` the head owns decoder.weight
 * (used by standalone tests and untied models).
 *
 * Only targets need logits. The decoder is most of a BERT step (a vocab x
 * dim gemm per token, three times with backward) while masking makes 15% of
 * the tokens targets, so when the head feeds the per-token cross-entropy
 * directly (known at link time) and at most a quarter of the step's rows
 * are targets, the
 * decoder runs on those rows only: gather their normalised vectors, one
 * gemm, copy the logits into their rows (the other rows are left as they
 * were; the loss skips them); backward gathers the same rows of dy. Sums
 * equal the full decoder's up to the order of floating-point additions.
 * Steps without targets (predict, whose labels are all -1), with more
 * (language models) and standalone layers compute every row. The targets
 * are counted on the host in ctx->labels_host, the copy the trainer's
 * staging (and eval and predict) already hold; only a caller without one
 * (unit tests, tools) costs a download of n len ints, a sync on a GPU. The
 * row list itself is built on the device (target_rows), so nothing is
 * uploaded in the step.
 * The logits gradient follows the same rows: the loss writes only target
 * rows and backward reads only those, so the head's zero_dy clears just
 * them (fill_rows) instead of the model clearing all (n, len, vocab).
 * The gathered decoder runs on the target count rounded up to ROW_BUCKET
 * rows (the extra rows zero, their logits never copied, their gradients
 * zero): the count changes every step, and bucketing keeps the set of
 * product shapes small, so a backend that plans per shape (cuBLASLt's
 * algorithm per shape on CUDA) plans a handful of them in the first steps
 * instead of a new one every step.
 *
 * The dense part and the decoder are the backend's linear ops (bias fused
 * into the product on CUDA).
 *
 * pooler on (n, len, dim) -> (n, dim): tanh(x[:, 0] W^T + b), BERT's
 * BertPooler. The first token's rows are read in place through the gemm's
 * leading dimension (len dim), which the linear ops (contiguous rows) do
 * not take, so the pooler keeps gemm + bias_add on its n rows. A normal
 * dense layer then classifies. */
#include <stdlib.h>
#include <string.h>

#include "core/layers/seq_internal.h"

/* Rows of the gathered decoder are rounded up to a multiple of this. */
#define ROW_BUCKET 16

static int row_bucket(int k) { return (k + ROW_BUCKET - 1) / ROW_BUCKET * ROW_BUCKET; }

/* ---- mlm_head ---- */

static const dlt_key_spec mlm_keys[] = {
    { "vocab", DLT_KEY_INT, NULL, "output classes (the tied embedding's vocab)" },
    { "tie", DLT_KEY_STR, "", "embedding layer whose weight is the decoder; empty: own weight" },
    { "eps", DLT_KEY_FLOAT, "1e-5", "layer norm epsilon (BERT uses 1e-12)" },
    { NULL, 0, NULL, NULL },
};

typedef struct {
    int len, dim, vocab;
    float eps;
    int wd, bd, gn, bn, bias, dec;      /* parameter indices; dec = -1 when tied */
    const dlt_param *tied;              /* the embedding's weight once linked */
    float *pre, *act, *hn, *mean, *rstd; /* (n, len, dim) x3, (n, len) x2 */
    int sparse;                         /* linked in front of the per-token loss */
    int cap;                            /* most target rows for the gathered decoder */
    int cap_rows;                       /* cap rounded up to ROW_BUCKET: workspace rows */
    int k;                              /* this step's target rows; -1: every row */
    float *idx;                         /* (n len) target row indices as floats, backend */
    int32_t *lab_host;                  /* (n len) host copy of the labels */
} mlm_priv;

static dlt_status mlm_setup(dlt_layer *l)
{
    const dlt_shape *xs = &l->x[0].shape;
    if (!dlt_seq_is_3d(xs)) {
        char b[96];
        return DLT_LAYER_ERR(l, DLT_ERR_SHAPE, "input %s is not (n, len, dim)",
                             dlt_shape_str(xs, b, sizeof b));
    }
    long vocab;
    DLT_CHECK(dlt_spec_int_min(l, "vocab", 1, &vocab));
    double eps = dlt_spec_float(l->spec, mlm_keys, "eps");
    if (!(eps > 0.0)) return DLT_LAYER_ERR(l, DLT_ERR_CONFIG, "eps must be > 0 (got %g)", eps);
    const int64_t n = xs->d[0], L = xs->d[1], D = xs->d[2], rows = n * L;
    /* the host copy of the labels lives at the end of the private struct:
     * one allocation, freed with it */
    mlm_priv *p = calloc(1, sizeof *p + (size_t)rows * sizeof(int32_t));
    if (!p) return DLT_LAYER_ERR(l, DLT_ERR_NOMEM, "out of memory");
    l->priv = p;
    p->lab_host = (int32_t *)(p + 1);
    p->len = (int)L;
    p->dim = (int)D;
    p->vocab = (int)vocab;
    p->eps = (float)eps;
    p->k = -1;
    /* BERT's 15% masking fits a quarter of the rows; with more targets (a
     * language model's every row) gathering saves nothing: all rows */
    p->cap = (int)((rows + 3) / 4);
    p->cap_rows = row_bucket(p->cap);
    p->wd = dlt_layer_add_param(l, "dense.weight", (dlt_shape){ 2, { D, D } },
                                DLT_INIT_UNIFORM_FAN_IN, D);
    p->bd = dlt_layer_add_param(l, "dense.bias", (dlt_shape){ 1, { D } }, DLT_INIT_UNIFORM_FAN_IN,
                                D);
    p->gn = dlt_layer_add_param(l, "norm.weight", (dlt_shape){ 1, { D } }, DLT_INIT_ONE, D);
    p->bn = dlt_layer_add_param(l, "norm.bias", (dlt_shape){ 1, { D } }, DLT_INIT_ZERO, D);
    p->bias = dlt_layer_add_param(l, "decoder.bias", (dlt_shape){ 1, { vocab } }, DLT_INIT_ZERO,
                                  D);
    p->dec = -1;
    const char *tie = dlt_spec_str(l->spec, mlm_keys, "tie");
    if (!tie || !tie[0])
        p->dec = dlt_layer_add_param(l, "decoder.weight", (dlt_shape){ 2, { vocab, D } },
                                     DLT_INIT_UNIFORM_FAN_IN, D);
    dlt_layer_add_buffer(l, &p->pre, rows * D);
    dlt_layer_add_buffer(l, &p->act, rows * D);
    dlt_layer_add_buffer(l, &p->hn, rows * D);
    dlt_layer_add_buffer(l, &p->mean, rows);
    dlt_layer_add_buffer(l, &p->rstd, rows);
    dlt_layer_add_buffer(l, &p->idx, rows);
    l->y.shape = (dlt_shape){ 3, { n, L, vocab } };
    /* backward: dhn, dact, dpre (rows, D) then the targets' dy (cap_rows, V),
     * hn and dhn (cap_rows, D); forward uses the targets' part only */
    l->workspace_bytes =
        (size_t)(3 * rows * D + (int64_t)p->cap_rows * (vocab + 2 * D)) * sizeof(float);
    l->flops = 2.0 * (double)L * D * (D + vocab);
    return DLT_OK;
}

/* The decoder weight (vocab, dim): own or tied; NULL if a tie is unresolved. */
static const dlt_param *mlm_decoder(const dlt_layer *l)
{
    const mlm_priv *p = l->priv;
    return p->dec >= 0 ? &l->params[p->dec] : p->tied;
}

/* Sets p->k and p->idx: the rows whose label is a target, when only those
 * rows' logits matter (the head feeds the per-token loss and the step has
 * labels with 1 to cap targets). Otherwise k = -1: every row, as for
 * predict (labels all -1, every position read) and language models (every
 * row a target). */
static dlt_status mlm_targets(dlt_layer *l, const dlt_step_ctx *ctx, int rows)
{
    mlm_priv *p = l->priv;
    p->k = -1;
    if (!p->sparse || !ctx->labels) return DLT_OK;
    const int32_t *lab = ctx->labels_host;
    if (!lab) {   /* no host copy from the caller: fetch one (a sync on a GPU) */
        DLT_CHECK(l->be->download(l->be, p->lab_host, ctx->labels, (size_t)rows * sizeof(int32_t)));
        lab = p->lab_host;
    }
    int k = 0;
    for (int r = 0; r < rows; r++) k += lab[r] >= 0;
    if (k == 0 || k > p->cap) return DLT_OK;
    /* the host needs only the count (product sizes); the list itself is
     * built where it is used */
    DLT_CHECK(l->be->target_rows(l->be, rows, ctx->labels, p->idx));
    p->k = k;
    return DLT_OK;
}

static dlt_status mlm_forward(dlt_layer *l, const dlt_step_ctx *ctx, int n)
{
    mlm_priv *p = l->priv;
    dlt_backend *be = l->be;
    const dlt_param *P = l->params, *E = mlm_decoder(l);
    if (!E) return DLT_LAYER_ERR(l, DLT_ERR_INVALID, "tie to '%s' is not resolved (only a model "
                                 "links layers)", dlt_spec_str(l->spec, mlm_keys, "tie"));
    const int rows = n * p->len, D = p->dim, V = p->vocab;
    DLT_CHECK(be->linear_fwd(be, rows, D, D, l->x[0].data, P[p->wd].w, P[p->bd].w, p->pre));
    DLT_CHECK(be->act_fwd(be, DLT_ACT_GELU, (size_t)rows * D, p->pre, p->act));
    DLT_CHECK(be->layernorm_fwd(be, rows, D, p->eps, p->act, P[p->gn].w, P[p->bn].w, p->hn,
                                p->mean, p->rstd));
    DLT_CHECK(mlm_targets(l, ctx, rows));
    if (p->k < 0) return be->linear_fwd(be, rows, D, V, p->hn, E->w, P[p->bias].w, l->y.data);
    /* the full-vocabulary decoder on the target rows only: gather their hn
     * rows, one gemm, copy the logits into their rows. Other rows keep
     * whatever they held (the loss never reads them; zeroing them would
     * write the whole (rows, V) tensor every step, 128 MiB for BERT-tiny's
     * batch of 64 x 64) */
    float *lc = l->workspace, *hc = lc + (size_t)p->cap_rows * V; /* (cap_rows, V), (.., D) */
    const int m = p->k, mb = row_bucket(m);
    DLT_CHECK(be->embedding_fwd(be, m, D, rows, p->idx, p->hn, hc));
    DLT_CHECK(be->fill(be, hc + (size_t)m * D, (size_t)(mb - m) * D, 0.0f));
    DLT_CHECK(be->linear_fwd(be, mb, D, V, hc, E->w, P[p->bias].w, lc));
    /* scatter the logits into their rows in two ops, not one copy per row
     * (hundreds of launches a step on a GPU): clear the rows, then add */
    DLT_CHECK(be->fill_rows(be, m, V, rows, p->idx, 0.0f, l->y.data));
    return be->embedding_bwd(be, m, V, rows, p->idx, lc, -1, l->y.data);
}

/* dhn (rows, D) = dy E, E->g += dy^T hn, decoder bias += sum dy: over
 * every row, or over the forward's target rows (the only rows the loss
 * writes and mlm_zero_dy clears; the others' dy is stale and never read). */
static dlt_status mlm_decoder_bwd(dlt_layer *l, const dlt_param *E, int rows, float *dhn,
                                  float *chunk)
{
    mlm_priv *p = l->priv;
    dlt_backend *be = l->be;
    const dlt_param *P = l->params;
    const int D = p->dim, V = p->vocab;
    const float *dy = l->dy.data;
    if (p->k < 0) {
        DLT_CHECK(be->linear_bwd_w(be, rows, D, V, p->hn, dy, E->g, P[p->bias].g));
        return be->gemm(be, 0, 0, rows, D, V, 1.0f, dy, V, E->w, D, 0.0f, dhn, D);
    }
    /* (cap_rows, V), (cap_rows, D) x2; rows m .. mb of dyc and hc are zero */
    float *dyc = chunk, *hc = dyc + (size_t)p->cap_rows * V, *dhc = hc + (size_t)p->cap_rows * D;
    const int m = p->k, mb = row_bucket(m);
    DLT_CHECK(be->fill(be, dhn, (size_t)rows * D, 0.0f));
    DLT_CHECK(be->embedding_fwd(be, m, V, rows, p->idx, dy, dyc));
    DLT_CHECK(be->fill(be, dyc + (size_t)m * V, (size_t)(mb - m) * V, 0.0f));
    DLT_CHECK(be->embedding_fwd(be, m, D, rows, p->idx, p->hn, hc));
    DLT_CHECK(be->fill(be, hc + (size_t)m * D, (size_t)(mb - m) * D, 0.0f));
    DLT_CHECK(be->linear_bwd_w(be, mb, D, V, hc, dyc, E->g, P[p->bias].g));
    DLT_CHECK(be->gemm(be, 0, 0, m, D, V, 1.0f, dyc, V, E->w, D, 0.0f, dhc, D));
    return be->embedding_bwd(be, m, D, rows, p->idx, dhc, -1, dhn);
}

/* Contract (layer.h zero_dy): the rows of dy backward reads, i.e. the
 * forward's target rows when it gathered them, else all n len rows. */
static dlt_status mlm_zero_dy(dlt_layer *l, int n)
{
    mlm_priv *p = l->priv;
    dlt_backend *be = l->be;
    const int rows = n * p->len;
    if (p->k < 0) return be->fill(be, l->dy.data, (size_t)rows * p->vocab, 0.0f);
    return be->fill_rows(be, p->k, p->vocab, rows, p->idx, 0.0f, l->dy.data);
}

static dlt_status mlm_backward(dlt_layer *l, const dlt_step_ctx *ctx, int n)
{
    mlm_priv *p = l->priv;
    dlt_backend *be = l->be;
    const dlt_param *P = l->params, *E = mlm_decoder(l);
    if (!E) return DLT_LAYER_ERR(l, DLT_ERR_INVALID, "tie is not resolved");
    const int rows = n * p->len, D = p->dim;
    const size_t nd = (size_t)rows * D;
    float *dhn = l->workspace, *dact = dhn + nd, *dpre = dact + nd;
    DLT_CHECK(mlm_decoder_bwd(l, E, rows, dhn, dpre + nd));
    DLT_CHECK(be->fill(be, dact, 2 * nd, 0.0f));
    DLT_CHECK(be->layernorm_bwd(be, rows, D, p->act, dhn, P[p->gn].w, p->mean, p->rstd, dact,
                                P[p->gn].g, P[p->bn].g));
    DLT_CHECK(be->act_bwd(be, DLT_ACT_GELU, nd, p->pre, p->act, dact, dpre));
    DLT_CHECK(be->linear_bwd_w(be, rows, D, D, l->x[0].data, dpre, P[p->wd].g, P[p->bd].g));
    if (l->dx[0].data)
        DLT_CHECK(be->gemm(be, 0, 0, rows, D, D, 1.0f, dpre, D, P[p->wd].w, D, 1.0f,
                           l->dx[0].data, D));
    return DLT_OK;
}

const dlt_layer_ops dlt_layer_mlm_head = {
    .type = "mlm_head",
    .keys = mlm_keys,
    .n_inputs = 1,
    .is_loss = 0,
    .setup = mlm_setup,
    .init = NULL,
    .forward = mlm_forward,
    .backward = mlm_backward,
    .free = NULL,
    .zero_dy = mlm_zero_dy,
};

dlt_status dlt_layers_link(dlt_layer *layers, int n)
{
    for (int k = 0; k < n; k++) {
        dlt_layer *l = &layers[k];
        if (l->ops != &dlt_layer_mlm_head) continue;
        mlm_priv *p = l->priv;
        /* followed by the per-token softmax cross-entropy on its logits:
         * labels line up with the rows and only targets are read */
        const dlt_layer *next = k + 1 < n ? &layers[k + 1] : NULL;
        p->sparse = next && next->ops->is_loss && next->x[0].data == l->y.data &&
                    strcmp(next->ops->type, "softmax_cross_entropy") == 0;
        if (p->dec >= 0) continue;
        const char *tie = dlt_spec_str(l->spec, mlm_keys, "tie");
        int src = -1;
        for (int j = 0; j < n && src < 0; j++)
            if (strcmp(layers[j].spec->name, tie) == 0) src = j;
        if (src < 0)
            return DLT_LAYER_ERR(l, DLT_ERR_CONFIG, "tie: no layer is named '%s'", tie);
        const dlt_layer *e = &layers[src];
        if (e->ops != &dlt_layer_embedding)
            return DLT_LAYER_ERR(l, DLT_ERR_CONFIG, "tie: layer '%s' is a %s, not an embedding",
                                 tie, e->ops->type);
        const dlt_shape *ws = &e->params[0].shape;
        if (ws->d[0] != p->vocab || ws->d[1] != p->dim)
            return DLT_LAYER_ERR(l, DLT_ERR_CONFIG, "tie: embedding '%s' is %lld x %lld, the head "
                                 "needs vocab %d x dim %d", tie, (long long)ws->d[0],
                                 (long long)ws->d[1], p->vocab, p->dim);
        p->tied = &e->params[0];
    }
    return DLT_OK;
}

/* ---- pooler ---- */

static const dlt_key_spec pooler_keys[] = {
    { NULL, 0, NULL, NULL },
};

static dlt_status pooler_setup(dlt_layer *l)
{
    const dlt_shape *xs = &l->x[0].shape;
    if (!dlt_seq_is_3d(xs)) {
        char b[96];
        return DLT_LAYER_ERR(l, DLT_ERR_SHAPE, "input %s is not (n, len, dim)",
                             dlt_shape_str(xs, b, sizeof b));
    }
    const int64_t D = xs->d[2];
    dlt_layer_add_param(l, "dense.weight", (dlt_shape){ 2, { D, D } }, DLT_INIT_UNIFORM_FAN_IN, D);
    dlt_layer_add_param(l, "dense.bias", (dlt_shape){ 1, { D } }, DLT_INIT_UNIFORM_FAN_IN, D);
    l->y.shape = (dlt_shape){ 2, { xs->d[0], D } };
    l->workspace_bytes = (size_t)(xs->d[0] * D) * sizeof(float);
    l->flops = 2.0 * (double)D * D;
    return DLT_OK;
}

static dlt_status pooler_forward(dlt_layer *l, const dlt_step_ctx *ctx, int n)
{
    dlt_backend *be = l->be;
    const int L = (int)l->x[0].shape.d[1], D = (int)l->x[0].shape.d[2];
    DLT_CHECK(be->gemm(be, 0, 1, n, D, D, 1.0f, l->x[0].data, L * D, l->params[0].w, D, 0.0f,
                       l->y.data, D));
    DLT_CHECK(be->bias_add(be, n, D, 1, l->params[1].w, l->y.data));
    return be->act_fwd(be, DLT_ACT_TANH, (size_t)n * D, l->y.data, l->y.data);
}

static dlt_status pooler_backward(dlt_layer *l, const dlt_step_ctx *ctx, int n)
{
    dlt_backend *be = l->be;
    const int L = (int)l->x[0].shape.d[1], D = (int)l->x[0].shape.d[2];
    float *dpre = l->workspace;   /* (n, D) */
    DLT_CHECK(be->fill(be, dpre, (size_t)n * D, 0.0f));
    /* tanh' comes from the output alone, so y stands in for the input */
    DLT_CHECK(be->act_bwd(be, DLT_ACT_TANH, (size_t)n * D, l->y.data, l->y.data, l->dy.data, dpre));
    DLT_CHECK(be->gemm(be, 1, 0, D, D, n, 1.0f, dpre, D, l->x[0].data, L * D, 1.0f,
                       l->params[0].g, D));
    DLT_CHECK(be->bias_grad(be, n, D, 1, dpre, l->params[1].g));
    if (l->dx[0].data)
        DLT_CHECK(be->gemm(be, 0, 0, n, D, D, 1.0f, dpre, D, l->params[0].w, D, 1.0f,
                           l->dx[0].data, L * D));
    return DLT_OK;
}

const dlt_layer_ops dlt_layer_pooler = {
    .type = "pooler",
    .keys = pooler_keys,
    .n_inputs = 1,
    .is_loss = 0,
    .setup = pooler_setup,
    .init = NULL,
    .forward = pooler_forward,
    .backward = pooler_backward,
    .free = NULL,
};
