/* The layer type registry: one table from config type names to layer
 * tables, with the backend ops each type calls (checked at model build so an
 * incomplete backend fails with "op X not supported on backend Y" before any
 * step runs). Adding a layer type means adding one row here.
 *
 * "resblock" and "bottleneck" are registered like any other type so that the
 * config loader can validate their keys and help can list them, but they are
 * macros: the model
 * builder expands it into plain layers and its setup() refuses to run. */
#include <string.h>

#include "core/layers/layers_internal.h"

static const dlt_key_spec resblock_keys[] = {
    { "filters", DLT_KEY_INT, NULL, "output channels of both 3x3 convolutions" },
    { "stride", DLT_KEY_INT, "1", "stride of the first convolution (and the shortcut)" },
    { NULL, 0, NULL, NULL },
};

static dlt_status resblock_setup(dlt_layer *l)
{
    return DLT_LAYER_ERR(l, DLT_ERR_INVALID,
                         "resblock is a macro layer, expanded only inside a model");
}

const dlt_layer_ops dlt_layer_resblock = {
    .type = "resblock",
    .keys = resblock_keys,
    .n_inputs = 1,
    .is_loss = 0,
    .setup = resblock_setup,
    .init = NULL,
    .forward = NULL,
    .backward = NULL,
    .free = NULL,
};

/* ResNet-50's block (torchvision Bottleneck): 1x1 to `filters`, 3x3 with the
 * stride, 1x1 to expansion x filters; also a macro (core/model.c). */
static const dlt_key_spec bottleneck_keys[] = {
    { "filters", DLT_KEY_INT, NULL, "width of the 1x1 and 3x3 convolutions inside the block" },
    { "stride", DLT_KEY_INT, "1", "stride of the 3x3 convolution (and the shortcut)" },
    { "expansion", DLT_KEY_INT, "4", "output channels = expansion x filters" },
    { NULL, 0, NULL, NULL },
};

static dlt_status bottleneck_setup(dlt_layer *l)
{
    return DLT_LAYER_ERR(l, DLT_ERR_INVALID,
                         "bottleneck is a macro layer, expanded only inside a model");
}

const dlt_layer_ops dlt_layer_bottleneck = {
    .type = "bottleneck",
    .keys = bottleneck_keys,
    .n_inputs = 1,
    .is_loss = 0,
    .setup = bottleneck_setup,
    .init = NULL,
    .forward = NULL,
    .backward = NULL,
    .free = NULL,
};

static const char *const ops_dense[] = { "gemm", "linear_fwd", "linear_bwd_w", NULL };
static const char *const ops_conv[] = { "conv2d_workspace", "conv2d_fwd", "conv2d_bwd_data",
                                        "conv2d_bwd_filter", "bias_add", "bias_grad", NULL };
static const char *const ops_pool[] = { "pool2d_fwd", "pool2d_bwd", NULL };
static const char *const ops_bn[] = { "bnorm_fwd_train", "bnorm_fwd_eval", "bnorm_bwd",
                                      "fill", NULL };
static const char *const ops_act[] = { "act_fwd", "act_bwd", NULL };
static const char *const ops_dropout[] = { "dropout_fwd", "mul_acc", "copy", "axpy", NULL };
static const char *const ops_copy[] = { "copy", "axpy", NULL };
static const char *const ops_add[] = { "add", "axpy", NULL };
static const char *const ops_xent[] = { "softmax_xent_fwd", "softmax_xent_bwd", NULL };
static const char *const ops_mse[] = { "mse_fwd", "mse_bwd", "onehot", NULL };
static const char *const ops_none[] = { NULL };
static const char *const ops_embedding[] = { "embedding_fwd", "embedding_bwd", NULL };
static const char *const ops_addemb[] = { "copy", "bias_add", "bias_grad", "axpy", NULL };
static const char *const ops_layernorm[] = { "layernorm_fwd", "layernorm_bwd", NULL };
static const char *const ops_attention[] = { "gemm", "linear_fwd", "linear_bwd_w",
                                             "attention_fwd", "attention_bwd", "fill", NULL };
