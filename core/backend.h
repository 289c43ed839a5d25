/* The backend: every numeric operation dltrain performs, as a table of
 * function pointers (ggml style). Layers and optimizers call only these, so
 * they never branch on the device. core/cpu/ fills the table with OpenBLAS +
 * OpenMP; core/cuda/ (a shared object loaded at run time) with cuBLAS, cuDNN
 * and own kernels.
 *
 * Contracts common to all ops:
 *  - pointers are backend memory (host memory for CPU, device memory for CUDA)
 *    unless the parameter name ends in _host;
 *  - tensors are fp32, row-major, images NCHW;
 *  - ops named *_bwd* and bias_grad ACCUMULATE (+=) into their gradient
 *    outputs: the graph zeroes gradients once per step, and a value used by
 *    several layers (residuals) then gets the sum of their gradients for free;
 *  - forward ops overwrite their output;
 *  - ops are asynchronous on a GPU; sync() waits for all compute ops
 *    (batch uploads of upload_async are waited for by upload_wait and
 *    upload_host_wait, so a sync never waits for the next batch's copy).
 * A backend may leave an op NULL; supports() then says so and model build
 * fails with a clear message instead of crashing. */
#ifndef DLT_BACKEND_H
#define DLT_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

/* Version of this table's layout; a CUDA backend object built against another
 * version is refused at load time. */
#define DLT_BACKEND_ABI 2

typedef struct dlt_backend dlt_backend;

typedef enum {
    DLT_ACT_RELU,
    DLT_ACT_SIGMOID,
    DLT_ACT_TANH,
    DLT_ACT_GELU /* exact: x * Phi(x), as torch.nn.GELU() */
} dlt_act;

typedef enum { DLT_POOL_MAX, DLT_POOL_AVG } dlt_pool_mode;

/* Geometry of a 2-D convolution or pooling window, NCHW, square padding and
 * stride. For pooling k == c. Average pooling counts padded zeros
 * (count_include_pad, PyTorch's default); max pooling ignores padding. */
typedef struct {
    int n, c, h, w;     /* input  (N, C, H, W) */
    int k, r, s;        /* output channels, kernel height, kernel width */
    int stride, pad;
    int oh, ow;         /* output (N, K, OH, OW) */
} dlt_conv_geom;

/* Fills oh/ow from the rest: oh = (h + 2 pad - r) / stride + 1. */
void dlt_conv_geom_finish(dlt_conv_geom *g);

typedef enum {
    DLT_OPT_SGD,     /* momentum, dampening 0, optional Nesterov (torch.optim.SGD) */
    DLT_OPT_ADAM,    /* L2 weight decay added to the gradient (torch.optim.Adam) */
    DLT_OPT_ADAMW,   /* decoupled weight decay (torch.optim.AdamW) */
    DLT_OPT_ADAGRAD, /* torch.optim.Adagrad, lr_decay 0, initial accumulator 0 */
    DLT_OPT_RMSPROP  /* torch.optim.RMSprop, alpha, eps, optional momentum, not centered */
} dlt_opt_kind;

typedef struct {
    dlt_opt_kind kind;
    float lr;            /* already scheduled for this step */
    float weight_decay;
    float momentum;      /* SGD, RMSProp */
    int nesterov;        /* SGD */
    float beta1, beta2;  /* Adam(W) */
    float alpha;         /* RMSProp smoothing */
    float eps;
    int64_t t;           /* 1-based step count, for Adam bias correction */
} dlt_opt_hparams;

struct dlt_backend {
    int abi;             /* DLT_BACKEND_ABI */
    const char *name;    /* "cpu", "cuda" */
    void *impl;          /* backend-private state (handles, streams) */

    /* ---- lifetime and memory ---- */
    void (*destroy)(dlt_backend *be);
    dlt_status (*alloc)(dlt_backend *be, size_t bytes, void **ptr);   /* zeroed */
    void (*free)(dlt_backend *be, void *ptr);
    dlt_status (*upload)(dlt_backend *be, void *dst, const void *src_host, size_t bytes);
    dlt_status (*download)(dlt_backend *be, void *dst_host, const void *src, size_t bytes);
    dlt_status (*copy)(dlt_backend *be, void *dst, const void *src, size_t bytes);
    dlt_status (*fill)(dlt_backend *be, float *x, size_t n, float v);
    dlt_status (*sync)(dlt_backend *be);

