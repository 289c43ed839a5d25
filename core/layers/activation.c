/* Elementwise activations: "relu", "sigmoid", "tanh", "gelu" (exact,
 * x * Phi(x), as torch.nn.GELU()).
 *
 * One implementation serves all four: the layer table's type string selects
 * the backend's dlt_act at setup. The output keeps the input's shape; backward
 * passes both x and y so sigmoid and tanh need not recompute f(x). */
#include <stdlib.h>
#include <string.h>

#include "core/layers/layers_internal.h"

static const dlt_key_spec act_keys[] = {
    { NULL, 0, NULL, NULL },
};

typedef struct {
    dlt_act act;
} act_priv;

static dlt_status act_setup(dlt_layer *l)
{
    static const struct {
        const char *type;
        dlt_act act;
    } acts[] = {
        { "relu", DLT_ACT_RELU },
        { "sigmoid", DLT_ACT_SIGMOID },
        { "tanh", DLT_ACT_TANH },
        { "gelu", DLT_ACT_GELU },
    };
    act_priv *p = calloc(1, sizeof *p);
    if (!p) return DLT_LAYER_ERR(l, DLT_ERR_NOMEM, "out of memory");
    l->priv = p;
    for (size_t i = 0; i < sizeof acts / sizeof acts[0]; i++)
        if (strcmp(acts[i].type, l->ops->type) == 0) p->act = acts[i].act;
    l->y.shape = l->x[0].shape;
    return DLT_OK;
}

static dlt_status act_forward(dlt_layer *l, const dlt_step_ctx *ctx, int n)
{
    act_priv *p = l->priv;
    size_t len = (size_t)n * (size_t)dlt_shape_sample_numel(&l->x[0].shape);
    return l->be->act_fwd(l->be, p->act, len, l->x[0].data, l->y.data);
}

static dlt_status act_backward(dlt_layer *l, const dlt_step_ctx *ctx, int n)
{
    act_priv *p = l->priv;
    if (!l->dx[0].data) return DLT_OK;
    size_t len = (size_t)n * (size_t)dlt_shape_sample_numel(&l->x[0].shape);
    return l->be->act_bwd(l->be, p->act, len, l->x[0].data, l->y.data, l->dy.data,
                          l->dx[0].data);
}

#define ACT_LAYER(sym, name)                                                                   \
    const dlt_layer_ops sym = {                                                                \
        .type = name,                                                                          \
        .keys = act_keys,                                                                      \
        .n_inputs = 1,                                                                         \
        .is_loss = 0,                                                                          \
        .setup = act_setup,                                                                    \
        .init = NULL,                                                                          \
        .forward = act_forward,                                                                \
        .backward = act_backward,                                                              \
        .free = NULL,                                                                          \
    }

ACT_LAYER(dlt_layer_relu, "relu");
ACT_LAYER(dlt_layer_sigmoid, "sigmoid");
ACT_LAYER(dlt_layer_tanh, "tanh");
ACT_LAYER(dlt_layer_gelu, "gelu");
