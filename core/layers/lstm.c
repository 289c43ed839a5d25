/* "lstm": a stack of LSTM layers on (n, len, din) -> (n, len, hidden), as
 * torch.nn.LSTM(din, hidden, layers, dropout=dropout, batch_first=True):
 * torch's gate order and parameter names (weight_ih_l0, weight_hh_l0,
 * bias_ih_l0, bias_hh_l0, ...), dropout on the outputs of every layer but
 * the last (training only), full backpropagation through time over len.
 * The backend's lstm_fwd/lstm_bwd do one layer over the whole sequence.
 *
 * stateful: true carries the final (h, c) of each layer from one batch to
 * the next (truncated BPTT for language models over contiguous text): the
 * state is persistent (checkpointed) layer state, copied into the step's
 * initial (h0, c0) at the start of forward and overwritten by the op's
 * final states (lstm_fwd's h_last, c_last), so backward still sees the step's own h0/c0 and no gradient
 * crosses batches (the carried state is detached). Sample i of a batch
 * continues sample i of the previous one; dlt_model_reset_state() (via
 * dlt_layer_reset_state) zeroes the state, which the trainer does at each
 * epoch start and before evaluation.
 *
 * Per-step tensors share one carved buffer (the layer table has 8 buffer
 * slots; a 4-layer stack needs up to 24 regions). At most 4 layers: four
 * parameters each fill the layer's 16 parameter slots.
 *
 * What backward needs from each layer's forward is the backend's business
 * ("saved", backend.h lstm_sizes: gates and cell states on the CPU, cuDNN's
 * weight and reserve space on CUDA), so its size is asked of the backend at
 * setup for the largest batch, per layer (the first one's input width
 * differs), and so is the op's scratch, which sits in the shared workspace
 * after backward's two (n, len, h) gradient buffers. Every call is checked
 * against those plans (a smaller last batch, a precision changed later). */
#include <stdlib.h>

#include "core/layers/seq_internal.h"

#define LSTM_MAX_LAYERS (DLT_MAX_PARAMS / 4)
#define LSTM_ALIGN 64 /* floats: 256-byte alignment of every region (cuDNN's buffers) */

static const dlt_key_spec lstm_keys[] = {
    { "hidden", DLT_KEY_INT, NULL, "hidden (and output) width" },
    { "layers", DLT_KEY_INT, "1", "stacked LSTM layers, 1 to 4" },
    { "dropout", DLT_KEY_FLOAT, "0.0", "dropout between stacked layers (training only)" },
    { "stateful", DLT_KEY_BOOL, "false", "carry the final (h, c) to the next batch, detached" },
    { NULL, 0, NULL, NULL },
};

/* Per-step regions of layer k, each for max_n samples. */
enum { RG_SAVED, RG_Y, RG_MASK, RG_DROP, RG_H0, RG_C0, RG_N };

typedef struct {
    int len, din, h, layers, stateful;
    float drop;
    int64_t max_n;
    float *buf;        /* carved per-step regions, see reg() */
    size_t off[LSTM_MAX_LAYERS][RG_N]; /* region offsets in buf, floats */
    size_t saved_cap[LSTM_MAX_LAYERS]; /* floats of RG_SAVED of layer k */
    size_t ws_cap;     /* floats of backend scratch, the largest of the layers' */
    size_t ws_off;     /* where that scratch starts in the workspace, floats */
    float *state;      /* (layers, 2, max_n, h): carried h then c of each layer */
    int dropped;       /* the last forward applied dropout */
} lstm_priv;

static size_t align_up(size_t n) { return (n + LSTM_ALIGN - 1) / LSTM_ALIGN * LSTM_ALIGN; }

/* Floats of region r of layer k for max_n samples. */
static size_t reg_len(const lstm_priv *p, int k, int r)
{
    const size_t lh = (size_t)p->max_n * p->len * p->h;
    switch (r) {
    case RG_SAVED: return p->saved_cap[k];
    case RG_H0:
    case RG_C0: return p->stateful ? (size_t)p->max_n * p->h : 0;
    case RG_MASK:
    case RG_DROP: return p->drop > 0.0f ? lh : 0;
    default: return lh;
    }
}

static float *reg(const lstm_priv *p, int k, int r) { return p->buf + p->off[k][r]; }

/* Input width of layer k. */
static int din_of(const lstm_priv *p, int k) { return k ? p->h : p->din; }