    /* ---- BLAS-like ---- */
    /* C(m,n) = alpha * op(A) op(B) + beta * C, row-major, op = transpose if ta/tb. */
    dlt_status (*gemm)(dlt_backend *be, int ta, int tb, int m, int n, int k, float alpha,
                       const float *a, int lda, const float *b, int ldb, float beta,
                       float *c, int ldc);
    dlt_status (*axpy)(dlt_backend *be, size_t n, float alpha, const float *x, float *y);
    dlt_status (*scale)(dlt_backend *be, size_t n, float alpha, float *x);
    /* sum of squares of x into *out_host (double accumulation); the sync point
     * for gradient-norm clipping and non-finite checks. */
    dlt_status (*sumsq)(dlt_backend *be, size_t n, const float *x, double *out_host);
    /* y(n, c, hw) += b(c) */
    dlt_status (*bias_add)(dlt_backend *be, int n, int c, int hw, const float *b, float *y);
    /* db(c) += sum over n, hw of dy(n, c, hw) */
    dlt_status (*bias_grad)(dlt_backend *be, int n, int c, int hw, const float *dy, float *db);
    /* y = a + b, elementwise */
    dlt_status (*add)(dlt_backend *be, size_t n, const float *a, const float *b, float *y);

    /* ---- convolution: x (n,c,h,w), w (k,c,r,s), y (n,k,oh,ow); no bias ---- */
    size_t (*conv2d_workspace)(dlt_backend *be, const dlt_conv_geom *g); /* bytes */
    dlt_status (*conv2d_fwd)(dlt_backend *be, const dlt_conv_geom *g, const float *x,
                             const float *w, float *y, void *ws);
    dlt_status (*conv2d_bwd_data)(dlt_backend *be, const dlt_conv_geom *g, const float *dy,
                                  const float *w, float *dx, void *ws);
    dlt_status (*conv2d_bwd_filter)(dlt_backend *be, const dlt_conv_geom *g, const float *x,
                                    const float *dy, float *dw, void *ws);

    /* ---- pooling: x (n,c,h,w), y (n,c,oh,ow) ---- */
    dlt_status (*pool2d_fwd)(dlt_backend *be, dlt_pool_mode mode, const dlt_conv_geom *g,
                             const float *x, float *y);
    /* Max pooling routes dy to the first maximum of each window (recomputed from x, y). */
    dlt_status (*pool2d_bwd)(dlt_backend *be, dlt_pool_mode mode, const dlt_conv_geom *g,
                             const float *x, const float *y, const float *dy, float *dx);

    /* ---- batch normalisation over (n, hw) per channel c ---- */
    /* Uses batch statistics; updates running stats as PyTorch does
     * (running = (1-momentum) running + momentum batch, running_var unbiased);
     * saves mean and 1/sqrt(var+eps) (biased var) for backward. */
    dlt_status (*bnorm_fwd_train)(dlt_backend *be, int n, int c, int hw, float eps, float momentum,
                                  const float *x, const float *gamma, const float *beta, float *y,
                                  float *run_mean, float *run_var, float *save_mean,
                                  float *save_invstd);
    dlt_status (*bnorm_fwd_eval)(dlt_backend *be, int n, int c, int hw, float eps, const float *x,
                                 const float *gamma, const float *beta, const float *run_mean,
                                 const float *run_var, float *y);
    dlt_status (*bnorm_bwd)(dlt_backend *be, int n, int c, int hw, const float *x, const float *dy,
                            const float *gamma, const float *save_mean, const float *save_invstd,
                            float *dx, float *dgamma, float *dbeta);

    /* ---- elementwise activations ---- */
    dlt_status (*act_fwd)(dlt_backend *be, dlt_act act, size_t n, const float *x, float *y);
    /* dx += dy * f'(x); y = f(x) is given so sigmoid/tanh need not recompute. */
    dlt_status (*act_bwd)(dlt_backend *be, dlt_act act, size_t n, const float *x, const float *y,
                          const float *dy, float *dx);

    /* ---- dropout (inverted: kept values scaled by 1/(1-p)) ----
     * Element i is kept iff dlt_rand_u01(key, first + i) >= p (core/rng.h), so
     * a mask depends on (key, global element index) only, never on the rank or
     * a thread. mask(i) = kept ? 1/(1-p) : 0. */
    dlt_status (*dropout_fwd)(dlt_backend *be, size_t n, float p, uint64_t key, uint64_t first,
                              const float *x, float *y, float *mask);
    /* dx += dy * mask */
    dlt_status (*mul_acc)(dlt_backend *be, size_t n, const float *dy, const float *mask, float *dx);

