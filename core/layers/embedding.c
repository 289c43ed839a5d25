/* Embedding layers of token models: "embedding" (token ids to vectors, as
 * torch.nn.Embedding with padding_idx), "position_embedding" (learned
 * absolute positions added to the input, BERT) and "token_type_embedding"
 * (BERT's segment embedding; dltrain's data has a single segment, so every
 * token has type 0 and the layer adds row 0 of its table).
 *
 * The embedding reads token ids as floats from its input (the model input
 * is a float tensor; ids are exact below 2^24), (n, len) -> (n, len, dim).
 * Its input has no gradient. The padding row starts at zero and never
 * receives a gradient, as in torch, so it stays zero under plain SGD.
 *
 * The two additive embeddings need no op of their own: adding rows 0..len-1
 * of a (max_len, dim) table to every sample is bias_add with c = len dim,
 * and adding one row to every token is bias_add with c = dim; their
 * gradients are the matching bias_grad sums (as gemms with a vector of
 * ones, dlt_seq_bias_add/grad).
 *
 * Tables are initialised N(0, init_std^2) (BERT's 0.02 by default; torch's
 * nn.Embedding uses 1). */
#include <stdlib.h>

#include "core/layers/seq_internal.h"

void dlt_seq_init_normal(dlt_layer *l, int param, double std, int64_t zero_row, dlt_rng *rng)
{
    dlt_param *p = &l->params[param];
    size_t len = (size_t)dlt_shape_numel(&p->shape);
    int64_t row = p->shape.ndim > 1 ? dlt_shape_sample_numel(&p->shape) : 1;
    float *h = malloc(len * sizeof *h + 1);
    if (!h) return;
    for (size_t i = 0; i < len; i++) h[i] = (float)(std * dlt_rng_normal(rng));
    if (zero_row >= 0 && zero_row < p->shape.d[0])
        for (int64_t j = 0; j < row; j++) h[zero_row * row + j] = 0.0f;
    (void)l->be->upload(l->be, p->w, h, len * sizeof *h);
    free(h);
}

/* ---- embedding ---- */

static const dlt_key_spec embedding_keys[] = {
    { "vocab", DLT_KEY_INT, NULL, "number of token ids (ids in [0, vocab))" },
    { "dim", DLT_KEY_INT, NULL, "embedding width" },
    { "padding_idx", DLT_KEY_INT, "-1", "id whose row stays zero and gets no gradient; -1: none" },
    { "init_std", DLT_KEY_FLOAT, "0.02", "standard deviation of the N(0, s^2) initialisation" },
    { NULL, 0, NULL, NULL },
};

typedef struct {
    int vocab, dim, pad;
    double std;
} emb_priv;

static dlt_status embedding_setup(dlt_layer *l)
{
    long vocab, dim;
    DLT_CHECK(dlt_spec_int_min(l, "vocab", 1, &vocab));
    DLT_CHECK(dlt_spec_int_min(l, "dim", 1, &dim));
    long pad = dlt_spec_int(l->spec, embedding_keys, "padding_idx");
    if (pad < -1 || pad >= vocab)
        return DLT_LAYER_ERR(l, DLT_ERR_CONFIG, "padding_idx %ld is not -1 or in [0, %ld)", pad,
                             vocab);
    const dlt_shape *xs = &l->x[0].shape;
    if (xs->ndim < 2 || xs->ndim > 3) {
        char b[96];
        return DLT_LAYER_ERR(l, DLT_ERR_SHAPE, "input %s is not token ids (n, len)",
                             dlt_shape_str(xs, b, sizeof b));
    }
    emb_priv *p = calloc(1, sizeof *p);
    if (!p) return DLT_LAYER_ERR(l, DLT_ERR_NOMEM, "out of memory");
    l->priv = p;
    p->vocab = (int)vocab;
    p->dim = (int)dim;
    p->pad = (int)pad;
    p->std = dlt_spec_float(l->spec, embedding_keys, "init_std");
    l->y.shape = *xs;
    l->y.shape.d[l->y.shape.ndim++] = dim;
    dlt_layer_add_param(l, "weight", (dlt_shape){ 2, { vocab, dim } }, DLT_INIT_ZERO, dim);
    return DLT_OK;
}

static void embedding_init(dlt_layer *l, dlt_rng *rng)
{
    emb_priv *p = l->priv;
    dlt_seq_init_normal(l, 0, p->std, p->pad, rng);
}

static dlt_status embedding_forward(dlt_layer *l, const dlt_step_ctx *ctx, int n)
{
    emb_priv *p = l->priv;
    int t = n * (int)dlt_shape_sample_numel(&l->x[0].shape);
    dlt_status st = l->be->embedding_fwd(l->be, t, p->dim, p->vocab, l->x[0].data,
                                         l->params[0].w, l->y.data);
    if (st != DLT_OK) return DLT_LAYER_ERR(l, st, "%s", dlt_last_error());
    return DLT_OK;
}

static dlt_status embedding_backward(dlt_layer *l, const dlt_step_ctx *ctx, int n)
{
    emb_priv *p = l->priv;
    int t = n * (int)dlt_shape_sample_numel(&l->x[0].shape);
    return l->be->embedding_bwd(l->be, t, p->dim, p->vocab, l->x[0].data, l->dy.data, p->pad,
                                l->params[0].g);
}

