/* CUDA LSTM layer through cuDNN's RNN API (the v8 functions, current in
 * cuDNN 9): one unidirectional LSTM layer per call, as core/layers/lstm.c
 * calls it, with the contracts of backend.h (lstm_sizes, lstm_fwd,
 * lstm_bwd). cuDNN runs the whole recurrence in its own kernels (the input
 * projection of all steps as one gemm, then fused per-step work), where the
 * previous own-kernel version launched a gemm and a cell kernel per step.
 *
 * Descriptors. Per shape (n, len, din, h) and GEMM precision a cache entry
 * holds the RNN descriptor (CUDNN_LSTM, double bias as torch.nn.LSTM,
 * no projection, one layer, a dropout descriptor with p = 0: the layer does
 * its own dropout between layers), the data descriptors of x (n, len, din)
 * and y (n, len, h) in CUDNN_RNN_DATA_LAYOUT_BATCH_MAJOR_UNPACKED (our
 * batch-major tensors as they are, every sequence len long), the (1, n, h)
 * descriptor of h0/c0/h_last/c_last, the device copy of the sequence
 * lengths cuDNN wants, and cuDNN's sizes. Entries are made by lstm_sizes at
 * model build time for the largest batch; a smaller last batch adds one
 * entry (and one small cudaMalloc) the first time it is seen.
 *
 * Math type by train.precision: strict fp32 -> CUDNN_FMA_MATH; fp32 and
 * bf16 -> CUDNN_DEFAULT_MATH (TF32 tensor cores, as PyTorch's cuDNN LSTM
 * with allow_tf32; cuDNN offers no bf16 conversion of fp32 data, and TF32
 * is the closer of the two); fp16 -> CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION
 * (fp32 data rounded to fp16 inside cuDNN), falling back to the default
 * where cuDNN refuses it. Storage stays fp32 everywhere.
 *
 * Weights. The layer keeps torch's parameters (w_ih, w_hh, b_ih, b_hh) in
 * the parameter arena; cuDNN wants them in its own weight space. Whether the
 * two layouts coincide cannot be proven here (alignment of an arena slice
 * and cuDNN's internal order are not promised), so every forward copies the
 * parameters into the weight space kept in `saved` (so backward uses the
 * same weights without copying again), at the places cudnnGetRNNWeightParams
 * names. cuDNN's linear-layer ids 0-3 (input side) and 4-7 (recurrent side)
 * are the input, forget, new-memory and output gates: torch's (i, f, g, o)
 * order, so gate q is rows q h .. (q + 1) h of torch's (4h, .) matrices, a
 * row-major (h, in) block each (the mapping PyTorch relies on too). Where
 * cuDNN's four gate blocks of a tensor are adjacent (the usual case) a
 * tensor is one cudaMemcpyAsync, else four.
 *
 * Backward. cudnnRNNBackwardData_v8 then cudnnRNNBackwardWeights_v8 (the
 * order cuDNN requires: both read the reserve space the training forward
 * wrote, and the first leaves in it what the second needs). cuDNN
 * overwrites dx and adds weight gradients into its own weight-space layout,
 * while our contract accumulates into torch-shaped tensors: dx goes to
 * scratch and is added (when asked for), the weight gradients go to a
 * zeroed scratch weight space (CUDNN_WGRAD_MODE_ADD) and are added per
 * tensor. No gradient flows into h0/c0 (dhx, dcx NULL) and none comes from
 * the final state (dhy, dcy NULL: zero), as the contract says.
 *
 * Memory: saved = [weight space | reserve space]; ws = [dx scratch |
 * weight-gradient space | cuDNN workspace] (forward uses only the last);
 * every part 256-byte aligned. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/cuda/cuda_internal.h"

#define LSTM_ALIGN ((size_t)256)

/* The four parameter tensors in the order of the layer's arguments. */
enum { T_WIH, T_WHH, T_BIH, T_BHH, T_N };