static const char *const ops_transformer[] = { "gemm", "linear_fwd", "linear_bwd_w",
                                               "attention_fwd", "attention_bwd",
                                               "layernorm_fwd", "layernorm_bwd",
                                               "act_fwd", "act_bwd", "dropout_fwd", "mul_acc",
                                               "add", "axpy", "fill", NULL };
static const char *const ops_lstm[] = { "lstm_sizes", "lstm_fwd", "lstm_bwd", "dropout_fwd",
                                        "mul_acc", "axpy", "fill", NULL };
static const char *const ops_mlm[] = { "gemm", "linear_fwd", "linear_bwd_w", "act_fwd", "act_bwd",
                                       "layernorm_fwd", "layernorm_bwd", "fill", "fill_rows",
                                       "target_rows", "embedding_fwd", "embedding_bwd", NULL };
static const char *const ops_pooler[] = { "gemm", "bias_add", "bias_grad", "act_fwd", "act_bwd",
                                          "fill", NULL };

static const struct {
    const dlt_layer_ops *ops;
    const char *const *be_ops;
} registry[] = {
    { &dlt_layer_dense, ops_dense },
    { &dlt_layer_conv2d, ops_conv },
    { &dlt_layer_maxpool, ops_pool },
    { &dlt_layer_avgpool, ops_pool },
    { &dlt_layer_global_avgpool, ops_pool },
    { &dlt_layer_batchnorm, ops_bn },
    { &dlt_layer_relu, ops_act },
    { &dlt_layer_sigmoid, ops_act },
    { &dlt_layer_tanh, ops_act },
    { &dlt_layer_gelu, ops_act },
    { &dlt_layer_dropout, ops_dropout },
    { &dlt_layer_flatten, ops_copy },
    { &dlt_layer_add, ops_add },
    { &dlt_layer_resblock, ops_none },
    { &dlt_layer_bottleneck, ops_none },
    { &dlt_layer_softmax_xent, ops_xent },
    { &dlt_layer_mse, ops_mse },
    { &dlt_layer_embedding, ops_embedding },
    { &dlt_layer_position_embedding, ops_addemb },
    { &dlt_layer_token_type_embedding, ops_addemb },
    { &dlt_layer_layernorm, ops_layernorm },
    { &dlt_layer_self_attention, ops_attention },
    { &dlt_layer_transformer, ops_transformer },
    { &dlt_layer_lstm, ops_lstm },
    { &dlt_layer_mlm_head, ops_mlm },
    { &dlt_layer_pooler, ops_pooler },
    { &dlt_layer_linear, ops_dense },
};
#define N_TYPES (sizeof registry / sizeof registry[0])

const dlt_layer_ops *dlt_layer_find(const char *type)
{
    for (size_t i = 0; i < N_TYPES; i++)
        if (strcmp(registry[i].ops->type, type) == 0) return registry[i].ops;
    return NULL;
}

const dlt_layer_ops *const *dlt_layer_all(void)
{
    static const dlt_layer_ops *const all[] = {
        &dlt_layer_dense,   &dlt_layer_conv2d,       &dlt_layer_maxpool,
        &dlt_layer_avgpool, &dlt_layer_global_avgpool, &dlt_layer_batchnorm,
        &dlt_layer_relu,    &dlt_layer_sigmoid,      &dlt_layer_tanh,
        &dlt_layer_gelu,    &dlt_layer_dropout,      &dlt_layer_flatten,
        &dlt_layer_add,     &dlt_layer_resblock,     &dlt_layer_softmax_xent,
        &dlt_layer_mse,
        &dlt_layer_embedding, &dlt_layer_position_embedding, &dlt_layer_token_type_embedding,
        &dlt_layer_layernorm, &dlt_layer_self_attention, &dlt_layer_transformer,
        &dlt_layer_lstm,    &dlt_layer_mlm_head,     &dlt_layer_pooler,
        &dlt_layer_linear,  &dlt_layer_bottleneck,
        NULL,
    };
    _Static_assert(sizeof all / sizeof all[0] == N_TYPES + 1, "registry and list differ");
    return all;
}

const char *const *dlt_layer_backend_ops(const dlt_layer_ops *ops)
{
    for (size_t i = 0; i < N_TYPES; i++)
        if (registry[i].ops == ops) return registry[i].be_ops;
    return ops_none;
}
