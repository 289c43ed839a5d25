/* GPU suite: linear_fwd and linear_bwd_w (cuBLASLt with bias epilogues,
 * core/cuda/cuda_lt.c) against the CPU backend.
 *
 * Shapes include odd sizes (no tensor-core friendly multiples), one row,
 * and operands offset by one float, since parameters in the arena are only
 * 4-byte aligned and cuBLASLt's heuristic must be told. Each case runs in
 * every precision (fp32 = TF32, bf16, fp16) with that precision's
 * tolerance, with and without a bias, twice (the second call finds the
 * cached plan). Gradients start non-zero: the op must accumulate, also the
 * bias gradient, which cuBLASLt itself overwrites. A last line reports how
 * many calls ran fused (information: a shape cuBLASLt cannot fuse falls
 * back to gemm + bias kernel, which is correct, only slower). */
#include <dlfcn.h>
#include <stdio.h>
#include <string.h>

#include "core/device.h"
#include "tests/gpu/gpu_test.h"

typedef int (*lt_stats_fn)(dlt_backend *be, long long *fused, long long *unfused);

/* Device buffer of n floats starting `off` floats into its allocation, with
 * host data h; *base receives the allocation (for free). */
static float *up_off(const float *h, size_t n, int off, void **base)
{
    MUST(G->alloc(G, (n + (size_t)off) * sizeof(float), base));
    float *d = (float *)*base + off;
    MUST(G->upload(G, d, h, n * sizeof(float)));
    return d;
}

static void test_linear_one(int rows, int in, int out, int bias, int off, const char *prec,
                            double tol)
{
    const size_t nx = (size_t)rows * in, nw = (size_t)out * in, ny = (size_t)rows * out;
    float *x = rnd(nx, -1, 1), *w = rnd(nw, -1, 1), *b = rnd((size_t)out, -1, 1);
    float *y = rnd(ny, -1, 1), *dy = rnd(ny, -1, 1);
    float *dw = rnd(nw, -1, 1), *db = rnd((size_t)out, -1, 1);
    void *bx, *bw, *bb, *by, *bdy, *bdw, *bdb;
    float *d_x = up_off(x, nx, off, &bx), *d_w = up_off(w, nw, off, &bw);
    float *d_b = up_off(b, (size_t)out, off, &bb), *d_y = up_off(y, ny, off, &by);
    float *d_dy = up_off(dy, ny, off, &bdy), *d_dw = up_off(dw, nw, off, &bdw);
    float *d_db = up_off(db, (size_t)out, off, &bdb);
    MUST(dlt_device_set_precision(G, prec));
    char what[128];
    for (int rep = 0; rep < 2; rep++) {
        MUST(C->linear_fwd(C, rows, in, out, x, w, bias ? b : NULL, y));
        MUST(G->linear_fwd(G, rows, in, out, d_x, d_w, bias ? d_b : NULL, d_y));
        snprintf(what, sizeof what, "linear_fwd %s %dx%d->%d bias=%d off=%d #%d", prec, rows, in,
                 out, bias, off, rep + 1);
        check_dev(what, d_y, y, ny, tol);
        MUST(C->linear_bwd_w(C, rows, in, out, x, dy, dw, bias ? db : NULL));
        MUST(G->linear_bwd_w(G, rows, in, out, d_x, d_dy, d_dw, bias ? d_db : NULL));
        snprintf(what, sizeof what, "linear_bwd_w dw %s %dx%d->%d bias=%d off=%d #%d", prec,
                 rows, in, out, bias, off, rep + 1);
        check_dev(what, d_dw, dw, nw, tol);
        snprintf(what, sizeof what, "linear_bwd_w db %s %dx%d->%d bias=%d off=%d #%d", prec,
                 rows, in, out, bias, off, rep + 1);
        check_dev(what, d_db, db, (size_t)out, tol);
    }
    MUST(dlt_device_set_precision(G, "fp32"));
    void *bases[] = { bx, bw, bb, by, bdy, bdw, bdb };
    for (size_t i = 0; i < sizeof bases / sizeof bases[0]; i++) G->free(G, bases[i]);
    float *hs[] = { x, w, b, y, dy, dw, db };
    for (size_t i = 0; i < sizeof hs / sizeof hs[0]; i++) free(hs[i]);
}

/* Calls the CUDA library's dlt_cuda_lt_stats, if it exports one. */
static void report_fusion(void)
{
    Dl_info info;
    void *fn;
    memcpy(&fn, &G->destroy, sizeof fn);
    void *h = dladdr(fn, &info) ? dlopen(info.dli_fname, RTLD_NOW | RTLD_NOLOAD) : NULL;
    void *sym = h ? dlsym(h, "dlt_cuda_lt_stats") : NULL;
    long long fused = 0, unfused = 0;
    if (sym) {
        lt_stats_fn stats;
        memcpy(&stats, &sym, sizeof sym);
        if (stats(G, &fused, &unfused) == 0)
            printf("INFO  linear ops with a bias: %lld fused by cuBLASLt, %lld as gemm + bias "
                   "kernel\n", fused, unfused);
    }
    check_true("linear: dlt_cuda_lt_stats exported", sym != NULL, NULL);
    if (h) dlclose(h);
}

void test_cuda_linear_all(void)
{
    const struct { const char *prec; double tol; } precs[] = {
        { "fp32", TOL_TF32 }, { "bf16", TOL_BF16 }, { "fp16", TOL_BF16 },
    };
    const int shapes[][3] = {
        { 37, 53, 71 }, { 1, 300, 64 }, { 130, 17, 3 }, { 256, 128, 384 }, { 512, 768, 3072 },
    };
    for (size_t p = 0; p < sizeof precs / sizeof precs[0]; p++)
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
            for (int bias = 1; bias >= 0; bias--)
                test_linear_one(shapes[s][0], shapes[s][1], shapes[s][2], bias, 0, precs[p].prec,
                                precs[p].tol);
    /* 4-byte aligned operands, as parameters in the arena are */
    test_linear_one(64, 96, 160, 1, 1, "fp32", TOL_TF32);
    test_linear_one(33, 65, 129, 1, 1, "bf16", TOL_BF16);
    test_linear_one(5, 0, 4, 1, 0, "fp32", TOL_FP32); /* no inputs: y = b, dw untouched */
    check_true("linear_fwd with a negative size is DLT_ERR_INVALID",
               G->linear_fwd(G, -1, 4, 4, NULL, NULL, NULL, NULL) == DLT_ERR_INVALID, NULL);
    report_fusion();
}
