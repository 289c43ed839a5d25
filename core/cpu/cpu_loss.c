/* CPU losses: softmax cross-entropy, mean squared error, one-hot targets.
 *
 * Losses are per sample (the caller reduces them, so it can average over the
 * global batch across ranks). Softmax subtracts the row maximum before
 * exponentiating and sums in double, so large logits neither overflow nor
 * lose the small probabilities; the loss is log(sum) - (z_label - max)
 * rather than -log(prob), which stays finite when a probability underflows
 * to 0. Labels outside [0, k) are reported as DLT_ERR_INVALID (a data bug
 * that would otherwise read out of bounds). Rows are independent, so large
 * batches are split across OpenMP threads. */
#include <math.h>
#include <stddef.h>
#include <stdint.h>

#include "core/backend.h"
#include "core/cpu/cpu_ops.h"
#include "core/status.h"

/* DLT_OK if all labels (n) are in [0, k). */
static dlt_status check_labels(int n, int k, const int32_t *labels, const char *op)
{
    if (n < 0 || k <= 0) return DLT_ERR(DLT_ERR_SHAPE, "%s: bad sizes n=%d k=%d", op, n, k);
    for (int i = 0; i < n; i++)
        if (labels[i] < 0 || labels[i] >= k)
            return DLT_ERR(DLT_ERR_INVALID, "%s: label %d of sample %d is outside [0, %d)", op,
                           (int)labels[i], i, k);
    return DLT_OK;
}

/* probs (n, k) = softmax(logits (n, k)); loss (n) = -log probs[label];
 * correct (n) = first argmax == label. loss/correct may be NULL. */
dlt_status dlt_cpu_softmax_xent_fwd(dlt_backend *be, int n, int k, const float *logits,
                                    const int32_t *labels, float *probs, float *loss,
                                    float *correct)
{
    DLT_CHECK(check_labels(n, k, labels, "softmax_xent_fwd"));
#pragma omp parallel for if (dlt_cpu_par((long)n * k)) schedule(static)
    for (int i = 0; i < n; i++) {
        const float *z = logits + (size_t)i * k;
        float *p = probs + (size_t)i * k;
        int am = 0;
        for (int j = 1; j < k; j++)
            if (z[j] > z[am]) am = j;
        const float mx = z[am];
        double sum = 0.0;
        for (int j = 0; j < k; j++) {
            const float e = expf(z[j] - mx);
            p[j] = e;
            sum += e;
        }
        const float inv = (float)(1.0 / sum);
        for (int j = 0; j < k; j++) p[j] *= inv;
        if (loss) loss[i] = (float)(log(sum) - ((double)z[labels[i]] - mx));
        if (correct) correct[i] = am == labels[i] ? 1.0f : 0.0f;
    }
    return DLT_OK;
}

/* dlogits (n, k) += scale (probs - onehot(labels)) */
dlt_status dlt_cpu_softmax_xent_bwd(dlt_backend *be, int n, int k, const float *probs,
                                    const int32_t *labels, float scale, float *dlogits)
{
    DLT_CHECK(check_labels(n, k, labels, "softmax_xent_bwd"));
#pragma omp parallel for if (dlt_cpu_par((long)n * k)) schedule(static)
    for (int i = 0; i < n; i++) {
        const float *restrict p = probs + (size_t)i * k;
        float *restrict d = dlogits + (size_t)i * k;
        for (int j = 0; j < k; j++) d[j] += scale * p[j];
        d[labels[i]] -= scale;
    }
    return DLT_OK;
}

/* loss (n) = mean over j of (y(i, j) - t(i, j))^2, y and t (n, k). */
dlt_status dlt_cpu_mse_fwd(dlt_backend *be, int n, int k, const float *y, const float *t,
                           float *loss)
{
    if (n < 0 || k <= 0) return DLT_ERR(DLT_ERR_SHAPE, "mse_fwd: bad sizes n=%d k=%d", n, k);
#pragma omp parallel for if (dlt_cpu_par((long)n * k)) schedule(static)
    for (int i = 0; i < n; i++) {
        const float *restrict yi = y + (size_t)i * k, *restrict ti = t + (size_t)i * k;
        double s = 0.0;
#pragma omp simd reduction(+ : s)
        for (int j = 0; j < k; j++) {
            const double d = (double)yi[j] - (double)ti[j];
            s += d * d;
        }
        loss[i] = (float)(s / k);
    }
    return DLT_OK;
}

/* dy (n, k) += scale 2 (y - t) / k */
dlt_status dlt_cpu_mse_bwd(dlt_backend *be, int n, int k, const float *y, const float *t,
                           float scale, float *dy)
{
    if (n < 0 || k <= 0) return DLT_ERR(DLT_ERR_SHAPE, "mse_bwd: bad sizes n=%d k=%d", n, k);
    const size_t total = (size_t)n * k;
    const float c = scale * 2.0f / (float)k;
    const float *restrict ys = y, *restrict ts = t;
    float *restrict o = dy;
#pragma omp parallel for simd if (dlt_cpu_par(total)) schedule(static)
    for (size_t i = 0; i < total; i++) o[i] += c * (ys[i] - ts[i]);
    return DLT_OK;
}

/* t (n, k) = one-hot rows of labels (n). */
dlt_status dlt_cpu_onehot(dlt_backend *be, int n, int k, const int32_t *labels, float *t)
{
    DLT_CHECK(check_labels(n, k, labels, "onehot"));
    for (int i = 0; i < n; i++) {
        float *row = t + (size_t)i * k;
        for (int j = 0; j < k; j++) row[j] = 0.0f;
        row[labels[i]] = 1.0f;
    }
    return DLT_OK;
}