typedef struct {
    int n, len, din, h;
    dlt_cuda_prec prec;
    cudnnRNNDescriptor_t rnn;
    cudnnDropoutDescriptor_t drop;
    cudnnRNNDataDescriptor_t xd, yd;   /* (n, len, din), (n, len, h) */
    cudnnTensorDescriptor_t hcd;       /* (1, n, h): h0, c0, h_last, c_last */
    int32_t *seq;                      /* device (n): every sequence is len steps */
    size_t wspace;                     /* bytes of the weight space */
    size_t ws_train, ws_infer;         /* bytes of cuDNN workspace per forward mode */
    size_t reserve;                    /* bytes of reserve space (training) */
    int have_off;                      /* off/contig filled (first forward) */
    size_t off[T_N][4];                /* byte offset of each gate's block in the weight space */
    int contig[T_N];                   /* the 4 blocks are adjacent, in gate order */
} lstm_entry;

struct dlt_cuda_lstm_cache {
    lstm_entry *e;
    int n, cap;
};

static size_t align_up(size_t b) { return (b + LSTM_ALIGN - 1) / LSTM_ALIGN * LSTM_ALIGN; }

static dlt_status check_sizes(int n, int len, int din, int h, const char *op)
{
    if (n < 0 || len <= 0 || din <= 0 || h <= 0)
        return DLT_ERR(DLT_ERR_SHAPE, "%s: bad sizes n=%d len=%d din=%d h=%d", op, n, len, din, h);
    return DLT_OK;
}

static cudnnMathType_t math_of(dlt_cuda_prec p)
{
    switch (p) {
    case DLT_CUDA_PREC_STRICT: return CUDNN_FMA_MATH;
    case DLT_CUDA_PREC_FP16: return CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION;
    case DLT_CUDA_PREC_FP32:
    case DLT_CUDA_PREC_BF16: break;
    }
    return CUDNN_DEFAULT_MATH;
}

static void entry_release(lstm_entry *e)
{
    if (e->rnn) cudnnDestroyRNNDescriptor(e->rnn);
    if (e->drop) cudnnDestroyDropoutDescriptor(e->drop);
    if (e->xd) cudnnDestroyRNNDataDescriptor(e->xd);
    if (e->yd) cudnnDestroyRNNDataDescriptor(e->yd);
    if (e->hcd) cudnnDestroyTensorDescriptor(e->hcd);
    if (e->seq) cudaFree(e->seq);
    memset(e, 0, sizeof *e);
}

static dlt_status set_rnn(cudnnRNNDescriptor_t rnn, cudnnDropoutDescriptor_t drop,
                          cudnnMathType_t math, int din, int h)
{
    CUDNN_CHECK(cudnnSetRNNDescriptor_v8(rnn, CUDNN_RNN_ALGO_STANDARD, CUDNN_LSTM,
                                         CUDNN_RNN_DOUBLE_BIAS, CUDNN_UNIDIRECTIONAL,
                                         CUDNN_LINEAR_INPUT, CUDNN_DATA_FLOAT, CUDNN_DATA_FLOAT,
                                         math, din, h, h /* projSize = h: no projection */,
                                         1, drop,
                                         /* cuDNN accepts the unpacked (padded) data layout,
                                          * BATCH_MAJOR_UNPACKED here, only with padded I/O */
                                         CUDNN_RNN_PADDED_IO_ENABLED));
    return DLT_OK;
}

/* Data descriptors of x and y and the device sequence lengths; lens (n) is
 * a host array of len. */