    /* ---- losses; per-sample outputs so that the caller reduces them ----
     * softmax cross-entropy: logits (n, k), labels (n) in [0, k).
     * loss(i) = -log softmax(logits(i))[label(i)]; correct(i) = 1 if the first
     * argmax equals the label else 0; probs (n, k) saved for backward. */
    dlt_status (*softmax_xent_fwd)(dlt_backend *be, int n, int k, const float *logits,
                                   const int32_t *labels, float *probs, float *loss,
                                   float *correct);
    /* dlogits += scale * (probs - onehot(labels)) */
    dlt_status (*softmax_xent_bwd)(dlt_backend *be, int n, int k, const float *probs,
                                   const int32_t *labels, float scale, float *dlogits);
    /* Mean squared error per sample: loss(i) = mean_j (y(i,j) - t(i,j))^2.
     * t (n, k) targets. */
    dlt_status (*mse_fwd)(dlt_backend *be, int n, int k, const float *y, const float *t,
                          float *loss);
    /* dy += scale * 2 (y - t) / k */
    dlt_status (*mse_bwd)(dlt_backend *be, int n, int k, const float *y, const float *t,
                          float scale, float *dy);
    /* t (n, k) = one-hot of labels (n) */
    dlt_status (*onehot)(dlt_backend *be, int n, int k, const int32_t *labels, float *t);

    /* ---- optimizer: one fused update over a whole arena of n floats ----
     * w weights, g gradients, s1/s2 state arenas of the same layout (zeroed
     * at start; unused ones may be NULL). */
    dlt_status (*opt_update)(dlt_backend *be, const dlt_opt_hparams *h, size_t n, float *w,
                             const float *g, float *s1, float *s2);

    /* ---- sequence models (CPU: core/cpu/cpu_seq.c, cpu_attn.c, cpu_lstm.c) ---- */
    /* Token ids travel as floats (exact below 2^24). ids (t) must lie in
     * [0, vocab) (DLT_ERR_INVALID otherwise); y (t, dim) = w (vocab, dim) rows. */
    dlt_status (*embedding_fwd)(dlt_backend *be, int t, int dim, int vocab, const float *ids,
                                const float *w, float *y);
    /* dw(ids(i)) += dy(i) for every token i whose id != padding_idx (-1: none). */
    dlt_status (*embedding_bwd)(dlt_backend *be, int t, int dim, int vocab, const float *ids,
                                const float *dy, int padding_idx, float *dw);
    /* Layer normalisation of x (rows, dim) over dim (biased variance), as
     * torch.nn.LayerNorm; saves mean (rows) and rstd = 1/sqrt(var+eps) (rows). */
    dlt_status (*layernorm_fwd)(dlt_backend *be, int rows, int dim, float eps, const float *x,
                                const float *gamma, const float *beta, float *y, float *mean,
                                float *rstd);
    /* dx += d/dx, dgamma += sum dy xhat, dbeta += sum dy. */
    dlt_status (*layernorm_bwd)(dlt_backend *be, int rows, int dim, const float *x,
                                const float *dy, const float *gamma, const float *mean,
                                const float *rstd, float *dx, float *dgamma, float *dbeta);
    /* Per-token softmax cross-entropy summed per sample: logits (n, len, k),
     * labels (n, len); tokens with label < 0 are ignored, labels >= k are
     * DLT_ERR_INVALID. loss (n) = sum of counted tokens' -log p[label],
     * correct (n) = counted tokens whose first argmax is the label,
     * count (n) = counted tokens. No probabilities are kept (backward
     * recomputes them: logits of a large vocabulary are big). */
    dlt_status (*softmax_xent_seq_fwd)(dlt_backend *be, int n, int len, int k,
                                       const float *logits, const int32_t *labels, float *loss,
                                       float *correct, float *count);
    /* dlogits (rows, k) += scale (softmax(logits) - onehot(label)) for rows
     * with label >= 0. */
    dlt_status (*softmax_xent_seq_bwd)(dlt_backend *be, int rows, int k, const float *logits,
                                       const int32_t *labels, float scale, float *dlogits);
    /* Multi-head scaled dot-product attention. qkv (n, len, 3 heads dh) holds
     * [q | k | v] per token (torch's in_proj layout, head h at columns
     * h dh ..); tokens (n, len) ids or NULL: keys whose id is 0 are masked
     * out (a row with every key masked gets all-zero probabilities).
     * probs (n, heads, len, len) = softmax(q k^T / sqrt(dh)) is saved
     * before dropout; dropout (p, inverted) keeps probability element i iff
     * dlt_rand_u01(key, first + i) >= p, i the element's index in probs;
     * out (n, len, heads dh) = dropout(probs) v; ws: scratch of len len floats. */
    dlt_status (*attention_fwd)(dlt_backend *be, int n, int len, int heads, int dh,
                                const float *qkv, const float *tokens, float p, uint64_t key,
                                uint64_t first, float *probs, float *out, float *ws);
    /* dqkv += gradient of out w.r.t. qkv given dout (n, len, heads dh);
     * ws: scratch of 2 len len floats. */
    dlt_status (*attention_bwd)(dlt_backend *be, int n, int len, int heads, int dh,
                                const float *qkv, float p, uint64_t key, uint64_t first,
                                const float *probs, const float *dout, float *dqkv, float *ws);
    /* One LSTM layer over a sequence, torch.nn.LSTM's gate order (i, f, g, o):
     * x (n, len, din), w_ih (4h, din), w_hh (4h, h), b_ih, b_hh (4h),
     * h0, c0 (n, h) or NULL for zeros. Writes y (n, len, h) and, where not
     * NULL, the final states h_last, c_last (n, h) (a stateful layer's
     * carry). saved (lstm_sizes' saved_floats) receives what lstm_bwd needs,
     * in a backend-private layout (CPU: activated gates and cell states;
     * CUDA: cuDNN's weight and reserve space); train = 0 promises that no
     * lstm_bwd follows (CUDA then runs cuDNN's inference mode). ws: scratch
     * of lstm_sizes' ws_floats. saved and ws are 256-byte aligned. */
    dlt_status (*lstm_fwd)(dlt_backend *be, int train, int n, int len, int din, int h,
                           const float *x, const float *w_ih, const float *w_hh,
                           const float *b_ih, const float *b_hh, const float *h0,
                           const float *c0, float *y, float *h_last, float *c_last,
                           float *saved, float *ws);
    /* Full backpropagation through time given dy (n, len, h), from the saved
     * of the matching lstm_fwd (train = 1, same x, weights, h0, c0, y);
     * saved is consumed (undefined afterwards: one backward per forward).
     * No gradient flows into h0/c0 (carried state is detached). dx (may be
     * NULL), dw_ih, dw_hh, db_ih, db_hh accumulate; ws as for lstm_fwd. */
    dlt_status (*lstm_bwd)(dlt_backend *be, int n, int len, int din, int h, const float *x,
                           const float *w_ih, const float *w_hh, const float *h0,
                           const float *c0, const float *y, float *saved, const float *dy,
                           float *dx, float *dw_ih, float *dw_hh, float *db_ih, float *db_hh,
                           float *ws);