const dlt_layer_ops dlt_layer_embedding = {
    .type = "embedding",
    .keys = embedding_keys,
    .n_inputs = 1,
    .is_loss = 0,
    .setup = embedding_setup,
    .init = embedding_init,
    .forward = embedding_forward,
    .backward = embedding_backward,
    .free = NULL,
};

/* ---- position and token-type embeddings: y = x + table rows ---- */

static const dlt_key_spec position_keys[] = {
    { "max_len", DLT_KEY_INT, NULL, "longest sequence (rows of the position table)" },
    { "init_std", DLT_KEY_FLOAT, "0.02", "standard deviation of the N(0, s^2) initialisation" },
    { NULL, 0, NULL, NULL },
};

static const dlt_key_spec token_type_keys[] = {
    { "types", DLT_KEY_INT, "2", "rows of the token-type table (every token has type 0)" },
    { "init_std", DLT_KEY_FLOAT, "0.02", "standard deviation of the N(0, s^2) initialisation" },
    { NULL, 0, NULL, NULL },
};

typedef struct {
    int per;      /* bias_add channels: len dim (positions) or dim (types) */
    int rep;      /* rows per sample the table is added to: 1 or len */
    double std;
    float *ones;  /* (max_batch rep) of 1 */
} addemb_priv;

/* Shared setup: table (rows, dim) added per sample (positions) or per token. */
static dlt_status addemb_setup(dlt_layer *l, const char *key, int per_token)
{
    long rows;
    DLT_CHECK(dlt_spec_int_min(l, key, 1, &rows));
    const dlt_shape *xs = &l->x[0].shape;
    if (!dlt_seq_is_3d(xs)) {
        char b[96];
        return DLT_LAYER_ERR(l, DLT_ERR_SHAPE, "input %s is not (n, len, dim)",
                             dlt_shape_str(xs, b, sizeof b));
    }
    int64_t len = xs->d[1], dim = xs->d[2];
    if (!per_token && len > rows)
        return DLT_LAYER_ERR(l, DLT_ERR_SHAPE, "sequences of %lld tokens exceed max_len %ld",
                             (long long)len, rows);
    addemb_priv *p = calloc(1, sizeof *p);
    if (!p) return DLT_LAYER_ERR(l, DLT_ERR_NOMEM, "out of memory");
    l->priv = p;
    p->per = (int)(per_token ? dim : len * dim);
    p->rep = per_token ? (int)len : 1;
    p->std = dlt_spec_float(l->spec, l->ops->keys, "init_std");
    l->y.shape = *xs;
    dlt_layer_add_param(l, "weight", (dlt_shape){ 2, { rows, dim } }, DLT_INIT_ZERO, dim);
    dlt_layer_add_buffer(l, &p->ones, xs->d[0] * p->rep);
    return DLT_OK;
}

static dlt_status position_setup(dlt_layer *l) { return addemb_setup(l, "max_len", 0); }
static dlt_status token_type_setup(dlt_layer *l) { return addemb_setup(l, "types", 1); }

static void addemb_init(dlt_layer *l, dlt_rng *rng)
{
    addemb_priv *p = l->priv;
    dlt_seq_init_normal(l, 0, p->std, -1, rng);
}

static dlt_status addemb_forward(dlt_layer *l, const dlt_step_ctx *ctx, int n)
{
    addemb_priv *p = l->priv;
    dlt_backend *be = l->be;
    size_t len = (size_t)n * (size_t)dlt_shape_sample_numel(&l->x[0].shape);
    DLT_CHECK(be->copy(be, l->y.data, l->x[0].data, len * sizeof(float)));
    DLT_CHECK(dlt_seq_ones(be, p->ones, n * p->rep));
    return dlt_seq_bias_add(be, n * p->rep, p->per, l->params[0].w, p->ones, l->y.data);
}

static dlt_status addemb_backward(dlt_layer *l, const dlt_step_ctx *ctx, int n)
{
    addemb_priv *p = l->priv;
    dlt_backend *be = l->be;
    size_t len = (size_t)n * (size_t)dlt_shape_sample_numel(&l->x[0].shape);
    if (l->dx[0].data) DLT_CHECK(be->axpy(be, len, 1.0f, l->dy.data, l->dx[0].data));
    return dlt_seq_bias_grad(be, n * p->rep, p->per, l->dy.data, p->ones, l->params[0].g);
}

const dlt_layer_ops dlt_layer_position_embedding = {
    .type = "position_embedding",
    .keys = position_keys,
    .n_inputs = 1,
    .is_loss = 0,
    .setup = position_setup,
    .init = addemb_init,
    .forward = addemb_forward,
    .backward = addemb_backward,
    .free = NULL,
};

const dlt_layer_ops dlt_layer_token_type_embedding = {
    .type = "token_type_embedding",
    .keys = token_type_keys,
    .n_inputs = 1,
    .is_loss = 0,
    .setup = token_type_setup,
    .init = addemb_init,
    .forward = addemb_forward,
    .backward = addemb_backward,
    .free = NULL,
};
