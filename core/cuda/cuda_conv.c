/* CUDA 2-D convolution through cuDNN's legacy (v7-style) API.
 *
 * cuDNN 9 marks these functions deprecated but keeps them; the warning is
 * silenced for this file only (the graph API would be the replacement, for
 * far more code). Cross-correlation, NCHW, fp32 data; cuDNN may use TF32
 * tensor cores (CUDNN_DEFAULT_MATH), as PyTorch does by default for convs.
 *
 * Descriptors and algorithm choices are built once per geometry and cached
 * (a short list: a model has a handful of conv shapes, times the last
 * partial batch). Algorithms come from cuDNN's heuristics
 * (cudnnGet*Algorithm_v7), which run nothing on the GPU: the first one in
 * cuDNN's speed order that is deterministic (so training is reproducible),
 * keeps fp32 inputs (no fp16 down-conversion) and fits the workspace limit;
 * a non-deterministic one only if no deterministic one qualifies.
 *
 * Workspace: conv2d_workspace(g) is called at model build time for the
 * largest batch and caches that geometry with a limit of
 * min(512 MiB, GPU memory / 8). A step with a smaller batch creates its own
 * entry whose limit is the workspace planned for the same layer with a
 * larger batch (the buffer the caller actually passes), so an op never uses
 * more workspace than was planned. Backward ops accumulate (beta = 1). */
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"

#include <stdlib.h>
#include <string.h>

#include "core/cuda/cuda_internal.h"

#define CONV_WS_CAP ((size_t)512 << 20)

typedef struct {
    int key[9]; /* n c h w k r s stride pad */
    cudnnTensorDescriptor_t x, y;
    cudnnFilterDescriptor_t w;
    cudnnConvolutionDescriptor_t conv;
    cudnnConvolutionFwdAlgo_t fwd;
    cudnnConvolutionBwdDataAlgo_t bwd_data;
    cudnnConvolutionBwdFilterAlgo_t bwd_filter;
    cudnnMathType_t fwd_math, bwd_data_math, bwd_filter_math;
    size_t fwd_ws, bwd_data_ws, bwd_filter_ws;
} conv_entry;

struct dlt_cuda_conv_cache {
    conv_entry *e;
    int n, cap;
};

/* One heuristic result, whichever direction it came from. */
typedef struct {
    int algo;
    cudnnStatus_t status;
    cudnnDeterminism_t det;
    cudnnMathType_t math;
} perf_item;

static void make_key(const dlt_conv_geom *g, int key[9])
{
    const int k[9] = { g->n, g->c, g->h, g->w, g->k, g->r, g->s, g->stride, g->pad };
    memcpy(key, k, sizeof k);
}

static size_t entry_ws(const conv_entry *e)
{
    size_t m = e->fwd_ws;
    if (e->bwd_data_ws > m) m = e->bwd_data_ws;
    if (e->bwd_filter_ws > m) m = e->bwd_filter_ws;
    return m;
}

static void entry_release(conv_entry *e)
{
    if (e->x) cudnnDestroyTensorDescriptor(e->x);
    if (e->y) cudnnDestroyTensorDescriptor(e->y);
    if (e->w) cudnnDestroyFilterDescriptor(e->w);
    if (e->conv) cudnnDestroyConvolutionDescriptor(e->conv);
    memset(e, 0, sizeof *e);
}

/* Is perf item p acceptable in pass `pass` (0: deterministic only)? */
static int acceptable(const perf_item *p, int pass)
{
    if (p->status != CUDNN_STATUS_SUCCESS) return 0;
    if (p->math == CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION) return 0;
    return pass == 1 || p->det == CUDNN_DETERMINISTIC;
}

/* Fills e->fwd*, the fastest acceptable forward algorithm within limit. */
static dlt_status pick_fwd(cudnnHandle_t h, conv_entry *e, size_t limit)
{
    cudnnConvolutionFwdAlgoPerf_t perf[CUDNN_CONVOLUTION_FWD_ALGO_COUNT];
    int got = 0;
    /* query with the default math, not the math type the previous pick left set */
    CUDNN_CHECK(cudnnSetConvolutionMathType(e->conv, CUDNN_DEFAULT_MATH));
    CUDNN_CHECK(cudnnGetConvolutionForwardAlgorithm_v7(h, e->x, e->w, e->conv, e->y,
                                                       CUDNN_CONVOLUTION_FWD_ALGO_COUNT, &got,
                                                       perf));
    for (int pass = 0; pass < 2; pass++)
        for (int i = 0; i < got; i++) {
            perf_item p = { (int)perf[i].algo, perf[i].status, perf[i].determinism,
                            perf[i].mathType };
            if (!acceptable(&p, pass)) continue;
            size_t ws = 0;
            CUDNN_CHECK(cudnnSetConvolutionMathType(e->conv, p.math));
            if (cudnnGetConvolutionForwardWorkspaceSize(h, e->x, e->w, e->conv, e->y,
                                                        perf[i].algo, &ws) != CUDNN_STATUS_SUCCESS ||
                ws > limit)
                continue;
            e->fwd = perf[i].algo;
            e->fwd_math = p.math;
            e->fwd_ws = ws;
            return DLT_OK;
        }
    return DLT_ERR(DLT_ERR_DEVICE, "cuDNN offers no forward convolution algorithm within %zu "
                   "bytes of workspace", limit);
}