static dlt_status lstm_setup(dlt_layer *l)
{
    const dlt_shape *xs = &l->x[0].shape;
    if (!dlt_seq_is_3d(xs)) {
        char b[96];
        return DLT_LAYER_ERR(l, DLT_ERR_SHAPE, "input %s is not (n, len, features)",
                             dlt_shape_str(xs, b, sizeof b));
    }
    long hid, layers;
    DLT_CHECK(dlt_spec_int_min(l, "hidden", 1, &hid));
    DLT_CHECK(dlt_spec_int_min(l, "layers", 1, &layers));
    if (layers > LSTM_MAX_LAYERS)
        return DLT_LAYER_ERR(l, DLT_ERR_CONFIG, "layers must be <= %d (got %ld); stack several "
                             "lstm layers for more", LSTM_MAX_LAYERS, layers);
    double drop = dlt_spec_float(l->spec, lstm_keys, "dropout");
    if (!(drop >= 0.0 && drop < 1.0))
        return DLT_LAYER_ERR(l, DLT_ERR_CONFIG, "dropout must be in [0, 1) (got %g)", drop);
    lstm_priv *p = calloc(1, sizeof *p);
    if (!p) return DLT_LAYER_ERR(l, DLT_ERR_NOMEM, "out of memory");
    l->priv = p;
    p->len = (int)xs->d[1];
    p->din = (int)xs->d[2];
    p->h = (int)hid;
    p->layers = (int)layers;
    p->drop = (float)drop;
    p->stateful = (int)dlt_spec_int(l->spec, lstm_keys, "stateful");
    p->max_n = xs->d[0];
    const int64_t H = hid;
    for (int k = 0; k < p->layers; k++) {
        const int64_t in = k ? H : p->din;
        char nm[32];
        snprintf(nm, sizeof nm, "weight_ih_l%d", k);
        dlt_layer_add_param(l, nm, (dlt_shape){ 2, { 4 * H, in } }, DLT_INIT_UNIFORM_FAN_IN, H);
        snprintf(nm, sizeof nm, "weight_hh_l%d", k);
        dlt_layer_add_param(l, nm, (dlt_shape){ 2, { 4 * H, H } }, DLT_INIT_UNIFORM_FAN_IN, H);
        snprintf(nm, sizeof nm, "bias_ih_l%d", k);
        dlt_layer_add_param(l, nm, (dlt_shape){ 1, { 4 * H } }, DLT_INIT_UNIFORM_FAN_IN, H);
        snprintf(nm, sizeof nm, "bias_hh_l%d", k);
        dlt_layer_add_param(l, nm, (dlt_shape){ 1, { 4 * H } }, DLT_INIT_UNIFORM_FAN_IN, H);
        l->flops += 8.0 * (double)p->len * H * (double)(in + H);
    }
    size_t total = 0;
    for (int k = 0; k < p->layers; k++) {
        size_t saved, ws;
        if (l->be->lstm_sizes(l->be, (int)p->max_n, p->len, din_of(p, k), p->h, &saved, &ws) !=
            DLT_OK)
            return DLT_LAYER_ERR(l, DLT_ERR_SHAPE, "%s", dlt_last_error());
        p->saved_cap[k] = align_up(saved);
        if (align_up(ws) > p->ws_cap) p->ws_cap = align_up(ws);
        for (int r = 0; r < RG_N; r++) {
            p->off[k][r] = total;
            total += align_up(reg_len(p, k, r));
        }
    }
    dlt_layer_add_buffer(l, &p->buf, (int64_t)total);
    if (p->stateful) dlt_layer_add_state(l, "state", &p->state, 2 * p->layers * p->max_n * H);
    l->y.shape = (dlt_shape){ 3, { p->max_n, p->len, H } };
    /* backward's d input and dy of the layer below, then the op's scratch */
    p->ws_off = 2 * align_up((size_t)p->max_n * p->len * p->h);
    l->workspace_bytes = (p->ws_off + p->ws_cap) * sizeof(float);
    return DLT_OK;
}

void dlt_layer_reset_state(dlt_layer *l)
{
    if (l->ops != &dlt_layer_lstm || !l->priv) return;
    lstm_priv *p = l->priv;
    if (p->state)
        (void)l->be->fill(l->be, p->state, (size_t)(2 * p->layers * p->max_n * p->h), 0.0f);
}

/* Carried h (which 0) or c (1) of layer k. */
static float *carried(const lstm_priv *p, int k, int which)
{
    return p->state + ((size_t)k * 2 + (size_t)which) * (size_t)p->max_n * p->h;
}

/* This call's sizes must fit the regions planned at setup: a batch n <
 * max_n (the backend promises sizes non-decreasing in n) or a GEMM precision
 * changed after build (cuDNN's sizes may follow the math type). A host-side
 * query; this keeps a broken promise from overrunning the buffers. */
