/* CPU LSTM layer over a whole sequence, forward and full backpropagation
 * through time, in torch.nn.LSTM's formulation and gate order (i, f, g, o):
 *   z = x W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh
 *   i, f, o = sigmoid(z_i, z_f, z_o), g = tanh(z_g)
 *   c_t = f c_{t-1} + i g,  h_t = o tanh(c_t).
 *
 * The input projection of every time step does not depend on the
 * recurrence, so it is one large sgemm over all n len tokens up front; only
 * the (n, h) x (h, 4h) recurrent product remains per step. Tensors stay
 * batch-major (n, len, .): the rows of step t are every len-th row, which
 * sgemm reads and writes through its leading dimension, so nothing is
 * transposed. The gate buffer holds the pre-activations at first and is
 * overwritten by the activations step by step; backward needs only those,
 * the cell states and the outputs. Gates (n, len, 4h) and cell states
 * (n, len, h) are the backend's "saved" state (backend.h lstm_sizes), in
 * that order.
 *
 * Backward runs time in reverse, turning the gate buffer's activations into
 * pre-activation gradients dz (n, len, 4h) in the workspace and carrying
 * dh, dc between steps; afterwards the weight gradients and dx are again
 * single large sgemms over all tokens (W_hh's per sample, len - 1 rows each,
 * as the step-0 rows pair with h0 instead of an output). The gate loops
 * vectorise with the inline exponential of cpu_math.h. */
#include <cblas.h>
#include <math.h>
#include <stddef.h>
#include <string.h>

#include "core/backend.h"
#include "core/cpu/cpu_math.h"
#include "core/cpu/cpu_seq.h"
#include "core/status.h"

static dlt_status check_sizes(int n, int len, int din, int h, const char *op)
{
    if (n < 0 || len <= 0 || din <= 0 || h <= 0)
        return DLT_ERR(DLT_ERR_SHAPE, "%s: bad sizes n=%d len=%d din=%d h=%d", op, n, len, din, h);
    return DLT_OK;
}

/* Contract: backend.h lstm_sizes. saved: gates (n, len, 4h) then cell
 * states (n, len, h); ws: backward's dz (n, len, 4h), dh and dc (n, h). */
dlt_status dlt_cpu_lstm_sizes(dlt_backend *be, int n, int len, int din, int h,
                              size_t *saved_floats, size_t *ws_floats)
{
    DLT_CHECK(check_sizes(n, len, din, h, "lstm_sizes"));
    const size_t rows = (size_t)n * len;
    *saved_floats = rows * 5 * (size_t)h;
    *ws_floats = rows * 4 * (size_t)h + 2 * (size_t)n * h;
    return DLT_OK;
}

/* dst (n, h) = rows t = len-1 of src (n, len, h) */
static void last_step(int n, int len, int h, const float *src, float *dst)
{
    for (int b = 0; b < n; b++)
        memcpy(dst + (size_t)b * h, src + ((size_t)b * len + (size_t)len - 1) * h,
               (size_t)h * sizeof *dst);
}

dlt_status dlt_cpu_lstm_fwd(dlt_backend *be, int train, int n, int len, int din, int h,
                            const float *x, const float *w_ih, const float *w_hh,
                            const float *b_ih, const float *b_hh, const float *h0,
                            const float *c0, float *y, float *h_last, float *c_last,
                            float *saved, float *ws)
{
    DLT_CHECK(check_sizes(n, len, din, h, "lstm_fwd"));
    if (n == 0) return DLT_OK;
    const int g4 = 4 * h;
    const size_t rows = (size_t)n * len;
    float *gates = saved;              /* (n, len, 4h) */
    float *c = saved + rows * g4;      /* (n, len, h) */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)rows, g4, din, 1.0f, x, din, w_ih,
                din, 0.0f, gates, g4);
    for (size_t r = 0; r < rows; r++) {
        float *restrict z = gates + r * g4;
#pragma omp simd
        for (int j = 0; j < g4; j++) z[j] += b_ih[j] + b_hh[j];
    }
    for (int t = 0; t < len; t++) {
        float *zt = gates + (size_t)t * g4;
        const float *hp = t ? y + (size_t)(t - 1) * h : h0;
        if (hp)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, g4, h, 1.0f, hp,
                        t ? len * h : h, w_hh, h, 1.0f, zt, len * g4);
        for (int b = 0; b < n; b++) {
            float *restrict z = zt + (size_t)b * len * g4;
            const size_t o = ((size_t)b * len + t) * h;
            const float *cp = t ? c + o - h : (c0 ? c0 + (size_t)b * h : NULL);
            float *restrict ct = c + o, *restrict ht = y + o;
#pragma omp simd
            for (int j = 0; j < h; j++) {
                const float ig = dlt_cpu_sigmoidf(z[j]), fg = dlt_cpu_sigmoidf(z[h + j]);
                const float gg = dlt_cpu_tanhf(z[2 * h + j]), og = dlt_cpu_sigmoidf(z[3 * h + j]);
                z[j] = ig;
                z[h + j] = fg;
                z[2 * h + j] = gg;
                z[3 * h + j] = og;
                const float cv = (cp ? fg * cp[j] : 0.0f) + ig * gg;
                ct[j] = cv;
                ht[j] = og * dlt_cpu_tanhf(cv);
            }
        }
    }
    if (h_last) last_step(n, len, h, y, h_last);
    if (c_last) last_step(n, len, h, c, c_last);
    return DLT_OK;
}

