/* Internal declarations of the CPU backend's sequence-model ops
 * (cpu_seq.c: embedding, layer normalisation, per-token cross-entropy;
 * cpu_attn.c: multi-head attention; cpu_lstm.c: LSTM). Each implements the
 * backend.h table entry of the same name (dlt_cpu_<op> <-> be-><op>); the
 * contracts are in backend.h. Kept apart from cpu_ops.h so that the sequence
 * ops can grow without touching the CNN backend's header. */
#ifndef DLT_CPU_SEQ_H
#define DLT_CPU_SEQ_H

#include <stdint.h>

#include "core/backend.h"

dlt_status dlt_cpu_embedding_fwd(dlt_backend *be, int t, int dim, int vocab, const float *ids,
                                 const float *w, float *y);
dlt_status dlt_cpu_embedding_bwd(dlt_backend *be, int t, int dim, int vocab, const float *ids,
                                 const float *dy, int padding_idx, float *dw);
dlt_status dlt_cpu_fill_rows(dlt_backend *be, int k, int dim, int rows, const float *idx, float v,
                             float *x);
dlt_status dlt_cpu_target_rows(dlt_backend *be, int rows, const int32_t *labels, float *idx);
dlt_status dlt_cpu_layernorm_fwd(dlt_backend *be, int rows, int dim, float eps, const float *x,
                                 const float *gamma, const float *beta, float *y, float *mean,
                                 float *rstd);
dlt_status dlt_cpu_layernorm_bwd(dlt_backend *be, int rows, int dim, const float *x,
                                 const float *dy, const float *gamma, const float *mean,
                                 const float *rstd, float *dx, float *dgamma, float *dbeta);
dlt_status dlt_cpu_softmax_xent_seq_fwd(dlt_backend *be, int n, int len, int k,
                                        const float *logits, const int32_t *labels, float *loss,
                                        float *correct, float *count);
dlt_status dlt_cpu_softmax_xent_seq_bwd(dlt_backend *be, int rows, int k, const float *logits,
                                        const int32_t *labels, float scale, float *dlogits);
dlt_status dlt_cpu_attention_fwd(dlt_backend *be, int n, int len, int heads, int dh,
                                 const float *qkv, const float *tokens, float p, uint64_t key,
                                 uint64_t first, float *probs, float *out, float *ws);
dlt_status dlt_cpu_attention_bwd(dlt_backend *be, int n, int len, int heads, int dh,
                                 const float *qkv, float p, uint64_t key, uint64_t first,
                                 const float *probs, const float *dout, float *dqkv, float *ws);
dlt_status dlt_cpu_attention_fwd_lse(dlt_backend *be, int n, int len, int heads, int dh,
                                     const float *qkv, const float *tokens, float p,
                                     uint64_t key, uint64_t first, float *out, float *lse,
                                     float *ws);
dlt_status dlt_cpu_attention_bwd_lse(dlt_backend *be, int n, int len, int heads, int dh,
                                     const float *qkv, const float *tokens, float p,
                                     uint64_t key, uint64_t first, const float *out,
                                     const float *lse, const float *dout, float *dqkv,
                                     float *ws);
dlt_status dlt_cpu_lstm_fwd(dlt_backend *be, int train, int n, int len, int din, int h,
                            const float *x, const float *w_ih, const float *w_hh,
                            const float *b_ih, const float *b_hh, const float *h0,
                            const float *c0, float *y, float *h_last, float *c_last,
                            float *saved, float *ws);
dlt_status dlt_cpu_lstm_bwd(dlt_backend *be, int n, int len, int din, int h, const float *x,
                            const float *w_ih, const float *w_hh, const float *h0,
                            const float *c0, const float *y, float *saved, const float *dy,
                            float *dx, float *dw_ih, float *dw_hh, float *db_ih, float *db_hh,
                            float *ws);
dlt_status dlt_cpu_lstm_sizes(dlt_backend *be, int n, int len, int din, int h,
                              size_t *saved_floats, size_t *ws_floats);

#endif