    /* ---- input staging (launcher/staging.c) and on-device sums ----
     * A batch travels host -> device through one of DLT_UPLOAD_SLOTS slots,
     * each a pair of buffers the caller owns (host_alloc memory, backend
     * memory). On a GPU the copies run on a copy stream of their own, so the
     * next batch's upload overlaps the current step; events order them
     * against the compute stream. On the CPU every call completes at once. */
    /* Host memory for batches: page-locked on CUDA so that copies from it
     * are truly asynchronous; plain on the CPU. Zeroed. */
    dlt_status (*host_alloc)(dlt_backend *be, size_t bytes, void **ptr);
    void (*host_free)(dlt_backend *be, void *ptr);
    /* Queues dst <- src_host (bytes) for slot `slot` in [0, DLT_UPLOAD_SLOTS),
     * to run after the compute work queued before the slot's last
     * upload_release; src_host must stay unchanged until
     * upload_host_wait(slot) returns. */
    dlt_status (*upload_async)(dlt_backend *be, int slot, void *dst, const void *src_host,
                               size_t bytes);
    /* Compute ops queued after this call run after the slot's uploads. */
    dlt_status (*upload_wait)(dlt_backend *be, int slot);
    /* The compute ops queued so far are the last readers of the slot's
     * device buffer: later uploads into the slot wait for them. */
    dlt_status (*upload_release)(dlt_backend *be, int slot);
    /* Blocks the host until the slot's uploads have read their source. */
    dlt_status (*upload_host_wait)(dlt_backend *be, int slot);
    /* acc[0] += sum of x (n), accumulated in double; acc is backend memory
     * (per-step loss sums stay on the device until a log step downloads
     * them). The CPU adds in index order, so a running sum is bitwise that
     * of a host loop `acc += x[i]`; CUDA uses one fixed-order block
     * (deterministic). Queued like any op. */
    dlt_status (*sum_to)(dlt_backend *be, size_t n, const float *x, double *acc);

