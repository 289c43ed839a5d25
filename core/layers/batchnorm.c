/* "batchnorm": batch normalisation per channel, as torch.nn.BatchNorm2d on
 * (n, c, h, w) and BatchNorm1d on (n, c).
 *
 * Training (ctx->train) normalises with the batch statistics and updates the
 * running ones (momentum, unbiased variance, as PyTorch); evaluation uses the
 * running statistics. The running statistics are *state*: they live in the
 * model's state arena (saved in checkpoints) and init() sets them to torch's
 * initial values (mean 0, var 1). The batch mean and 1/sqrt(var + eps) are
 * per-step buffers, kept from forward for backward.
 *
 * The backend computes dx, dgamma and dbeta in one pass; when the input's
 * gradient is not wanted (the model input), dx goes to the shared workspace,
 * which is why setup() asks for an input-sized workspace. Backward is only
 * defined after a training forward: dltrain never backpropagates in eval. */
#include <stdlib.h>

#include "core/layers/layers_internal.h"

static const dlt_key_spec bn_keys[] = {
    { "eps", DLT_KEY_FLOAT, "1e-5", "added to the variance for stability" },
    { "momentum", DLT_KEY_FLOAT, "0.1", "weight of the batch in the running statistics" },
    { NULL, 0, NULL, NULL },
};

typedef struct {
    int c, hw;
    float eps, momentum;
    float *run_mean, *run_var;      /* (c) state */
    float *save_mean, *save_invstd; /* (c) per step */
    int trained;                    /* the last forward used batch statistics */
} bn_priv;

static dlt_status bn_setup(dlt_layer *l)
{
    const dlt_shape *xs = &l->x[0].shape;
    if (xs->ndim != 2 && xs->ndim != 4) {
        char b[96];
        return DLT_LAYER_ERR(l, DLT_ERR_SHAPE, "input %s is neither (n, c) nor (n, c, h, w)",
                             dlt_shape_str(xs, b, sizeof b));
    }
    double eps = dlt_spec_float(l->spec, bn_keys, "eps");
    double mom = dlt_spec_float(l->spec, bn_keys, "momentum");
    if (!(eps > 0.0))
        return DLT_LAYER_ERR(l, DLT_ERR_CONFIG, "eps must be > 0 (got %g)", eps);
    if (!(mom >= 0.0 && mom <= 1.0))
        return DLT_LAYER_ERR(l, DLT_ERR_CONFIG, "momentum must be in [0, 1] (got %g)", mom);
    bn_priv *p = calloc(1, sizeof *p);
    if (!p) return DLT_LAYER_ERR(l, DLT_ERR_NOMEM, "out of memory");
    l->priv = p;
    p->c = (int)xs->d[1];
    p->hw = xs->ndim == 4 ? (int)(xs->d[2] * xs->d[3]) : 1;
    p->eps = (float)eps;
    p->momentum = (float)mom;
    l->y.shape = *xs;
    dlt_layer_add_param(l, "weight", (dlt_shape){ 1, { p->c } }, DLT_INIT_ONE, 0);
    dlt_layer_add_param(l, "bias", (dlt_shape){ 1, { p->c } }, DLT_INIT_ZERO, 0);
    dlt_layer_add_state(l, "running_mean", &p->run_mean, p->c);
    dlt_layer_add_state(l, "running_var", &p->run_var, p->c);
    dlt_layer_add_buffer(l, &p->save_mean, p->c);
    dlt_layer_add_buffer(l, &p->save_invstd, p->c);
    l->workspace_bytes = (size_t)dlt_shape_numel(xs) * sizeof(float);
    return DLT_OK;
}

/* torch's initial running statistics; the arena is zeroed, so only var. */
static void bn_init(dlt_layer *l, dlt_rng *rng)
{
    bn_priv *p = l->priv;
    (void)rng;
    (void)l->be->fill(l->be, p->run_var, (size_t)p->c, 1.0f);
}

static dlt_status bn_forward(dlt_layer *l, const dlt_step_ctx *ctx, int n)
{
    bn_priv *p = l->priv;
    dlt_backend *be = l->be;
    p->trained = ctx->train;
    if (!ctx->train)
        return be->bnorm_fwd_eval(be, n, p->c, p->hw, p->eps, l->x[0].data, l->params[0].w,
                                  l->params[1].w, p->run_mean, p->run_var, l->y.data);
    if ((int64_t)n * p->hw < 2)
        return DLT_LAYER_ERR(l, DLT_ERR_SHAPE,
                             "training needs more than one value per channel (batch %d)", n);
    return be->bnorm_fwd_train(be, n, p->c, p->hw, p->eps, p->momentum, l->x[0].data,
                               l->params[0].w, l->params[1].w, l->y.data, p->run_mean,
                               p->run_var, p->save_mean, p->save_invstd);
}

static dlt_status bn_backward(dlt_layer *l, const dlt_step_ctx *ctx, int n)
{
    bn_priv *p = l->priv;
    dlt_backend *be = l->be;
    if (!p->trained)
        return DLT_LAYER_ERR(l, DLT_ERR_UNSUPPORTED,
                             "backward after an evaluation forward is not supported");
    float *dx = l->dx[0].data;
    if (!dx) {
        /* the gradient is discarded; the op accumulates, so start from zero */
        dx = l->workspace;
        DLT_CHECK(be->fill(be, dx, (size_t)n * p->c * p->hw, 0.0f));
    }
    return be->bnorm_bwd(be, n, p->c, p->hw, l->x[0].data, l->dy.data, l->params[0].w,
                         p->save_mean, p->save_invstd, dx, l->params[0].g, l->params[1].g);
}

const dlt_layer_ops dlt_layer_batchnorm = {
    .type = "batchnorm",
    .keys = bn_keys,
    .n_inputs = 1,
    .is_loss = 0,
    .setup = bn_setup,
    .init = bn_init,
    .forward = bn_forward,
    .backward = bn_backward,
    .free = NULL,
};