static dlt_status sizes_fit(dlt_layer *l, const lstm_priv *p, int k, int n)
{
    size_t saved, ws;
    DLT_CHECK(l->be->lstm_sizes(l->be, n, p->len, din_of(p, k), p->h, &saved, &ws));
    if (saved > p->saved_cap[k] || ws > p->ws_cap)
        return DLT_LAYER_ERR(l, DLT_ERR_SHAPE,
                             "backend %s needs more LSTM state for batch %d (%zu saved, %zu "
                             "scratch floats) than planned for batch %lld (%zu, %zu)",
                             l->be->name, n, saved, ws, (long long)p->max_n, p->saved_cap[k],
                             p->ws_cap);
    return DLT_OK;
}

static dlt_status lstm_forward(dlt_layer *l, const dlt_step_ctx *ctx, int n)
{
    lstm_priv *p = l->priv;
    dlt_backend *be = l->be;
    const dlt_param *P = l->params;
    const size_t lh = (size_t)p->len * p->h, nh = (size_t)n * p->h;
    float *ws = (float *)l->workspace + p->ws_off;
    p->dropped = ctx->train && p->drop > 0.0f;
    const float *in = l->x[0].data;
    for (int k = 0; k < p->layers; k++) {
        DLT_CHECK(sizes_fit(l, p, k, n));
        if (k > 0 && p->dropped) {
            DLT_CHECK(be->dropout_fwd(be, (size_t)n * lh, p->drop, dlt_seq_dropout_key(l, ctx, k),
                                      (uint64_t)ctx->sample0 * lh, in, reg(p, k, RG_DROP),
                                      reg(p, k, RG_MASK)));
            in = reg(p, k, RG_DROP);
        }
        float *out = k == p->layers - 1 ? l->y.data : reg(p, k, RG_Y);
        float *h0 = NULL, *c0 = NULL, *h_last = NULL, *c_last = NULL;
        if (p->stateful) {
            /* the step's own copy of the initial state, for backward; the
             * op then overwrites the carried state with the final one */
            h0 = reg(p, k, RG_H0);
            c0 = reg(p, k, RG_C0);
            h_last = carried(p, k, 0);
            c_last = carried(p, k, 1);
            DLT_CHECK(be->copy(be, h0, h_last, nh * sizeof(float)));
            DLT_CHECK(be->copy(be, c0, c_last, nh * sizeof(float)));
        }
        const int j = 4 * k;
        DLT_CHECK(be->lstm_fwd(be, ctx->train, n, p->len, din_of(p, k), p->h, in, P[j].w,
                               P[j + 1].w, P[j + 2].w, P[j + 3].w, h0, c0, out, h_last, c_last,
                               reg(p, k, RG_SAVED), ws));
        in = out;
    }
    return DLT_OK;
}

static dlt_status lstm_backward(dlt_layer *l, const dlt_step_ctx *ctx, int n)
{
    lstm_priv *p = l->priv;
    dlt_backend *be = l->be;
    const dlt_param *P = l->params;
    const size_t nlh = (size_t)n * p->len * p->h;
    float *X = l->workspace;                                         /* d input of k */
    float *Y = X + align_up((size_t)p->max_n * p->len * p->h);       /* dy of k - 1 */
    float *ws = (float *)l->workspace + p->ws_off;
    const float *dy = l->dy.data;
    for (int k = p->layers - 1; k >= 0; k--) {
        const float *in = k == 0 ? l->x[0].data
                                 : (p->dropped ? reg(p, k, RG_DROP) : reg(p, k - 1, RG_Y));
        const float *out = k == p->layers - 1 ? l->y.data : reg(p, k, RG_Y);
        float *dx = k == 0 ? l->dx[0].data : X;
        if (k > 0) DLT_CHECK(be->fill(be, X, nlh, 0.0f));
        const int j = 4 * k;
        const float *h0 = p->stateful ? reg(p, k, RG_H0) : NULL;
        const float *c0 = p->stateful ? reg(p, k, RG_C0) : NULL;
        DLT_CHECK(be->lstm_bwd(be, n, p->len, din_of(p, k), p->h, in, P[j].w, P[j + 1].w, h0, c0,
                               out, reg(p, k, RG_SAVED), dy, dx, P[j].g, P[j + 1].g, P[j + 2].g,
                               P[j + 3].g, ws));
        if (k == 0) break;
        /* dy of layer k-1's output: through the dropout between the layers */
        DLT_CHECK(be->fill(be, Y, nlh, 0.0f));
        if (p->dropped) DLT_CHECK(be->mul_acc(be, nlh, X, reg(p, k, RG_MASK), Y));
        else DLT_CHECK(be->axpy(be, nlh, 1.0f, X, Y));
        dy = Y;
    }
    return DLT_OK;
}

const dlt_layer_ops dlt_layer_lstm = {
    .type = "lstm",
    .keys = lstm_keys,
    .n_inputs = 1,
    .is_loss = 0,
    .setup = lstm_setup,
    .init = NULL,
    .forward = lstm_forward,
    .backward = lstm_backward,
    .free = NULL,
};