    /* ---- LSTM sizes (ABI 2; lstm_fwd/lstm_bwd above) ----
     * Floats of the per-call saved state (*saved_floats) and of the scratch
     * (*ws_floats) that lstm_fwd and lstm_bwd need for these sizes; both
     * non-decreasing in n, so a layer plans them once for its largest batch.
     * A host-side query (CUDA: cuDNN's sizes, its descriptors cached per
     * shape). DLT_ERR_SHAPE for bad sizes. */
    dlt_status (*lstm_sizes)(dlt_backend *be, int n, int len, int din, int h,
                             size_t *saved_floats, size_t *ws_floats);
    /* ---- memory-light (flash-style) attention ----
     * The same attention as attention_fwd/attention_bwd (qkv, tokens, out
     * layouts; padding mask; dropout with probability element i of the
     * (n, heads, len, len) tensor kept iff dlt_rand_u01(key, first + i) >= p,
     * so the masks are identical to the probs ops'), but no (len, len)
     * tensor is saved: lse (n, heads, len) receives each query row's
     * log-sum-exp of its scaled scores q k^T / sqrt(dh) over the unmasked
     * keys, -INFINITY for a row whose keys are all masked (its output is 0).
     * Backward recomputes the probabilities exp(s - lse) block by block.
     * ws (both ops): scratch of DLT_ATTN_LSE_WS_FLOATS(n, heads, len). */
    dlt_status (*attention_fwd_lse)(dlt_backend *be, int n, int len, int heads, int dh,
                                    const float *qkv, const float *tokens, float p, uint64_t key,
                                    uint64_t first, float *out, float *lse, float *ws);
    /* dqkv += gradient of out w.r.t. qkv given dout (n, len, heads dh); out
     * and lse as written by attention_fwd_lse with the same arguments (the
     * softmax term uses rowsum(dout out), exact under dropout). */
    dlt_status (*attention_bwd_lse)(dlt_backend *be, int n, int len, int heads, int dh,
                                    const float *qkv, const float *tokens, float p, uint64_t key,
                                    uint64_t first, const float *out, const float *lse,
                                    const float *dout, float *dqkv, float *ws);
    /* ---- sparse rows (the masked-LM head's logits gradient, core/layers/heads.c) ---- */
    /* x(idx(i), :) = v for i < k: the rows of x (rows, dim) listed by idx (k),
     * row indices as floats (as token ids), each an integer in [0, rows)
     * (DLT_ERR_INVALID otherwise). One op however many rows, so that zeroing
     * a gradient's few target rows is not one fill per row on a GPU. */
    dlt_status (*fill_rows)(dlt_backend *be, int k, int dim, int rows, const float *idx, float v,
                            float *x);
    /* idx = the rows r of labels (rows) with labels(r) >= 0, ascending, as
     * floats (as fill_rows reads them); idx holds room for all of them. The
     * caller counts them on its host copy of the labels: building the list
     * on the device spares a host -> device copy, a sync on a GPU. */
    dlt_status (*target_rows)(dlt_backend *be, int rows, const int32_t *labels, float *idx);
    /* ---- fully connected layers (ABI 2; CPU: core/cpu/cpu_linear.c; CUDA:
     * core/cuda/cuda_lt.c, cuBLASLt with the bias fused into the gemm's
     * epilogue) ----
     * y (rows, out) = x (rows, in) w (out, in)^T + b (out), torch.nn.Linear's
     * layout; b may be NULL (no bias). Overwrites y. */
    dlt_status (*linear_fwd)(dlt_backend *be, int rows, int in, int out, const float *x,
                             const float *w, const float *b, float *y);
    /* dw (out, in) += dy (rows, out)^T x (rows, in); db (out) += the column
     * sums of dy unless db is NULL. The input gradient dx = dy w is a plain
     * gemm (its accumulate-or-overwrite choice is the caller's). */
    dlt_status (*linear_bwd_w)(dlt_backend *be, int rows, int in, int out, const float *x,
                               const float *dy, float *dw, float *db);
};

/* Scratch floats of attention_fwd_lse / attention_bwd_lse: a row value per
 * (sample, head, query) plus two blocks of 64 query rows by len keys. */
#define DLT_ATTN_LSE_WS_FLOATS(n, heads, len) \
    ((size_t)(n) * (size_t)(heads) * (size_t)(len) + 128 * (size_t)(len))

/* Upload slots (backend upload_async): two, for double buffering. */
#define DLT_UPLOAD_SLOTS 2

/* Creates the CPU backend. */
dlt_status dlt_backend_cpu_create(dlt_backend **out);

/* Name of the first op that is NULL in be among a NULL-terminated list of op
 * names, or NULL when all are present; used to give "op X not supported on
 * backend Y" at model build time. */
const char *dlt_backend_missing_op(const dlt_backend *be, const char *const *ops);

#endif