static dlt_status set_data(lstm_entry *e, const int *lens, cudaStream_t st)
{
    CUDNN_CHECK(cudnnCreateRNNDataDescriptor(&e->xd));
    CUDNN_CHECK(cudnnSetRNNDataDescriptor(e->xd, CUDNN_DATA_FLOAT,
                                          CUDNN_RNN_DATA_LAYOUT_BATCH_MAJOR_UNPACKED, e->len, e->n,
                                          e->din, lens, NULL));
    CUDNN_CHECK(cudnnCreateRNNDataDescriptor(&e->yd));
    CUDNN_CHECK(cudnnSetRNNDataDescriptor(e->yd, CUDNN_DATA_FLOAT,
                                          CUDNN_RNN_DATA_LAYOUT_BATCH_MAJOR_UNPACKED, e->len, e->n,
                                          e->h, lens, NULL));
    CUDA_CHECK(cudaMalloc((void **)&e->seq, (size_t)e->n * sizeof(int32_t)));
    /* pageable source: CUDA stages it before the call returns, so lens may
     * be freed at once (as backend upload relies on) */
    CUDA_CHECK(cudaMemcpyAsync(e->seq, lens, (size_t)e->n * sizeof(int32_t),
                               cudaMemcpyHostToDevice, st));
    return DLT_OK;
}

/* Fills a zeroed entry whose key fields are set; on failure the caller
 * releases what was created. */
static dlt_status entry_init(dlt_cuda_impl *impl, lstm_entry *e)
{
    cudnnHandle_t hd = impl->cudnn;
    CUDNN_CHECK(cudnnCreateDropoutDescriptor(&e->drop));
    /* p = 0 needs no random states (and cuDNN applies dropout only between
     * its own stacked layers: there are none) */
    CUDNN_CHECK(cudnnSetDropoutDescriptor(e->drop, hd, 0.0f, NULL, 0, 0));
    CUDNN_CHECK(cudnnCreateRNNDescriptor(&e->rnn));
    const cudnnMathType_t math = math_of(e->prec);
    if (set_rnn(e->rnn, e->drop, math, e->din, e->h) != DLT_OK) {
        if (math == CUDNN_DEFAULT_MATH) return DLT_ERR_DEVICE;
        dlt_clear_error();
        DLT_CHECK(set_rnn(e->rnn, e->drop, CUDNN_DEFAULT_MATH, e->din, e->h));
    }
    int *lens = malloc((size_t)e->n * sizeof *lens);
    if (!lens) return DLT_ERR(DLT_ERR_NOMEM, "lstm: out of memory");
    for (int i = 0; i < e->n; i++) lens[i] = e->len;
    dlt_status st = set_data(e, lens, impl->stream);
    free(lens);
    DLT_CHECK(st);
    const int dims[3] = { 1, e->n, e->h }, strides[3] = { e->n * e->h, e->h, 1 };
    CUDNN_CHECK(cudnnCreateTensorDescriptor(&e->hcd));
    CUDNN_CHECK(cudnnSetTensorNdDescriptor(e->hcd, CUDNN_DATA_FLOAT, 3, dims, strides));
    CUDNN_CHECK(cudnnGetRNNWeightSpaceSize(hd, e->rnn, &e->wspace));
    CUDNN_CHECK(cudnnGetRNNTempSpaceSizes(hd, e->rnn, CUDNN_FWD_MODE_TRAINING, e->xd,
                                          &e->ws_train, &e->reserve));
    size_t no_reserve = 0;
    CUDNN_CHECK(cudnnGetRNNTempSpaceSizes(hd, e->rnn, CUDNN_FWD_MODE_INFERENCE, e->xd,
                                          &e->ws_infer, &no_reserve));
    return DLT_OK;
}