static dlt_status pick_bwd_data(cudnnHandle_t h, conv_entry *e, size_t limit)
{
    cudnnConvolutionBwdDataAlgoPerf_t perf[CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT];
    int got = 0;
    CUDNN_CHECK(cudnnSetConvolutionMathType(e->conv, CUDNN_DEFAULT_MATH));
    CUDNN_CHECK(cudnnGetConvolutionBackwardDataAlgorithm_v7(
        h, e->w, e->y, e->conv, e->x, CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT, &got, perf));
    for (int pass = 0; pass < 2; pass++)
        for (int i = 0; i < got; i++) {
            perf_item p = { (int)perf[i].algo, perf[i].status, perf[i].determinism,
                            perf[i].mathType };
            if (!acceptable(&p, pass)) continue;
            size_t ws = 0;
            CUDNN_CHECK(cudnnSetConvolutionMathType(e->conv, p.math));
            if (cudnnGetConvolutionBackwardDataWorkspaceSize(h, e->w, e->y, e->conv, e->x,
                                                             perf[i].algo,
                                                             &ws) != CUDNN_STATUS_SUCCESS ||
                ws > limit)
                continue;
            e->bwd_data = perf[i].algo;
            e->bwd_data_math = p.math;
            e->bwd_data_ws = ws;
            return DLT_OK;
        }
    return DLT_ERR(DLT_ERR_DEVICE, "cuDNN offers no backward-data convolution algorithm within "
                   "%zu bytes of workspace", limit);
}

static dlt_status pick_bwd_filter(cudnnHandle_t h, conv_entry *e, size_t limit)
{
    cudnnConvolutionBwdFilterAlgoPerf_t perf[CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT];
    int got = 0;
    CUDNN_CHECK(cudnnSetConvolutionMathType(e->conv, CUDNN_DEFAULT_MATH));
    CUDNN_CHECK(cudnnGetConvolutionBackwardFilterAlgorithm_v7(
        h, e->x, e->y, e->conv, e->w, CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT, &got, perf));
    for (int pass = 0; pass < 2; pass++)
        for (int i = 0; i < got; i++) {
            perf_item p = { (int)perf[i].algo, perf[i].status, perf[i].determinism,
                            perf[i].mathType };
            if (!acceptable(&p, pass)) continue;
            size_t ws = 0;
            CUDNN_CHECK(cudnnSetConvolutionMathType(e->conv, p.math));
            if (cudnnGetConvolutionBackwardFilterWorkspaceSize(h, e->x, e->y, e->conv, e->w,
                                                               perf[i].algo,
                                                               &ws) != CUDNN_STATUS_SUCCESS ||
                ws > limit)
                continue;
            e->bwd_filter = perf[i].algo;
            e->bwd_filter_math = p.math;
            e->bwd_filter_ws = ws;
            return DLT_OK;
        }
    return DLT_ERR(DLT_ERR_DEVICE, "cuDNN offers no backward-filter convolution algorithm "
                   "within %zu bytes of workspace", limit);
}

