/* CUDA losses: softmax cross-entropy, mean squared error, one-hot targets.
 *
 * Per-sample forward kernels give one block to a row: the block finds the row
 * maximum, sums exp(z - max) in double (as core/cpu/cpu_loss.c does) and
 * writes the probabilities, the loss log(sum) - (z_label - max) and whether
 * the first argmax is the label. Rows of a classifier are short (10 to a few
 * thousand classes) and batches are large, so a block per row keeps every SM
 * busy without a second pass; vocabulary-sized rows are still one block and
 * simply loop longer.
 *
 * The CPU backend rejects a label outside [0, k) with DLT_ERR_INVALID. A GPU
 * cannot check without a synchronisation per step, so here such a sample gets
 * a NaN loss and contributes no one-hot term, and the label is recorded as a
 * data error (cuda_internal.h) that the next synchronising call reports as
 * DLT_ERR_INVALID: the gradients stay finite, so the trainer's non-finite
 * check (on the gradient norm) would not see it. No memory outside the row
 * is ever read. */
#include <math.h>
#include <stdint.h>

#include "core/cuda/cuda_internal.h"
#include "core/cuda/cuda_util.cuh"

/* Threads of the row kernels. */
#define ROW_THREADS 256

/* Records a label outside [0, k) (first one wins), as cuda_seq.cu does. */
__device__ static void record_label_err(dlt_cuda_data_err *e, int row, int lab, int k)
{
    if (atomicCAS(&e->code, 0, -1) == 0) { /* -1 marks "being written" */
        e->index = row;
        e->value = (float)lab;
        e->limit = k;
        __threadfence_system();
        atomicExch(&e->code, DLT_CUDA_DATA_ERR_LABEL);
    }
}

/* One block per row i: probs, loss (may be NULL), correct (may be NULL). */
__global__ void k_softmax_xent_fwd(int k, const float *__restrict__ logits,
                                   const int32_t *__restrict__ labels, float *__restrict__ probs,
                                   float *__restrict__ loss, float *__restrict__ correct,
                                   dlt_cuda_data_err *err)
{
    const int i = blockIdx.x;
    const float *z = logits + (size_t)i * k;
    float *p = probs + (size_t)i * k;

    float m = -INFINITY;
    for (int j = threadIdx.x; j < k; j += blockDim.x) m = fmaxf(m, z[j]);
    const float mx = dlt_block_max_all(m);

    int am = 0x7fffffff; /* first index holding the maximum */
    double s = 0.0;
    for (int j = threadIdx.x; j < k; j += blockDim.x) {
        const float zj = z[j];
        if (zj == mx && j < am) am = j;
        const float e = expf(zj - mx);
        p[j] = e;
        s += e;
    }
    am = dlt_block_min_all(am);
    __shared__ double total;
    s = dlt_block_sum(s);
    if (threadIdx.x == 0) total = s;
    __syncthreads();
    const float inv = (float)(1.0 / total);
    for (int j = threadIdx.x; j < k; j += blockDim.x) p[j] *= inv;

    if (threadIdx.x == 0) {
        const int lab = labels[i];
        const int ok = lab >= 0 && lab < k;
        if (!ok) record_label_err(err, i, lab, k);
        if (loss) loss[i] = ok ? (float)(log(total) - ((double)z[lab] - mx)) : NAN;
        if (correct) correct[i] = ok && am == lab ? 1.0f : 0.0f;
    }
}

/* dlogits (n, k) += scale (probs - onehot(labels)), one element per thread. */
__global__ void k_softmax_xent_bwd(size_t total, int k, const float *__restrict__ probs,
                                   const int32_t *__restrict__ labels, float scale,
                                   float *__restrict__ dlogits)
{
    GRID_LOOP(idx, total)
    {
        const size_t row = idx / (size_t)k;
        const int j = (int)(idx - row * (size_t)k);
        float d = scale * probs[idx];
        if (labels[row] == j) d -= scale;
        dlogits[idx] += d;
    }
}

/* One block per row: loss(i) = mean_j (y - t)^2, summed in double. */
__global__ void k_mse_fwd(int k, const float *__restrict__ y, const float *__restrict__ t,
                          float *__restrict__ loss)
{
    const size_t off = (size_t)blockIdx.x * k;
    double s = 0.0;
    for (int j = threadIdx.x; j < k; j += blockDim.x) {
        const double d = (double)y[off + j] - (double)t[off + j];
        s += d * d;
    }
    s = dlt_block_sum(s);
    if (threadIdx.x == 0) loss[blockIdx.x] = (float)(s / k);
}