/* The cache entry of a shape in the current precision, made on first use. */
static dlt_status get_entry(dlt_backend *be, int n, int len, int din, int h, lstm_entry **out)
{
    dlt_cuda_impl *impl = dlt_cuda_of(be);
    if (!impl->lstm) {
        impl->lstm = calloc(1, sizeof *impl->lstm);
        if (!impl->lstm) return DLT_ERR(DLT_ERR_NOMEM, "lstm: out of memory");
    }
    dlt_cuda_lstm_cache *c = impl->lstm;
    for (int i = 0; i < c->n; i++) {
        lstm_entry *e = &c->e[i];
        if (e->n == n && e->len == len && e->din == din && e->h == h && e->prec == impl->prec) {
            *out = e;
            return DLT_OK;
        }
    }
    if (c->n == c->cap) {
        int cap = c->cap ? 2 * c->cap : 8;
        lstm_entry *ne = realloc(c->e, (size_t)cap * sizeof *ne);
        if (!ne) return DLT_ERR(DLT_ERR_NOMEM, "lstm: out of memory");
        c->e = ne;
        c->cap = cap;
    }
    lstm_entry *e = &c->e[c->n];
    memset(e, 0, sizeof *e);
    e->n = n;
    e->len = len;
    e->din = din;
    e->h = h;
    e->prec = impl->prec;
    dlt_status st = entry_init(impl, e);
    if (st != DLT_OK) {
        entry_release(e);
        return st;
    }
    c->n++;
    *out = e;
    return DLT_OK;
}

/* Contract: cuda_internal.h. */
void dlt_cuda_lstm_free(dlt_cuda_impl *impl)
{
    if (!impl->lstm) return;
    for (int i = 0; i < impl->lstm->n; i++) entry_release(&impl->lstm->e[i]);
    free(impl->lstm->e);
    free(impl->lstm);
    impl->lstm = NULL;
}

/* Elements of a tensor descriptor (cuDNN describes a gate's matrix as a
 * 3-d (1, h, in) tensor; only the count is relied on). */
static dlt_status desc_numel(cudnnTensorDescriptor_t d, size_t *numel)
{
    cudnnDataType_t dt;
    int nd = 0, dims[8], strides[8];
    CUDNN_CHECK(cudnnGetTensorNdDescriptor(d, 8, &dt, &nd, dims, strides));
    size_t k = 1;
    for (int i = 0; i < nd && i < 8; i++) k *= (size_t)(dims[i] > 0 ? dims[i] : 0);
    *numel = k;
    return DLT_OK;
}

/* Floats of tensor t's gate block. */
static size_t block_floats(const lstm_entry *e, int t)
{
    return (size_t)e->h * (t == T_WIH ? (size_t)e->din : t == T_WHH ? (size_t)e->h : 1);
}

/* Fills e->off and e->contig from cudnnGetRNNWeightParams (which only does
 * address arithmetic on wspace), checking every block's size. */
static dlt_status find_offsets(dlt_cuda_impl *impl, lstm_entry *e, const char *wsp,
                               cudnnTensorDescriptor_t md, cudnnTensorDescriptor_t bd)
{
    const size_t fsz = sizeof(float), hh = (size_t)e->h;
    for (int lin = 0; lin < 8; lin++) {
        void *m = NULL, *b = NULL;
        CUDNN_CHECK(cudnnGetRNNWeightParams(impl->cudnn, e->rnn, 0, e->wspace, wsp, lin, md, &m,
                                            bd, &b));
        const int rec = lin >= 4, q = lin % 4;
        size_t mn = 0, bn = 0;
        DLT_CHECK(desc_numel(md, &mn));
        DLT_CHECK(desc_numel(bd, &bn));
        const size_t want = block_floats(e, rec ? T_WHH : T_WIH);
        if (!m || !b || mn != want || bn != hh)
            return DLT_ERR(DLT_ERR_DEVICE,
                           "cuDNN's LSTM weight space is not laid out as expected (linear layer "
                           "%d: matrix %zu of %zu floats, bias %zu of %zu)",
                           lin, mn, want, bn, hh);
        e->off[rec ? T_WHH : T_WIH][q] = (size_t)((const char *)m - wsp);
        e->off[rec ? T_BHH : T_BIH][q] = (size_t)((const char *)b - wsp);
        if (e->off[rec ? T_WHH : T_WIH][q] + want * fsz > e->wspace ||
            e->off[rec ? T_BHH : T_BIH][q] + hh * fsz > e->wspace)
            return DLT_ERR(DLT_ERR_DEVICE, "cuDNN's LSTM weight block %d lies outside the "
                           "weight space", lin);
    }
    for (int t = 0; t < T_N; t++) {
        const size_t blk = block_floats(e, t) * fsz;
        e->contig[t] = 1;
        for (int q = 1; q < 4; q++)
            if (e->off[t][q] != e->off[t][0] + (size_t)q * blk) e->contig[t] = 0;
    }
    return DLT_OK;
}

