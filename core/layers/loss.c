/* Loss layers: "softmax_cross_entropy" (torch.nn.CrossEntropyLoss per
 * sample, i.e. reduction='none') and "mse" (torch.nn.MSELoss per sample:
 * the mean over the sample's elements).
 *
 * A loss layer's output y is the per-sample loss (n); the caller (the model,
 * the training loop) reduces it, so the same numbers serve the training mean,
 * evaluation sums and logging. Backward ignores dy and accumulates
 * scale * d(loss_i)/d(logits) for every sample, with the scale set by the
 * model from loss_scale (1 / global batch for a mean): this is the only place
 * the scale enters, and a standalone layer keeps scale 1, the gradient of the
 * sum. Cross-entropy also records per-sample correctness (first argmax equals
 * the label) for accuracy. mse takes float targets from ctx->targets, or
 * builds one-hot targets from ctx->labels in a per-step buffer.
 *
 * Cross-entropy on (n, len, k) logits is per token (language models): labels
 * are (n, len), tokens labelled < 0 are ignored, a sample's loss is the sum
 * over its counted tokens, correct counts its correct tokens and count (n)
 * its counted tokens, so that the caller can average over all counted tokens
 * of the global batch (loss_scale = 1 / that number). */
#include <stdlib.h>

#include "core/layers/layers_internal.h"

static const dlt_key_spec loss_keys[] = {
    { NULL, 0, NULL, NULL },
};

typedef struct {
    int k;                 /* classes / features per sample */
    float scale;           /* d(total)/d(loss_i), set by dlt_loss_set_scale */
    float *probs;          /* (n, k) softmax, cross-entropy only */
    float *correct;        /* (n) cross-entropy only */
    float *onehot;         /* (n, k) mse targets built from labels */
    int len;               /* tokens per sample of per-token cross-entropy, 0 otherwise */
    float *count;          /* (n) counted tokens, per-token cross-entropy only */
    const float *target;   /* (n, k) what the last mse forward compared with */
} loss_priv;

static dlt_status loss_priv_new(dlt_layer *l, loss_priv **out)
{
    loss_priv *p = calloc(1, sizeof *p);
    if (!p) return DLT_LAYER_ERR(l, DLT_ERR_NOMEM, "out of memory");
    l->priv = p;
    p->scale = 1.0f;
    p->k = (int)dlt_shape_sample_numel(&l->x[0].shape);
    l->y.shape = (dlt_shape){ 1, { l->x[0].shape.d[0] } };
    *out = p;
    return DLT_OK;
}

void dlt_loss_set_scale(dlt_layer *l, float scale)
{
    loss_priv *p = l->priv;
    p->scale = scale;
}

const float *dlt_loss_correct(const dlt_layer *l)
{
    const loss_priv *p = l->priv;
    return p->correct;
}

const float *dlt_loss_count(const dlt_layer *l)
{
    const loss_priv *p = l->priv;
    return p->count;
}

/* ---- softmax cross-entropy ---- */

static dlt_status xent_setup(dlt_layer *l)
{
    const dlt_shape *xs = &l->x[0].shape;
    if (xs->ndim != 2 && xs->ndim != 3) {
        char b[96];
        return DLT_LAYER_ERR(l, DLT_ERR_SHAPE,
                             "logits %s are not (n, classes) or (n, len, classes); add a "
                             "flatten or dense layer", dlt_shape_str(xs, b, sizeof b));
    }
    loss_priv *p = NULL;
    DLT_CHECK(loss_priv_new(l, &p));
    int64_t n = xs->d[0];
    if (xs->ndim == 3) {
        if (!l->be->softmax_xent_seq_fwd || !l->be->softmax_xent_seq_bwd)
            return DLT_LAYER_ERR(l, DLT_ERR_UNSUPPORTED, "per-token cross-entropy needs op "
                                 "softmax_xent_seq_fwd, not supported on backend %s",
                                 l->be->name);
        p->len = (int)xs->d[1];
        p->k = (int)xs->d[2];
        dlt_layer_add_buffer(l, &p->correct, n);
        dlt_layer_add_buffer(l, &p->count, n);
        return DLT_OK;
    }
    dlt_layer_add_buffer(l, &p->probs, n * p->k);
    dlt_layer_add_buffer(l, &p->correct, n);
    return DLT_OK;
}

