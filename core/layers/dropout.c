/* "dropout": inverted dropout (kept values scaled by 1/(1-rate)), as
 * torch.nn.Dropout in distribution (not bit for bit: the mask comes from
 * dltrain's counter-based generator).
 *
 * The mask of a step is a pure function of (seed, step, layer index, global
 * element index): key = hash(seed, step, index) and the first element of this
 * rank is sample0 * per-sample elements. A sample therefore gets the same mask
 * whichever rank holds it and however the global batch is split, and a
 * resumed run draws the same masks. The mask is a per-step buffer kept for
 * backward. Evaluation (and rate 0) is the identity. */
#include <stdlib.h>

#include "core/layers/layers_internal.h"

static const dlt_key_spec dropout_keys[] = {
    { "rate", DLT_KEY_FLOAT, "0.5", "probability of zeroing an element, in [0, 1)" },
    { NULL, 0, NULL, NULL },
};

typedef struct {
    float rate;
    float *mask;   /* (n, sample) 0 or 1/(1-rate) */
    int masked;    /* the last forward applied the mask */
} dropout_priv;

static dlt_status dropout_setup(dlt_layer *l)
{
    double rate = dlt_spec_float(l->spec, dropout_keys, "rate");
    if (!(rate >= 0.0 && rate < 1.0))
        return DLT_LAYER_ERR(l, DLT_ERR_CONFIG, "rate must be in [0, 1) (got %g)", rate);
    dropout_priv *p = calloc(1, sizeof *p);
    if (!p) return DLT_LAYER_ERR(l, DLT_ERR_NOMEM, "out of memory");
    l->priv = p;
    p->rate = (float)rate;
    l->y.shape = l->x[0].shape;
    dlt_layer_add_buffer(l, &p->mask, dlt_shape_numel(&l->x[0].shape));
    return DLT_OK;
}

static dlt_status dropout_forward(dlt_layer *l, const dlt_step_ctx *ctx, int n)
{
    dropout_priv *p = l->priv;
    dlt_backend *be = l->be;
    int64_t per = dlt_shape_sample_numel(&l->x[0].shape);
    size_t len = (size_t)n * (size_t)per;
    p->masked = ctx->train && p->rate > 0.0f;
    if (!p->masked) return be->copy(be, l->y.data, l->x[0].data, len * sizeof(float));
    uint64_t key = dlt_hash_combine(dlt_hash_combine(ctx->seed, (uint64_t)ctx->step),
                                    (uint64_t)l->index);
    uint64_t first = (uint64_t)ctx->sample0 * (uint64_t)per;
    return be->dropout_fwd(be, len, p->rate, key, first, l->x[0].data, l->y.data, p->mask);
}

static dlt_status dropout_backward(dlt_layer *l, const dlt_step_ctx *ctx, int n)
{
    dropout_priv *p = l->priv;
    dlt_backend *be = l->be;
    if (!l->dx[0].data) return DLT_OK;
    size_t len = (size_t)n * (size_t)dlt_shape_sample_numel(&l->x[0].shape);
    if (!p->masked) return be->axpy(be, len, 1.0f, l->dy.data, l->dx[0].data);
    return be->mul_acc(be, len, l->dy.data, p->mask, l->dx[0].data);
}

const dlt_layer_ops dlt_layer_dropout = {
    .type = "dropout",
    .keys = dropout_keys,
    .n_inputs = 1,
    .is_loss = 0,
    .setup = dropout_setup,
    .init = NULL,
    .forward = dropout_forward,
    .backward = dropout_backward,
    .free = NULL,
};