static dlt_status ensure_offsets(dlt_cuda_impl *impl, lstm_entry *e, const char *wsp)
{
    if (e->have_off) return DLT_OK;
    cudnnTensorDescriptor_t md = NULL, bd = NULL;
    CUDNN_CHECK(cudnnCreateTensorDescriptor(&md));
    if (cudnnCreateTensorDescriptor(&bd) != CUDNN_STATUS_SUCCESS) {
        cudnnDestroyTensorDescriptor(md);
        return DLT_ERR(DLT_ERR_DEVICE, "cudnnCreateTensorDescriptor failed");
    }
    dlt_status st = find_offsets(impl, e, wsp, md, bd);
    cudnnDestroyTensorDescriptor(md);
    cudnnDestroyTensorDescriptor(bd);
    if (st == DLT_OK) e->have_off = 1;
    return st;
}

/* torch tensors -> cuDNN weight space at wsp. */
static dlt_status copy_weights(const lstm_entry *e, char *wsp, const float *const src[T_N],
                               cudaStream_t st)
{
    for (int t = 0; t < T_N; t++) {
        const size_t blk = block_floats(e, t) * sizeof(float);
        if (e->contig[t]) {
            CUDA_CHECK(cudaMemcpyAsync(wsp + e->off[t][0], src[t], 4 * blk,
                                       cudaMemcpyDeviceToDevice, st));
            continue;
        }
        for (int q = 0; q < 4; q++)
            CUDA_CHECK(cudaMemcpyAsync(wsp + e->off[t][q], (const char *)src[t] + q * blk, blk,
                                       cudaMemcpyDeviceToDevice, st));
    }
    return DLT_OK;
}

/* torch gradient tensors += cuDNN weight gradients at dwsp. */
static dlt_status add_grads(dlt_backend *be, const lstm_entry *e, const char *dwsp,
                            float *const dst[T_N])
{
    for (int t = 0; t < T_N; t++) {
        const size_t blk = block_floats(e, t);
        if (e->contig[t]) {
            DLT_CHECK(dlt_cuda_axpy(be, 4 * blk, 1.0f, (const float *)(dwsp + e->off[t][0]),
                                    dst[t]));
            continue;
        }
        for (int q = 0; q < 4; q++)
            DLT_CHECK(dlt_cuda_axpy(be, blk, 1.0f, (const float *)(dwsp + e->off[t][q]),
                                    dst[t] + (size_t)q * blk));
    }
    return DLT_OK;
}

/* Byte sizes of the parts of saved and ws (file comment). */
static size_t saved_bytes(const lstm_entry *e) { return align_up(e->wspace) + align_up(e->reserve); }
static size_t dx_bytes(const lstm_entry *e)
{
    return align_up((size_t)e->n * e->len * e->din * sizeof(float));
}
static size_t ws_bytes(const lstm_entry *e)
{
    const size_t cw = e->ws_train > e->ws_infer ? e->ws_train : e->ws_infer;
    return dx_bytes(e) + align_up(e->wspace) + align_up(cw);
}

/* Contract: backend.h lstm_sizes. */
dlt_status dlt_cuda_lstm_sizes(dlt_backend *be, int n, int len, int din, int h,
                               size_t *saved_floats, size_t *ws_floats)
{
    DLT_CHECK(check_sizes(n, len, din, h, "lstm_sizes"));
    *saved_floats = *ws_floats = 0;
    if (n == 0) return DLT_OK;
    CUDA_ENTER(be);
    lstm_entry *e;
    DLT_CHECK(get_entry(be, n, len, din, h, &e));
    *saved_floats = saved_bytes(e) / sizeof(float);
    *ws_floats = ws_bytes(e) / sizeof(float);
    return DLT_OK;
}