static dlt_status xent_forward(dlt_layer *l, const dlt_step_ctx *ctx, int n)
{
    loss_priv *p = l->priv;
    if (!ctx->labels) return DLT_LAYER_ERR(l, DLT_ERR_INVALID, "no labels given");
    if (p->len)
        return l->be->softmax_xent_seq_fwd(l->be, n, p->len, p->k, l->x[0].data, ctx->labels,
                                           l->y.data, p->correct, p->count);
    return l->be->softmax_xent_fwd(l->be, n, p->k, l->x[0].data, ctx->labels, p->probs,
                                   l->y.data, p->correct);
}

static dlt_status xent_backward(dlt_layer *l, const dlt_step_ctx *ctx, int n)
{
    loss_priv *p = l->priv;
    if (!l->dx[0].data) return DLT_OK;
    if (!ctx->labels) return DLT_LAYER_ERR(l, DLT_ERR_INVALID, "no labels given");
    if (p->len)
        return l->be->softmax_xent_seq_bwd(l->be, n * p->len, p->k, l->x[0].data, ctx->labels,
                                           p->scale, l->dx[0].data);
    return l->be->softmax_xent_bwd(l->be, n, p->k, p->probs, ctx->labels, p->scale,
                                   l->dx[0].data);
}

/* ---- mean squared error ---- */

static dlt_status mse_setup(dlt_layer *l)
{
    if (l->x[0].shape.ndim < 2)
        return DLT_LAYER_ERR(l, DLT_ERR_SHAPE, "input needs a batch and a feature dimension");
    loss_priv *p = NULL;
    DLT_CHECK(loss_priv_new(l, &p));
    dlt_layer_add_buffer(l, &p->onehot, l->x[0].shape.d[0] * p->k);
    return DLT_OK;
}

static dlt_status mse_forward(dlt_layer *l, const dlt_step_ctx *ctx, int n)
{
    loss_priv *p = l->priv;
    dlt_backend *be = l->be;
    if (ctx->targets) {
        p->target = ctx->targets;
    } else if (ctx->labels) {
        DLT_CHECK(be->onehot(be, n, p->k, ctx->labels, p->onehot));
        p->target = p->onehot;
    } else {
        return DLT_LAYER_ERR(l, DLT_ERR_INVALID, "neither targets nor labels given");
    }
    return be->mse_fwd(be, n, p->k, l->x[0].data, p->target, l->y.data);
}

static dlt_status mse_backward(dlt_layer *l, const dlt_step_ctx *ctx, int n)
{
    loss_priv *p = l->priv;
    if (!l->dx[0].data) return DLT_OK;
    if (!p->target) return DLT_LAYER_ERR(l, DLT_ERR_INVALID, "backward before forward");
    return l->be->mse_bwd(l->be, n, p->k, l->x[0].data, p->target, p->scale, l->dx[0].data);
}

const dlt_layer_ops dlt_layer_softmax_xent = {
    .type = "softmax_cross_entropy",
    .keys = loss_keys,
    .n_inputs = 1,
    .is_loss = 1,
    .setup = xent_setup,
    .init = NULL,
    .forward = xent_forward,
    .backward = xent_backward,
    .free = NULL,
};

const dlt_layer_ops dlt_layer_mse = {
    .type = "mse",
    .keys = loss_keys,
    .n_inputs = 1,
    .is_loss = 1,
    .setup = mse_setup,
    .init = NULL,
    .forward = mse_forward,
    .backward = mse_backward,
    .free = NULL,
};