/* Builds descriptors and algorithms of g into e (zeroed by the caller). */
static dlt_status entry_init(cudnnHandle_t h, const dlt_conv_geom *g, size_t limit, conv_entry *e)
{
    make_key(g, e->key);
    CUDNN_CHECK(cudnnCreateTensorDescriptor(&e->x));
    CUDNN_CHECK(cudnnCreateTensorDescriptor(&e->y));
    CUDNN_CHECK(cudnnCreateFilterDescriptor(&e->w));
    CUDNN_CHECK(cudnnCreateConvolutionDescriptor(&e->conv));
    CUDNN_CHECK(cudnnSetTensor4dDescriptor(e->x, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, g->n, g->c,
                                           g->h, g->w));
    CUDNN_CHECK(cudnnSetFilter4dDescriptor(e->w, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NCHW, g->k, g->c,
                                           g->r, g->s));
    CUDNN_CHECK(cudnnSetConvolution2dDescriptor(e->conv, g->pad, g->pad, g->stride, g->stride, 1,
                                                1, CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT));
    int on, ok, oh, ow;
    CUDNN_CHECK(cudnnGetConvolution2dForwardOutputDim(e->conv, e->x, e->w, &on, &ok, &oh, &ow));
    if (on != g->n || ok != g->k || oh != g->oh || ow != g->ow)
        return DLT_ERR(DLT_ERR_SHAPE, "conv2d: cuDNN computes output %dx%dx%dx%d, geometry says "
                       "%dx%dx%dx%d", on, ok, oh, ow, g->n, g->k, g->oh, g->ow);
    CUDNN_CHECK(cudnnSetTensor4dDescriptor(e->y, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, g->n, g->k,
                                           g->oh, g->ow));
    DLT_CHECK(pick_fwd(h, e, limit));
    DLT_CHECK(pick_bwd_data(h, e, limit));
    DLT_CHECK(pick_bwd_filter(h, e, limit));
    return DLT_OK;
}

/* The CPU backend's geometry checks, so both backends reject the same calls. */
static dlt_status check_geom(const dlt_conv_geom *g, const char *op)
{
    if (!g) return DLT_ERR(DLT_ERR_INVALID, "%s: NULL geometry", op);
    if (g->n < 0 || g->c <= 0 || g->h <= 0 || g->w <= 0 || g->k <= 0 || g->r <= 0 ||
        g->s <= 0 || g->stride <= 0 || g->pad < 0)
        return DLT_ERR(DLT_ERR_SHAPE,
                       "%s: bad geometry n=%d c=%d h=%d w=%d k=%d r=%d s=%d stride=%d pad=%d", op,
                       g->n, g->c, g->h, g->w, g->k, g->r, g->s, g->stride, g->pad);
    if (g->h + 2 * g->pad < g->r || g->w + 2 * g->pad < g->s ||
        g->oh != (g->h + 2 * g->pad - g->r) / g->stride + 1 ||
        g->ow != (g->w + 2 * g->pad - g->s) / g->stride + 1 || g->oh <= 0 || g->ow <= 0)
        return DLT_ERR(DLT_ERR_SHAPE,
                       "%s: output %dx%d does not match input %dx%d, kernel %dx%d, stride %d, "
                       "pad %d (call dlt_conv_geom_finish)",
                       op, g->oh, g->ow, g->h, g->w, g->r, g->s, g->stride, g->pad);
    return DLT_OK;
}

/* The cached entry of g, created when missing. planned != 0: build-time call
 * (limit = the cap); else the limit is the largest workspace planned for the
 * same layer shape with at least g->n samples (0 if none). */
static dlt_status get_entry(dlt_backend *be, const dlt_conv_geom *g, int planned, conv_entry **out)
{
    dlt_cuda_impl *impl = dlt_cuda_of(be);
    if (!impl->conv) {
        impl->conv = calloc(1, sizeof *impl->conv);
        if (!impl->conv) return DLT_ERR(DLT_ERR_NOMEM, "conv2d: out of memory");
    }
    dlt_cuda_conv_cache *cc = impl->conv;
    int key[9];
    make_key(g, key);
    size_t limit = 0;
    for (int i = 0; i < cc->n; i++) {
        if (memcmp(cc->e[i].key, key, sizeof key) == 0) {
            *out = &cc->e[i];
            return DLT_OK;
        }
        if (memcmp(cc->e[i].key + 1, key + 1, sizeof key - sizeof key[0]) == 0 &&
            cc->e[i].key[0] >= key[0] && entry_ws(&cc->e[i]) > limit)
            limit = entry_ws(&cc->e[i]);
    }
    if (planned) {
        size_t cap = impl->prop.totalGlobalMem / 8;
        limit = cap < CONV_WS_CAP ? cap : CONV_WS_CAP;
    }
    if (cc->n == cc->cap) {
        int cap = cc->cap ? 2 * cc->cap : 8;
        conv_entry *e = realloc(cc->e, (size_t)cap * sizeof *e);
        if (!e) return DLT_ERR(DLT_ERR_NOMEM, "conv2d: out of memory");
        cc->e = e;
        cc->cap = cap;
    }
    conv_entry *e = &cc->e[cc->n];
    memset(e, 0, sizeof *e);
    dlt_status st = entry_init(impl->cudnn, g, limit, e);
    if (st != DLT_OK) {
        entry_release(e);
        return st;
    }
    cc->n++;
    *out = e;
    return DLT_OK;
}

