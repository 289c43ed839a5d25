/* Backend helpers shared by all backends: op lookup by name and geometry. */
#include "core/backend.h"

#include <stddef.h>
#include <string.h>

void dlt_conv_geom_finish(dlt_conv_geom *g)
{
    g->oh = (g->h + 2 * g->pad - g->r) / g->stride + 1;
    g->ow = (g->w + 2 * g->pad - g->s) / g->stride + 1;
}

#define OP(name) { #name, offsetof(dlt_backend, name) }
static const struct {
    const char *name;
    size_t off;
} op_table[] = {
    OP(gemm), OP(axpy), OP(scale), OP(sumsq), OP(bias_add), OP(bias_grad), OP(add),
    OP(conv2d_workspace), OP(conv2d_fwd), OP(conv2d_bwd_data), OP(conv2d_bwd_filter),
    OP(pool2d_fwd), OP(pool2d_bwd), OP(bnorm_fwd_train), OP(bnorm_fwd_eval), OP(bnorm_bwd),
    OP(act_fwd), OP(act_bwd), OP(dropout_fwd), OP(mul_acc), OP(softmax_xent_fwd),
    OP(softmax_xent_bwd), OP(mse_fwd), OP(mse_bwd), OP(onehot), OP(opt_update),
    OP(embedding_fwd), OP(embedding_bwd), OP(layernorm_fwd), OP(layernorm_bwd),
    OP(softmax_xent_seq_fwd), OP(softmax_xent_seq_bwd), OP(attention_fwd), OP(attention_bwd),
    OP(lstm_fwd), OP(lstm_bwd),
    OP(host_alloc), OP(host_free), OP(upload_async), OP(upload_wait), OP(upload_release),
    OP(upload_host_wait), OP(sum_to), OP(lstm_sizes),
    OP(attention_fwd_lse), OP(attention_bwd_lse),
    OP(fill_rows), OP(target_rows),
    OP(linear_fwd), OP(linear_bwd_w),
};
#undef OP

const char *dlt_backend_missing_op(const dlt_backend *be, const char *const *ops)
{
    for (; *ops; ops++) {
        for (size_t i = 0; i < sizeof op_table / sizeof op_table[0]; i++) {
            if (strcmp(op_table[i].name, *ops) != 0) continue;
            void *fn;
            memcpy(&fn, (const char *)be + op_table[i].off, sizeof fn);
            if (!fn) return *ops;
        }
    }
    return NULL;
}
