/* Helpers shared by the sequence-model layers (embedding.c, layernorm.c,
 * attention.c, transformer.c, lstm.c, heads.c), internal to core/layers/. */
#ifndef DLT_SEQ_INTERNAL_H
#define DLT_SEQ_INTERNAL_H

#include "core/layers/layers_internal.h"

/* Fills parameter `param` of l with N(0, std^2) from rng (BERT's
 * initialisation of embeddings and projections); zero_row >= 0 is then set
 * to zero (an embedding's padding row). Allocation or upload failures leave
 * the parameter as the model filled it (init() cannot report errors). */
void dlt_seq_init_normal(dlt_layer *l, int param, double std, int64_t zero_row, dlt_rng *rng);

/* Dropout key of dropout site `site` inside layer l at this step: a pure
 * function of (seed, step, layer index, site), like core/layers/dropout.c's
 * key with one more level, so a layer with several dropouts draws
 * independent masks. The first element of this rank is sample0 times the
 * per-sample element count of the masked tensor. */
static inline uint64_t dlt_seq_dropout_key(const dlt_layer *l, const dlt_step_ctx *ctx, int site)
{
    uint64_t k = dlt_hash_combine(dlt_hash_combine(ctx->seed, (uint64_t)ctx->step),
                                  (uint64_t)l->index);
    return dlt_hash_combine(k, (uint64_t)site);
}

/* Padding ids for attention over (n, len) tokens: ctx->tokens when the
 * model input is a token sequence of the same length, NULL when there is
 * none or masking is off; DLT_ERR_SHAPE when the model input has another
 * length (a mask would not line up with the sequence). */
dlt_status dlt_seq_mask_tokens(const dlt_layer *l, const dlt_step_ctx *ctx, int64_t len,
                               int use_mask, const float **out);

/* Row biases of row-major (rows, c) tensors that are not a linear layer's
 * (position and token-type tables, embedding.c), as gemms with a vector of
 * ones: y (rows, c) += 1 b^T and db (c) += dy^T 1. Linear layers use the
 * backend's linear_fwd / linear_bwd_w instead, which fuse the bias into the
 * product. ones: >= rows floats equal to 1, backend memory (see
 * dlt_seq_ones). */
static inline dlt_status dlt_seq_bias_add(dlt_backend *be, int rows, int c, const float *b,
                                          const float *ones, float *y)
{
    return be->gemm(be, 0, 0, rows, c, 1, 1.0f, ones, 1, b, c, 1.0f, y, c);
}
static inline dlt_status dlt_seq_bias_grad(dlt_backend *be, int rows, int c, const float *dy,
                                           const float *ones, float *db)
{
    return be->gemm(be, 0, 0, 1, c, rows, 1.0f, ones, rows, dy, c, 1.0f, db, c);
}
/* Fills a layer's ones buffer (declared with dlt_layer_add_buffer, rows
 * floats) at the start of its forward; buffers keep their contents until
 * the step's backward. */
static inline dlt_status dlt_seq_ones(dlt_backend *be, float *ones, int rows)
{
    return be->fill(be, ones, (size_t)rows, 1.0f);
}

/* 1 if the shape is (n, len, dim) with every dimension >= 1. */
static inline int dlt_seq_is_3d(const dlt_shape *s)
{
    return s->ndim == 3 && s->d[0] > 0 && s->d[1] > 0 && s->d[2] > 0;
}

/* ---- multi-head self-attention as a building block (attention.c) ----
 * The self_attention layer and the transformer block share it: packed
 * in-projection, the backend's attention op, out-projection. */
typedef struct {
    int len, dim, heads;
    float dropout;                  /* on attention probabilities */
    int lse;                        /* 1: memory-light ops (attention_fwd_lse), saving the
                                       row log-sum-exps instead of the probabilities */
    int w_in, b_in, w_out, b_out;   /* parameter indices in the owning layer */
} dlt_mha;

/* The attention_impl layer key shared by self_attention and transformer:
 * "auto" (the rule in attention.c / docs/decisions.md), "lse" (memory-light
 * ops; DLT_ERR_CONFIG when the backend lacks them) or "probs". */
#define DLT_MHA_IMPL_KEY                                                               \
    { "attention_impl", DLT_KEY_STR, "auto",                                           \
      "attention kernels: auto, lse (memory-light, flash-style) or probs (saves the "  \
      "(heads, len, len) probabilities)" }

/* Declares the four parameters (names prefix + in_proj_weight, in_proj_bias,
 * out_proj.weight, out_proj.bias as torch.nn.MultiheadAttention), checks
 * heads divides dim and chooses the attention ops from impl (the
 * attention_impl key) for max_batch n. */
dlt_status dlt_mha_setup(dlt_layer *l, dlt_mha *a, const char *prefix, int len, int dim,
                         int heads, float dropout, const char *impl);
/* Floats per sample of the forward buffers: qkv (len, 3 dim), the tensor
 * saved by the attention op (probs (heads, len, len), or lse (heads, len)
 * when a->lse), context (len, dim). */
int64_t dlt_mha_qkv_len(const dlt_mha *a);
int64_t dlt_mha_saved_len(const dlt_mha *a);
/* Elements per sample of the (heads, len, len) probability tensor: the
 * stride of the dropout counter on either path. */
int64_t dlt_mha_probs_len(const dlt_mha *a);
/* Workspace bytes for n samples of backward: dqkv and dcontext plus the
 * attention op's scratch (2 len len floats, or DLT_ATTN_LSE_WS_FLOATS). */
size_t dlt_mha_ws_bytes(const dlt_mha *a, int64_t n);
/* out (n, len, dim) = attention of x (n, len, dim); qkv, saved (as sized by
 * dlt_mha_saved_len) and ctxv are kept for backward. dropout site `site`
 * of layer l. */
dlt_status dlt_mha_forward(dlt_layer *l, const dlt_mha *a, const dlt_step_ctx *ctx, int n,
                           int site, const float *tokens, const float *x, float *qkv,
                           float *saved, float *ctxv, float *out, float *ws);
/* dx (may be NULL) and the parameter gradients += backward of dout; tokens
 * as given to the forward; ws as sized by dlt_mha_ws_bytes. */
dlt_status dlt_mha_backward(dlt_layer *l, const dlt_mha *a, const dlt_step_ctx *ctx, int n,
                            int site, const float *tokens, const float *x, const float *qkv,
                            const float *saved, const float *ctxv, const float *dout, float *dx,
                            float *ws);

#endif