/* dy += c (y - t), c = scale * 2 / k */
__global__ void k_mse_bwd(size_t total, float c, const float *__restrict__ y,
                          const float *__restrict__ t, float *__restrict__ dy)
{
    GRID_LOOP(i, total) dy[i] += c * (y[i] - t[i]);
}

__global__ void k_onehot(size_t total, int k, const int32_t *__restrict__ labels,
                         float *__restrict__ t, dlt_cuda_data_err *err)
{
    GRID_LOOP(idx, total)
    {
        const size_t row = idx / (size_t)k;
        const int j = (int)(idx - row * (size_t)k), lab = labels[row];
        if (j == 0 && (lab < 0 || lab >= k)) record_label_err(err, (int)row, lab, k);
        t[idx] = lab == j ? 1.0f : 0.0f;
    }
}

/* ---- host entry points (contracts in core/backend.h) ---- */

static dlt_status check_nk(int n, int k, const char *op)
{
    if (n < 0 || k <= 0) return DLT_ERR(DLT_ERR_SHAPE, "%s: bad sizes n=%d k=%d", op, n, k);
    return DLT_OK;
}

extern "C" dlt_status dlt_cuda_softmax_xent_fwd(dlt_backend *be, int n, int k,
                                                const float *logits, const int32_t *labels,
                                                float *probs, float *loss, float *correct)
{
    DLT_CHECK(check_nk(n, k, "softmax_xent_fwd"));
    if (!n) return DLT_OK;
    CUDA_ENTER(be);
    k_softmax_xent_fwd<<<(unsigned)n, ROW_THREADS, 0, dlt_cuda_of(be)->stream>>>(
        k, logits, labels, probs, loss, correct, dlt_cuda_of(be)->data_err_dev);
    KERNEL_CHECK("softmax_xent_fwd");
    return DLT_OK;
}

extern "C" dlt_status dlt_cuda_softmax_xent_bwd(dlt_backend *be, int n, int k,
                                                const float *probs, const int32_t *labels,
                                                float scale, float *dlogits)
{
    DLT_CHECK(check_nk(n, k, "softmax_xent_bwd"));
    const size_t total = (size_t)n * k;
    if (!total) return DLT_OK;
    CUDA_ENTER(be);
    k_softmax_xent_bwd<<<dlt_cuda_blocks(total), DLT_CUDA_THREADS, 0, dlt_cuda_of(be)->stream>>>(
        total, k, probs, labels, scale, dlogits);
    KERNEL_CHECK("softmax_xent_bwd");
    return DLT_OK;
}

extern "C" dlt_status dlt_cuda_mse_fwd(dlt_backend *be, int n, int k, const float *y,
                                       const float *t, float *loss)
{
    DLT_CHECK(check_nk(n, k, "mse_fwd"));
    if (!n) return DLT_OK;
    CUDA_ENTER(be);
    k_mse_fwd<<<(unsigned)n, ROW_THREADS, 0, dlt_cuda_of(be)->stream>>>(k, y, t, loss);
    KERNEL_CHECK("mse_fwd");
    return DLT_OK;
}

extern "C" dlt_status dlt_cuda_mse_bwd(dlt_backend *be, int n, int k, const float *y,
                                       const float *t, float scale, float *dy)
{
    DLT_CHECK(check_nk(n, k, "mse_bwd"));
    const size_t total = (size_t)n * k;
    if (!total) return DLT_OK;
    CUDA_ENTER(be);
    const float c = scale * 2.0f / (float)k; /* the CPU's rounding order */
    k_mse_bwd<<<dlt_cuda_blocks(total), DLT_CUDA_THREADS, 0, dlt_cuda_of(be)->stream>>>(total, c,
                                                                                        y, t, dy);
    KERNEL_CHECK("mse_bwd");
    return DLT_OK;
}

extern "C" dlt_status dlt_cuda_onehot(dlt_backend *be, int n, int k, const int32_t *labels,
                                      float *t)
{
    DLT_CHECK(check_nk(n, k, "onehot"));
    const size_t total = (size_t)n * k;
    if (!total) return DLT_OK;
    CUDA_ENTER(be);
    k_onehot<<<dlt_cuda_blocks(total), DLT_CUDA_THREADS, 0, dlt_cuda_of(be)->stream>>>(
        total, k, labels, t, dlt_cuda_of(be)->data_err_dev);
    KERNEL_CHECK("onehot");
    return DLT_OK;
}