/* Releases the cache of impl (called when the backend is destroyed). */
void dlt_cuda_conv_free(dlt_cuda_impl *impl)
{
    if (!impl->conv) return;
    for (int i = 0; i < impl->conv->n; i++) entry_release(&impl->conv->e[i]);
    free(impl->conv->e);
    free(impl->conv);
    impl->conv = NULL;
}

/* Contract: bytes of workspace the three conv ops need for g (the largest of
 * the three), choosing and caching algorithms; 0 for an invalid geometry or
 * on a cuDNN failure (the op itself then reports the error). */
size_t dlt_cuda_conv2d_workspace(dlt_backend *be, const dlt_conv_geom *g)
{
    if (check_geom(g, "conv2d_workspace") != DLT_OK || g->n == 0) {
        dlt_clear_error();
        return 0;
    }
    if (cudaSetDevice(dlt_cuda_of(be)->device) != cudaSuccess) return 0;
    conv_entry *e = NULL;
    if (get_entry(be, g, 1, &e) != DLT_OK) {
        dlt_clear_error();
        return 0;
    }
    return entry_ws(e);
}

/* Entry for an op call: geometry checked, device current, workspace present;
 * *out is NULL (and DLT_OK returned) for an empty batch. */
static dlt_status op_entry(dlt_backend *be, const dlt_conv_geom *g, const void *ws, size_t need_of,
                           const char *op, conv_entry **out)
{
    *out = NULL;
    DLT_CHECK(check_geom(g, op));
    if (g->n == 0) return DLT_OK; /* nothing to compute; *out stays NULL */
    CUDA_ENTER(be);
    DLT_CHECK(get_entry(be, g, 0, out));
    size_t need = need_of == 0 ? (*out)->fwd_ws : need_of == 1 ? (*out)->bwd_data_ws
                                                                : (*out)->bwd_filter_ws;
    if (need > 0 && !ws)
        return DLT_ERR(DLT_ERR_INVALID, "%s: NULL workspace (%zu bytes needed)", op, need);
    return DLT_OK;
}

/* y (n,k,oh,ow) = conv(x (n,c,h,w), w (k,c,r,s)); overwrites y. */
dlt_status dlt_cuda_conv2d_fwd(dlt_backend *be, const dlt_conv_geom *g, const float *x,
                               const float *w, float *y, void *ws)
{
    conv_entry *e;
    DLT_CHECK(op_entry(be, g, ws, 0, "conv2d_fwd", &e));
    if (!e) return DLT_OK;
    const float one = 1.0f, zero = 0.0f;
    cudnnHandle_t h = dlt_cuda_of(be)->cudnn;
    CUDNN_CHECK(cudnnSetConvolutionMathType(e->conv, e->fwd_math));
    CUDNN_CHECK(cudnnConvolutionForward(h, &one, e->x, x, e->w, w, e->conv, e->fwd, ws, e->fwd_ws,
                                        &zero, e->y, y));
    return DLT_OK;
}

/* dx (n,c,h,w) += conv_transpose(dy (n,k,oh,ow), w). */
dlt_status dlt_cuda_conv2d_bwd_data(dlt_backend *be, const dlt_conv_geom *g, const float *dy,
                                    const float *w, float *dx, void *ws)
{
    conv_entry *e;
    DLT_CHECK(op_entry(be, g, ws, 1, "conv2d_bwd_data", &e));
    if (!e) return DLT_OK;
    const float one = 1.0f;
    cudnnHandle_t h = dlt_cuda_of(be)->cudnn;
    CUDNN_CHECK(cudnnSetConvolutionMathType(e->conv, e->bwd_data_math));
    CUDNN_CHECK(cudnnConvolutionBackwardData(h, &one, e->w, w, e->y, dy, e->conv, e->bwd_data, ws,
                                             e->bwd_data_ws, &one, e->x, dx));
    return DLT_OK;
}

/* dw (k,c,r,s) += correlation of x with dy. */
dlt_status dlt_cuda_conv2d_bwd_filter(dlt_backend *be, const dlt_conv_geom *g, const float *x,
                                      const float *dy, float *dw, void *ws)
{
    conv_entry *e;
    DLT_CHECK(op_entry(be, g, ws, 2, "conv2d_bwd_filter", &e));
    if (!e) return DLT_OK;
    const float one = 1.0f;
    cudnnHandle_t h = dlt_cuda_of(be)->cudnn;
    CUDNN_CHECK(cudnnSetConvolutionMathType(e->conv, e->bwd_filter_math));
    CUDNN_CHECK(cudnnConvolutionBackwardFilter(h, &one, e->x, x, e->y, dy, e->conv,
                                               e->bwd_filter, ws, e->bwd_filter_ws, &one, e->w,
                                               dw));
    return DLT_OK;
}