dlt_status dlt_cpu_lstm_bwd(dlt_backend *be, int n, int len, int din, int h, const float *x,
                            const float *w_ih, const float *w_hh, const float *h0,
                            const float *c0, const float *y, float *saved, const float *dy,
                            float *dx, float *dw_ih, float *dw_hh, float *db_ih, float *db_hh,
                            float *ws)
{
    DLT_CHECK(check_sizes(n, len, din, h, "lstm_bwd"));
    if (n == 0) return DLT_OK;
    const int g4 = 4 * h;
    const size_t rows = (size_t)n * len;
    const float *gates = saved, *c = saved + rows * g4; /* as lstm_fwd left them */
    float *dz = ws;                         /* (n, len, 4h) */
    float *dh = dz + rows * g4;             /* (n, h) gradient w.r.t. h_t from step t+1 */
    float *dc = dh + (size_t)n * h;         /* (n, h) gradient w.r.t. c_t from step t+1 */
    memset(dh, 0, (size_t)n * h * sizeof *dh);
    memset(dc, 0, (size_t)n * h * sizeof *dc);
    for (int t = len - 1; t >= 0; t--) {
        for (int b = 0; b < n; b++) {
            const size_t o = ((size_t)b * len + t) * h;
            const float *restrict a = gates + ((size_t)b * len + t) * g4;
            float *restrict d = dz + ((size_t)b * len + t) * g4;
            const float *cp = t ? c + o - h : (c0 ? c0 + (size_t)b * h : NULL);
            float *restrict dhb = dh + (size_t)b * h, *restrict dcb = dc + (size_t)b * h;
#pragma omp simd
            for (int j = 0; j < h; j++) {
                const float ig = a[j], fg = a[h + j], gg = a[2 * h + j], og = a[3 * h + j];
                const float tc = dlt_cpu_tanhf(c[o + j]);
                const float dhv = dy[o + j] + dhb[j];
                const float dcv = dcb[j] + dhv * og * (1.0f - tc * tc);
                const float cprev = cp ? cp[j] : 0.0f;
                d[j] = dcv * gg * ig * (1.0f - ig);
                d[h + j] = dcv * cprev * fg * (1.0f - fg);
                d[2 * h + j] = dcv * ig * (1.0f - gg * gg);
                d[3 * h + j] = dhv * tc * og * (1.0f - og);
                dcb[j] = dcv * fg;
            }
        }
        /* dh_{t-1} = dz_t W_hh */
        if (t > 0)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, h, g4, 1.0f,
                        dz + (size_t)t * g4, len * g4, w_hh, h, 0.0f, dh, h);
    }
    /* dW_ih += dz^T x;  dx += dz W_ih */
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, g4, din, (int)rows, 1.0f, dz, g4, x, din,
                1.0f, dw_ih, din);
    if (dx)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)rows, din, g4, 1.0f, dz, g4,
                    w_ih, din, 1.0f, dx, din);
    /* dW_hh += sum_t dz_t^T h_{t-1} */
    if (len > 1)
        for (int b = 0; b < n; b++)
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, g4, h, len - 1, 1.0f,
                        dz + ((size_t)b * len + 1) * g4, g4, y + (size_t)b * len * h, h, 1.0f,
                        dw_hh, h);
    if (h0)
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, g4, h, n, 1.0f, dz, len * g4, h0, h,
                    1.0f, dw_hh, h);
    for (size_t r = 0; r < rows; r++) {
        const float *restrict d = dz + r * g4;
#pragma omp simd
        for (int j = 0; j < g4; j++) {
            db_ih[j] += d[j];
            db_hh[j] += d[j];
        }
    }
    return DLT_OK;
}