/* Contract: backend.h lstm_fwd. */
dlt_status dlt_cuda_lstm_fwd(dlt_backend *be, int train, int n, int len, int din, int h,
                             const float *x, const float *w_ih, const float *w_hh,
                             const float *b_ih, const float *b_hh, const float *h0,
                             const float *c0, float *y, float *h_last, float *c_last,
                             float *saved, float *ws)
{
    DLT_CHECK(check_sizes(n, len, din, h, "lstm_fwd"));
    if (n == 0) return DLT_OK;
    CUDA_ENTER(be);
    dlt_cuda_impl *impl = dlt_cuda_of(be);
    lstm_entry *e;
    DLT_CHECK(get_entry(be, n, len, din, h, &e));
    char *wsp = (char *)saved, *reserve = wsp + align_up(e->wspace);
    DLT_CHECK(ensure_offsets(impl, e, wsp));
    const float *const src[T_N] = { w_ih, w_hh, b_ih, b_hh };
    DLT_CHECK(copy_weights(e, wsp, src, impl->stream));
    CUDNN_CHECK(cudnnRNNForward(impl->cudnn, e->rnn,
                                train ? CUDNN_FWD_MODE_TRAINING : CUDNN_FWD_MODE_INFERENCE,
                                e->seq, e->xd, x, e->yd, y, e->hcd, h0, h_last, e->hcd, c0, c_last,
                                e->wspace, wsp, train ? e->ws_train : e->ws_infer, ws,
                                train ? e->reserve : 0, train ? reserve : NULL));
    return DLT_OK;
}

/* Contract: backend.h lstm_bwd. */
dlt_status dlt_cuda_lstm_bwd(dlt_backend *be, int n, int len, int din, int h, const float *x,
                             const float *w_ih, const float *w_hh, const float *h0,
                             const float *c0, const float *y, float *saved, const float *dy,
                             float *dx, float *dw_ih, float *dw_hh, float *db_ih, float *db_hh,
                             float *ws)
{
    DLT_CHECK(check_sizes(n, len, din, h, "lstm_bwd"));
    if (n == 0) return DLT_OK;
    CUDA_ENTER(be);
    dlt_cuda_impl *impl = dlt_cuda_of(be);
    lstm_entry *e;
    DLT_CHECK(get_entry(be, n, len, din, h, &e));
    if (!e->have_off)
        return DLT_ERR(DLT_ERR_INVALID, "lstm_bwd: no training lstm_fwd of this shape ran");
    char *wsp = (char *)saved, *reserve = wsp + align_up(e->wspace);
    float *dxs = ws;                                   /* (n, len, din) */
    char *dwsp = (char *)ws + dx_bytes(e);             /* weight-gradient space */
    char *cws = dwsp + align_up(e->wspace);            /* cuDNN workspace */
    CUDA_CHECK(cudaMemsetAsync(dwsp, 0, e->wspace, impl->stream));
    CUDNN_CHECK(cudnnRNNBackwardData_v8(impl->cudnn, e->rnn, e->seq, e->yd, y, dy, e->xd, dxs,
                                        e->hcd, h0, NULL, NULL, e->hcd, c0, NULL, NULL, e->wspace,
                                        wsp, e->ws_train, cws, e->reserve, reserve));
    CUDNN_CHECK(cudnnRNNBackwardWeights_v8(impl->cudnn, e->rnn, CUDNN_WGRAD_MODE_ADD, e->seq,
                                           e->xd, x, e->hcd, h0, e->yd, y, e->wspace, dwsp,
                                           e->ws_train, cws, e->reserve, reserve));
    if (dx) DLT_CHECK(dlt_cuda_axpy(be, (size_t)n * len * din, 1.0f, dxs, dx));
    float *const dst[T_N] = { dw_ih, dw_hh, db_ih, db_hh };
    return add_grads(be, e, dwsp, dst);
}
