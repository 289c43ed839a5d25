/* CUDA backend vs CPU backend, op by op (ggml's test-backend-ops idea).
 *
 * Every op both backends implement runs on the same random inputs on each,
 * forward and backward (backward ops accumulate, so gradient buffers start
 * non-zero), and the results are compared with a tensor-level relative error
 * max|gpu - cpu| / max|cpu|: about 1e-5 for plain fp32 kernels, 5e-3 for
 * gemm and convolution, which may run on TF32 tensor cores. Dropout masks
 * and one-hot/argmax outputs must match exactly (they test that the GPU's
 * copy of the counter-based RNG and the tie-breaking rules did not drift).
 * The sequence-model ops are tested in test_cuda_seq.c (same binary).
 * A one-rank NCCL allreduce checks that the NCCL half of the library loads
 * and runs.
 *
 * Usage: test_cuda_ops [path/to/libdltcuda.so]  (else $DLT_CUDA_LIB, else
 * next to this program). Prints one line per check; exit 0 if all pass,
 * 1 on any mismatch or error, 77 (skip) when no GPU is visible. */
#include <dlfcn.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "comm/nccl/nccl.h"
#include "core/backend.h"
#include "core/device.h"
#include "core/rng.h"
#include "core/status.h"
#include "tests/gpu/gpu_test.h"

dlt_backend *C, *G; /* CPU reference, CUDA under test */
int failures, checks;

/* ---- host buffers and transfers ---- */

dlt_rng rng;

float *rnd(size_t n, float lo, float hi)
{
    float *x = malloc((n ? n : 1) * sizeof *x);
    for (size_t i = 0; i < n; i++) x[i] = lo + (hi - lo) * (float)dlt_rng_uniform(&rng);
    return x;
}

float *dup(const float *x, size_t n)
{
    float *y = malloc((n ? n : 1) * sizeof *y);
    memcpy(y, x, n * sizeof *y);
    return y;
}

int32_t *rnd_labels(int n, int k)
{
    int32_t *l = malloc((size_t)n * sizeof *l);
    for (int i = 0; i < n; i++) l[i] = (int32_t)dlt_rng_below(&rng, (uint64_t)k);
    return l;
}

/* Device copy of host data (NULL stays NULL). */
void *up(const void *h, size_t bytes)
{
    if (!h) return NULL;
    void *d = NULL;
    MUST(G->alloc(G, bytes, &d));
    MUST(G->upload(G, d, h, bytes));
    return d;
}

/* Host copy of device data (malloc'd). */
float *down(const void *d, size_t n)
{
    float *h = malloc((n ? n : 1) * sizeof *h);
    MUST(G->download(G, h, d, n * sizeof *h));
    return h;
}

/* ---- comparison ---- */

/* Compares got (GPU) with want (CPU): max abs difference over max |want|. */
void check(const char *what, const float *got, const float *want, size_t n, double tol)
{
    double scale = 0.0, err = 0.0;
    size_t worst = 0;
    for (size_t i = 0; i < n; i++)
        if (isfinite(want[i]) && fabs(want[i]) > scale) scale = fabs(want[i]);
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - (double)want[i]);
        if (isnan(got[i]) != isnan(want[i]) || (isinf(want[i]) && got[i] != want[i]))
            d = INFINITY;
        else if (isnan(want[i]) || isinf(want[i]))
            d = 0.0;
        if (d > err || (isinf(d) && !isinf(err))) {
            err = d;
            worst = i;
        }
    }
    double rel = err / (scale > 0.0 ? scale : 1.0);
    int ok = rel <= tol;
    checks++;
    failures += !ok;
    printf("%s  %-44s max rel err %.2e (tol %.0e, n=%zu)\n", ok ? "ok  " : "FAIL", what, rel, tol,
           n);
    if (!ok && n)
        printf("      worst at %zu: gpu %.9g cpu %.9g\n", worst, (double)got[worst],
               (double)want[worst]);
}

/* Compares a device result with a host reference and frees the host copy. */
void check_dev(const char *what, const void *dev, const float *want, size_t n, double tol)
{
    float *got = down(dev, n);
    check(what, got, want, n, tol);
    free(got);
}

void check_true(const char *what, int ok, const char *detail)
{
    checks++;
    failures += !ok;
    printf("%s  %s%s%s\n", ok ? "ok  " : "FAIL", what, detail ? ": " : "", detail ? detail : "");
}

/* ---- ops ---- */

static void test_fill_blas(void)
{
    const size_t n = 100003;
    float *x = rnd(n, -2, 2), *y = rnd(n, -2, 2), *m = rnd(n, 0, 2);
    float *dx = up(x, n * 4), *dy = up(y, n * 4), *dm = up(m, n * 4);
    float *out = malloc(n * sizeof *out);
    void *dout = up(out, n * 4);

    MUST(C->fill(C, out, n, 3.25f));
    MUST(G->fill(G, dout, n, 3.25f));
    check_dev("fill", dout, out, n, 0.0);

    float *cy = dup(y, n);
    MUST(C->axpy(C, n, -0.75f, x, cy));
    MUST(G->axpy(G, n, -0.75f, dx, dy));
    check_dev("axpy", dy, cy, n, TOL_FP32);

    MUST(C->scale(C, n, 1.5f, cy));
    MUST(G->scale(G, n, 1.5f, dy));
    check_dev("scale", dy, cy, n, TOL_FP32);

    MUST(C->add(C, n, x, cy, out));
    MUST(G->add(G, n, dx, dy, dout));
    check_dev("add", dout, out, n, TOL_FP32);

    MUST(C->mul_acc(C, n, x, m, cy));
    MUST(G->mul_acc(G, n, dx, dm, dy));
    check_dev("mul_acc", dy, cy, n, TOL_FP32);

    const size_t big = (1u << 20) + 7;
    float *b = rnd(big, -3, 3);
    float *db = up(b, big * 4);
    double sc = 0, sg = 0;
    MUST(C->sumsq(C, big, b, &sc));
    MUST(G->sumsq(G, big, db, &sg));
    char buf[96];
    snprintf(buf, sizeof buf, "gpu %.17g cpu %.17g", sg, sc);
    check_true("sumsq (2^20+7, double)", fabs(sg - sc) <= 1e-9 * fabs(sc), buf);
    double s2 = 0;
    MUST(G->sumsq(G, big, db, &s2));
    check_true("sumsq is deterministic", s2 == sg, NULL);

    G->free(G, db);
    G->free(G, dx);
    G->free(G, dy);
    G->free(G, dm);
    G->free(G, dout);
    free(b);
    free(x);
    free(y);
    free(m);
    free(out);
    free(cy);
}

static void test_gemm_one(int ta, int tb, int m, int n, int k, float alpha, float beta)
{
    const int lda = (ta ? m : k) + 3, ldb = (tb ? k : n) + 1, ldc = n + 2;
    const size_t na = (size_t)(ta ? k : m) * lda, nb = (size_t)(tb ? n : k) * ldb;
    const size_t nc = (size_t)m * ldc;
    float *a = rnd(na, -1, 1), *b = rnd(nb, -1, 1), *c = rnd(nc, -1, 1);
    float *da = up(a, na * 4), *db = up(b, nb * 4), *dc = up(c, nc * 4);
    MUST(C->gemm(C, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc));
    MUST(G->gemm(G, ta, tb, m, n, k, alpha, da, lda, db, ldb, beta, dc, ldc));
    char what[64];
    snprintf(what, sizeof what, "gemm ta=%d tb=%d %dx%dx%d", ta, tb, m, n, k);
    check_dev(what, dc, c, nc, TOL_TF32);
    G->free(G, da);
    G->free(G, db);
    G->free(G, dc);
    free(a);
    free(b);
    free(c);
}

static void test_gemm(void)
{
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++) test_gemm_one(ta, tb, 37, 53, 71, 0.7f, 0.3f);
    test_gemm_one(0, 1, 256, 192, 320, 1.0f, 0.0f);
    test_gemm_one(1, 0, 1, 300, 64, 1.0f, 1.0f);
    test_gemm_one(0, 0, 5, 7, 0, 1.0f, 0.5f); /* k = 0: C = beta C (cublasSgemm path) */
}

static void test_bias(int n, int c, int hw)
{
    const size_t total = (size_t)n * c * hw;
    float *b = rnd((size_t)c, -1, 1), *y = rnd(total, -1, 1), *g = rnd((size_t)c, -1, 1);
    float *db = up(b, (size_t)c * 4), *dy = up(y, total * 4), *dg = up(g, (size_t)c * 4);
    char what[64];
    MUST(C->bias_add(C, n, c, hw, b, y));
    MUST(G->bias_add(G, n, c, hw, db, dy));
    snprintf(what, sizeof what, "bias_add n=%d c=%d hw=%d", n, c, hw);
    check_dev(what, dy, y, total, TOL_FP32);
    MUST(C->bias_grad(C, n, c, hw, y, g));
    MUST(G->bias_grad(G, n, c, hw, dy, dg));
    snprintf(what, sizeof what, "bias_grad n=%d c=%d hw=%d", n, c, hw);
    check_dev(what, dg, g, (size_t)c, TOL_FP32);
    G->free(G, db);
    G->free(G, dy);
    G->free(G, dg);
    free(b);
    free(y);
    free(g);
}

static void test_act(void)
{
    static const char *names[] = { "relu", "sigmoid", "tanh", "gelu" };
    const size_t n = 50000;
    float *x = rnd(n, -6, 6), *dy = rnd(n, -1, 1);
    x[0] = 0.0f; /* ReLU'(0) = 0 on both */
    float *dx0 = rnd(n, -1, 1);
    float *d_x = up(x, n * 4), *d_dy = up(dy, n * 4);
    float *y = malloc(n * sizeof *y);
    float *d_y = up(y, n * 4);
    for (int a = 0; a < 4; a++) {
        char what[64];
        MUST(C->act_fwd(C, (dlt_act)a, n, x, y));
        MUST(G->act_fwd(G, (dlt_act)a, n, d_x, d_y));
        snprintf(what, sizeof what, "act_fwd %s", names[a]);
        check_dev(what, d_y, y, n, TOL_FP32);
        float *dx = dup(dx0, n), *d_dx = up(dx0, n * 4);
        MUST(C->act_bwd(C, (dlt_act)a, n, x, y, dy, dx));
        MUST(G->act_bwd(G, (dlt_act)a, n, d_x, d_y, d_dy, d_dx));
        snprintf(what, sizeof what, "act_bwd %s", names[a]);
        check_dev(what, d_dx, dx, n, TOL_FP32);
        G->free(G, d_dx);
        free(dx);
    }
    G->free(G, d_x);
    G->free(G, d_dy);
    G->free(G, d_y);
    free(x);
    free(dy);
    free(dx0);
    free(y);
}

static void test_dropout(void)
{
    const size_t n = 100001;
    const float ps[] = { 0.0f, 0.3f, 0.9f };
    float *x = rnd(n, -1, 1);
    float *d_x = up(x, n * 4);
    float *y = malloc(n * 4), *mask = malloc(n * 4);
    float *d_y = up(y, n * 4), *d_mask = up(mask, n * 4);
    for (int i = 0; i < 3; i++) {
        const uint64_t key = 0x1234567890abcdefULL + (uint64_t)i, first = 987654321ULL;
        MUST(C->dropout_fwd(C, n, ps[i], key, first, x, y, mask));
        MUST(G->dropout_fwd(G, n, ps[i], key, first, d_x, d_y, d_mask));
        float *gm = down(d_mask, n);
        size_t diff = 0;
        for (size_t j = 0; j < n; j++) diff += (gm[j] == 0.0f) != (mask[j] == 0.0f);
        char what[64], detail[64];
        snprintf(what, sizeof what, "dropout p=%.1f mask identical", (double)ps[i]);
        snprintf(detail, sizeof detail, "%zu of %zu keep decisions differ", diff, n);
        check_true(what, diff == 0, diff ? detail : NULL);
        snprintf(what, sizeof what, "dropout p=%.1f mask values", (double)ps[i]);
        check(what, gm, mask, n, TOL_FP32);
        snprintf(what, sizeof what, "dropout p=%.1f y", (double)ps[i]);
        check_dev(what, d_y, y, n, TOL_FP32);
        free(gm);
    }
    G->free(G, d_x);
    G->free(G, d_y);
    G->free(G, d_mask);
    free(x);
    free(y);
    free(mask);
}

static void test_losses(int n, int k)
{
    const size_t nk = (size_t)n * k;
    float *z = rnd(nk, -5, 5);
    /* a tie in row 0 at the maximum: the first index must win on both */
    z[0] = 7.0f;
    if (k > 2) z[2] = 7.0f;
    int32_t *lab = rnd_labels(n, k);
    lab[0] = 0;
    float *probs = malloc(nk * 4), *loss = malloc((size_t)n * 4), *corr = malloc((size_t)n * 4);
    float *d_z = up(z, nk * 4), *d_p = up(probs, nk * 4);
    float *d_loss = up(loss, (size_t)n * 4), *d_corr = up(corr, (size_t)n * 4);
    int32_t *d_lab = up(lab, (size_t)n * 4);
    char what[80];

    MUST(C->softmax_xent_fwd(C, n, k, z, lab, probs, loss, corr));
    MUST(G->softmax_xent_fwd(G, n, k, d_z, d_lab, d_p, d_loss, d_corr));
    snprintf(what, sizeof what, "softmax_xent_fwd probs n=%d k=%d", n, k);
    check_dev(what, d_p, probs, nk, TOL_FP32);
    snprintf(what, sizeof what, "softmax_xent_fwd loss n=%d k=%d", n, k);
    check_dev(what, d_loss, loss, (size_t)n, TOL_FP32);
    snprintf(what, sizeof what, "softmax_xent_fwd correct n=%d k=%d", n, k);
    check_dev(what, d_corr, corr, (size_t)n, 0.0);

    float *dl = rnd(nk, -0.1f, 0.1f);
    float *d_dl = up(dl, nk * 4);
    MUST(C->softmax_xent_bwd(C, n, k, probs, lab, 1.0f / (float)n, dl));
    MUST(G->softmax_xent_bwd(G, n, k, d_p, d_lab, 1.0f / (float)n, d_dl));
    snprintf(what, sizeof what, "softmax_xent_bwd n=%d k=%d", n, k);
    check_dev(what, d_dl, dl, nk, TOL_FP32);

    float *t = malloc(nk * 4);
    float *d_t = up(t, nk * 4);
    MUST(C->onehot(C, n, k, lab, t));
    MUST(G->onehot(G, n, k, d_lab, d_t));
    snprintf(what, sizeof what, "onehot n=%d k=%d", n, k);
    check_dev(what, d_t, t, nk, 0.0);

    float *tt = rnd(nk, -1, 1);
    float *d_tt = up(tt, nk * 4);
    MUST(C->mse_fwd(C, n, k, z, tt, loss));
    MUST(G->mse_fwd(G, n, k, d_z, d_tt, d_loss));
    snprintf(what, sizeof what, "mse_fwd n=%d k=%d", n, k);
    check_dev(what, d_loss, loss, (size_t)n, TOL_FP32);
    float *dz = rnd(nk, -0.1f, 0.1f);
    float *d_dz = up(dz, nk * 4);
    MUST(C->mse_bwd(C, n, k, z, tt, 0.5f, dz));
    MUST(G->mse_bwd(G, n, k, d_z, d_tt, 0.5f, d_dz));
    snprintf(what, sizeof what, "mse_bwd n=%d k=%d", n, k);
    check_dev(what, d_dz, dz, nk, TOL_FP32);

    void *dev[] = { d_z, d_p, d_loss, d_corr, d_lab, d_dl, d_t, d_tt, d_dz };
    for (size_t i = 0; i < sizeof dev / sizeof dev[0]; i++) G->free(G, dev[i]);
    void *host[] = { z, lab, probs, loss, corr, dl, t, tt, dz };
    for (size_t i = 0; i < sizeof host / sizeof host[0]; i++) free(host[i]);
}

/* A label outside [0, k) is DLT_ERR_INVALID on the CPU at once; on the GPU
 * it is recorded and reported by the next synchronising call (its gradient
 * would otherwise stay finite and the bad label go unnoticed). */
static void test_bad_label(void)
{
    const int n = 4, k = 7;
    const int32_t labs[2][4] = { { 1, 2, 7, 3 }, { 0, -1, 2, 3 } };
    float *z = rnd((size_t)n * k, -1, 1);
    float *d_z = up(z, (size_t)n * k * 4), *d_p = NULL, *d_loss = NULL;
    MUST(G->alloc(G, (size_t)n * k * 4, (void **)&d_p));
    MUST(G->alloc(G, (size_t)n * 4, (void **)&d_loss));
    for (int c = 0; c < 2; c++) {
        int32_t *d_lab = up(labs[c], sizeof labs[c]);
        char what[80];
        MUST(G->softmax_xent_fwd(G, n, k, d_z, d_lab, d_p, d_loss, NULL));
        dlt_status st = G->sync(G);
        snprintf(what, sizeof what, "softmax_xent_fwd label %d is DLT_ERR_INVALID at sync",
                 (int)labs[c][c ? 1 : 2]);
        check_true(what, st == DLT_ERR_INVALID, dlt_last_error());
        MUST(G->onehot(G, n, k, d_lab, d_p));
        st = G->sync(G);
        snprintf(what, sizeof what, "onehot label %d is DLT_ERR_INVALID at sync",
                 (int)labs[c][c ? 1 : 2]);
        check_true(what, st == DLT_ERR_INVALID, dlt_last_error());
        G->free(G, d_lab);
    }
    MUST(G->sync(G)); /* reported once, then cleared */
    G->free(G, d_z);
    G->free(G, d_p);
    G->free(G, d_loss);
    free(z);
}

static void test_opt_one(const char *name, dlt_opt_hparams h, int n1, int n2)
{
    const size_t n = 10007;
    float *w = rnd(n, -1, 1);
    float *s1 = n1 ? calloc(n, 4) : NULL, *s2 = n2 ? calloc(n, 4) : NULL;
    float *d_w = up(w, n * 4), *d_s1 = up(s1, n * 4), *d_s2 = up(s2, n * 4);
    for (int64_t t = 1; t <= 3; t++) {
        float *g = rnd(n, -1, 1);
        float *d_g = up(g, n * 4);
        h.t = t;
        MUST(C->opt_update(C, &h, n, w, g, s1, s2));
        MUST(G->opt_update(G, &h, n, d_w, d_g, d_s1, d_s2));
        G->free(G, d_g);
        free(g);
    }
    char what[64];
    snprintf(what, sizeof what, "opt_update %s w (3 steps)", name);
    check_dev(what, d_w, w, n, TOL_FP32);
    if (s1) {
        snprintf(what, sizeof what, "opt_update %s state 1", name);
        check_dev(what, d_s1, s1, n, TOL_FP32);
    }
    if (s2) {
        snprintf(what, sizeof what, "opt_update %s state 2", name);
        check_dev(what, d_s2, s2, n, TOL_FP32);
    }
    G->free(G, d_w);
    G->free(G, d_s1);
    G->free(G, d_s2);
    free(w);
    free(s1);
    free(s2);
}

static void test_opt(void)
{
    dlt_opt_hparams h;
    memset(&h, 0, sizeof h);
    h.kind = DLT_OPT_SGD;
    h.lr = 0.1f;
    h.weight_decay = 1e-2f;
    test_opt_one("sgd", h, 0, 0);
    h.momentum = 0.9f;
    test_opt_one("sgd momentum", h, 1, 0);
    h.nesterov = 1;
    test_opt_one("sgd nesterov", h, 1, 0);

    memset(&h, 0, sizeof h);
    h.kind = DLT_OPT_ADAM;
    h.lr = 1e-3f;
    h.beta1 = 0.9f;
    h.beta2 = 0.999f;
    h.eps = 1e-8f;
    h.weight_decay = 1e-2f;
    test_opt_one("adam", h, 1, 1);
    h.kind = DLT_OPT_ADAMW;
    test_opt_one("adamw", h, 1, 1);

    memset(&h, 0, sizeof h);
    h.kind = DLT_OPT_ADAGRAD;
    h.lr = 1e-2f;
    h.eps = 1e-10f;
    h.weight_decay = 1e-3f;
    test_opt_one("adagrad", h, 1, 0);

    memset(&h, 0, sizeof h);
    h.kind = DLT_OPT_RMSPROP;
    h.lr = 1e-2f;
    h.alpha = 0.99f;
    h.eps = 1e-8f;
    test_opt_one("rmsprop", h, 1, 0);
    h.momentum = 0.5f;
    h.weight_decay = 1e-3f;
    test_opt_one("rmsprop momentum", h, 1, 1);
}

/* Planned for g (workspace from each backend's conv2d_workspace), then run
 * with run_n <= g.n samples, as a layer does on a short last batch. */
static void test_conv(dlt_conv_geom g, int run_n)
{
    dlt_conv_geom_finish(&g);
    size_t wsc = C->conv2d_workspace(C, &g), wsg = G->conv2d_workspace(G, &g);
    void *cws = malloc(wsc ? wsc : 1), *gws = NULL;
    MUST(G->alloc(G, wsg, &gws));
    g.n = run_n;
    const size_t nx = (size_t)g.n * g.c * g.h * g.w, nw = (size_t)g.k * g.c * g.r * g.s;
    const size_t ny = (size_t)g.n * g.k * g.oh * g.ow;
    float *x = rnd(nx, -1, 1), *w = rnd(nw, -0.5f, 0.5f), *dy = rnd(ny, -1, 1);
    /* y starts non-zero too: forward must overwrite, not accumulate */
    float *y = rnd(ny, -1, 1), *dx = rnd(nx, -1, 1), *dw = rnd(nw, -1, 1);
    float *d_x = up(x, nx * 4), *d_w = up(w, nw * 4), *d_dy = up(dy, ny * 4);
    float *d_y = up(y, ny * 4), *d_dx = up(dx, nx * 4), *d_dw = up(dw, nw * 4);
    char what[96], geo[64];
    snprintf(geo, sizeof geo, "n=%d c=%d %dx%d k=%d %dx%d s%d p%d", g.n, g.c, g.h, g.w, g.k, g.r,
             g.s, g.stride, g.pad);

    MUST(C->conv2d_fwd(C, &g, x, w, y, cws));
    MUST(G->conv2d_fwd(G, &g, d_x, d_w, d_y, gws));
    snprintf(what, sizeof what, "conv2d_fwd %s", geo);
    check_dev(what, d_y, y, ny, TOL_TF32);
    MUST(C->conv2d_bwd_data(C, &g, dy, w, dx, cws));
    MUST(G->conv2d_bwd_data(G, &g, d_dy, d_w, d_dx, gws));
    snprintf(what, sizeof what, "conv2d_bwd_data %s", geo);
    check_dev(what, d_dx, dx, nx, TOL_TF32);
    MUST(C->conv2d_bwd_filter(C, &g, x, dy, dw, cws));
    MUST(G->conv2d_bwd_filter(G, &g, d_x, d_dy, d_dw, gws));
    snprintf(what, sizeof what, "conv2d_bwd_filter %s", geo);
    check_dev(what, d_dw, dw, nw, TOL_TF32);

    void *dev[] = { d_x, d_w, d_dy, d_y, d_dx, d_dw, gws };
    for (size_t i = 0; i < sizeof dev / sizeof dev[0]; i++) G->free(G, dev[i]);
    void *host[] = { x, w, dy, y, dx, dw, cws };
    for (size_t i = 0; i < sizeof host / sizeof host[0]; i++) free(host[i]);
}

static void test_pool(dlt_pool_mode mode, dlt_conv_geom g)
{
    g.k = g.c;
    dlt_conv_geom_finish(&g);
    const size_t nx = (size_t)g.n * g.c * g.h * g.w, ny = (size_t)g.n * g.c * g.oh * g.ow;
    float *x = rnd(nx, -2, 2), *dy = rnd(ny, -1, 1), *dx = rnd(nx, -1, 1);
    for (size_t i = 0; i < nx; i++) x[i] = roundf(x[i] * 2.0f) / 2.0f; /* many ties */
    float *y = rnd(ny, -1, 1); /* forward must overwrite it */
    float *d_x = up(x, nx * 4), *d_dy = up(dy, ny * 4), *d_dx = up(dx, nx * 4);
    float *d_y = up(y, ny * 4);
    char what[96];
    const char *m = mode == DLT_POOL_MAX ? "max" : "avg";
    MUST(C->pool2d_fwd(C, mode, &g, x, y));
    MUST(G->pool2d_fwd(G, mode, &g, d_x, d_y));
    snprintf(what, sizeof what, "pool2d_fwd %s %dx%d %dx%d s%d p%d", m, g.h, g.w, g.r, g.s,
             g.stride, g.pad);
    check_dev(what, d_y, y, ny, TOL_FP32);
    MUST(C->pool2d_bwd(C, mode, &g, x, y, dy, dx));
    MUST(G->pool2d_bwd(G, mode, &g, d_x, d_y, d_dy, d_dx));
    snprintf(what, sizeof what, "pool2d_bwd %s %dx%d %dx%d s%d p%d", m, g.h, g.w, g.r, g.s,
             g.stride, g.pad);
    check_dev(what, d_dx, dx, nx, TOL_FP32);
    void *dev[] = { d_x, d_dy, d_dx, d_y };
    for (size_t i = 0; i < sizeof dev / sizeof dev[0]; i++) G->free(G, dev[i]);
    void *host[] = { x, dy, dx, y };
    for (size_t i = 0; i < sizeof host / sizeof host[0]; i++) free(host[i]);
}

static void test_bnorm(int n, int c, int hw, int affine)
{
    const size_t nx = (size_t)n * c * hw, nc = (size_t)c;
    float *x = rnd(nx, 2, 6); /* a large mean, which one-pass variance would lose */
    float *gm = affine ? rnd(nc, 0.5f, 1.5f) : NULL, *bt = affine ? rnd(nc, -0.5f, 0.5f) : NULL;
    float *rm = rnd(nc, -0.1f, 0.1f), *rv = rnd(nc, 0.9f, 1.1f);
    float *y = rnd(nx, -1, 1), *sm = malloc(nc * 4), *si = malloc(nc * 4);
    float *dy = rnd(nx, -1, 1), *dx = rnd(nx, -1, 1);
    float *dg = rnd(nc, -1, 1), *dbt = rnd(nc, -1, 1);
    float *d_x = up(x, nx * 4), *d_gm = up(gm, nc * 4), *d_bt = up(bt, nc * 4);
    float *d_rm = up(rm, nc * 4), *d_rv = up(rv, nc * 4), *d_y = up(y, nx * 4);
    float *d_sm = up(sm, nc * 4), *d_si = up(si, nc * 4), *d_dy = up(dy, nx * 4);
    float *d_dx = up(dx, nx * 4), *d_dg = up(dg, nc * 4), *d_dbt = up(dbt, nc * 4);
    char what[96], geo[48];
    snprintf(geo, sizeof geo, "n=%d c=%d hw=%d%s", n, c, hw, affine ? "" : " no-affine");

    MUST(C->bnorm_fwd_train(C, n, c, hw, 1e-5f, 0.1f, x, gm, bt, y, rm, rv, sm, si));
    MUST(G->bnorm_fwd_train(G, n, c, hw, 1e-5f, 0.1f, d_x, d_gm, d_bt, d_y, d_rm, d_rv, d_sm,
                            d_si));
    snprintf(what, sizeof what, "bnorm_fwd_train y %s", geo);
    check_dev(what, d_y, y, nx, 1e-4);
    snprintf(what, sizeof what, "bnorm_fwd_train running stats %s", geo);
    check_dev(what, d_rm, rm, nc, 1e-5);
    check_dev(what, d_rv, rv, nc, 1e-5);
    snprintf(what, sizeof what, "bnorm_fwd_train saved stats %s", geo);
    check_dev(what, d_sm, sm, nc, 1e-5);
    check_dev(what, d_si, si, nc, 1e-5);

    MUST(C->bnorm_bwd(C, n, c, hw, x, dy, gm, sm, si, dx, affine ? dg : NULL,
                      affine ? dbt : NULL));
    MUST(G->bnorm_bwd(G, n, c, hw, d_x, d_dy, d_gm, d_sm, d_si, d_dx, affine ? d_dg : NULL,
                      affine ? d_dbt : NULL));
    snprintf(what, sizeof what, "bnorm_bwd dx %s", geo);
    check_dev(what, d_dx, dx, nx, 1e-4);
    if (affine) {
        snprintf(what, sizeof what, "bnorm_bwd dgamma dbeta %s", geo);
        check_dev(what, d_dg, dg, nc, 1e-4);
        check_dev(what, d_dbt, dbt, nc, 1e-4);
    }

    MUST(C->bnorm_fwd_eval(C, n, c, hw, 1e-5f, x, gm, bt, rm, rv, y));
    MUST(G->bnorm_fwd_eval(G, n, c, hw, 1e-5f, d_x, d_gm, d_bt, d_rm, d_rv, d_y));
    snprintf(what, sizeof what, "bnorm_fwd_eval %s", geo);
    check_dev(what, d_y, y, nx, 1e-4);

    void *dev[] = { d_x, d_gm, d_bt, d_rm, d_rv, d_y, d_sm, d_si, d_dy, d_dx, d_dg, d_dbt };
    for (size_t i = 0; i < sizeof dev / sizeof dev[0]; i++) G->free(G, dev[i]);
    void *host[] = { x, gm, bt, rm, rv, y, sm, si, dy, dx, dg, dbt };
    for (size_t i = 0; i < sizeof host / sizeof host[0]; i++) free(host[i]);
}

/* Errors raised inside the library must reach this program's
 * dlt_last_error() (the program exports dlt_error; see the Makefile). */
static void test_errors(void)
{
    dlt_clear_error();
    dlt_status st = G->gemm(G, 0, 0, 4, 4, 4, 1.0f, NULL, 1, NULL, 4, 0.0f, NULL, 4);
    check_true("gemm with a bad lda is DLT_ERR_INVALID", st == DLT_ERR_INVALID, NULL);
    check_true("library error message reaches the program",
               strstr(dlt_last_error(), "leading dimension") != NULL, dlt_last_error());
    void *p = NULL;
    st = G->alloc(G, (size_t)1 << 60, &p);
    check_true("alloc of 2^60 bytes is DLT_ERR_NOMEM", st == DLT_ERR_NOMEM, dlt_last_error());
    MUST(G->sync(G));
}

/* One-rank NCCL: a sum over one rank leaves the buffer unchanged. */
static void test_nccl(void)
{
    Dl_info info;
    void *fn;
    memcpy(&fn, &G->destroy, sizeof fn);
    void *h = dladdr(fn, &info) ? dlopen(info.dli_fname, RTLD_NOW | RTLD_NOLOAD) : NULL;
    if (!h) {
        check_true("nccl: find libdltcuda.so", 0, dlerror());
        return;
    }
    dlt_nccl_unique_id_fn uid;
    dlt_nccl_init_fn init;
    dlt_nccl_allreduce_sum_f32_fn allreduce;
    dlt_nccl_free_fn nfree;
    void *s1 = dlsym(h, DLT_NCCL_UNIQUE_ID_SYMBOL), *s2 = dlsym(h, DLT_NCCL_INIT_SYMBOL);
    void *s3 = dlsym(h, DLT_NCCL_ALLREDUCE_SUM_F32_SYMBOL), *s4 = dlsym(h, DLT_NCCL_FREE_SYMBOL);
    check_true("nccl: symbols exported", s1 && s2 && s3 && s4 && dlsym(h, DLT_NCCL_ABORT_SYMBOL),
               NULL);
    if (!(s1 && s2 && s3 && s4)) return;
    memcpy(&uid, &s1, sizeof s1);
    memcpy(&init, &s2, sizeof s2);
    memcpy(&allreduce, &s3, sizeof s3);
    memcpy(&nfree, &s4, sizeof s4);

    unsigned char id[DLT_NCCL_ID_BYTES];
    MUST(uid(id));
    dlt_nccl_t comm = NULL;
    MUST(init(G, id, 1, 0, 60.0, &comm));
    const size_t n = 4099;
    float *x = rnd(n, -1, 1);
    float *d_x = up(x, n * 4);
    MUST(allreduce(comm, d_x, n));
    check_dev("nccl allreduce_sum_f32, 1 rank", d_x, x, n, 0.0);
    /* ZeRO-1 forms: one rank owns the whole buffer, so both leave it as it is */
    dlt_nccl_shard_start_fn rs, ag;
    dlt_nccl_wait_all_fn wait_all;
    void *s5 = dlsym(h, DLT_NCCL_REDUCE_SCATTER_START_SYMBOL), *s6 = dlsym(h, DLT_NCCL_ALL_GATHER_START_SYMBOL);
    void *s7 = dlsym(h, DLT_NCCL_WAIT_ALL_SYMBOL);
    check_true("nccl: ZeRO symbols exported", s5 && s6 && s7, NULL);
    void *s8 = dlsym(h, DLT_NCCL_ALLREDUCE_START_SYMBOL);
    check_true("nccl: allreduce_start exported", s8 != NULL, NULL);
    if (s7 && s8) { /* the form the gradient buckets use: own stream, event-ordered */
        dlt_nccl_allreduce_start_fn start;
        memcpy(&start, &s8, sizeof s8);
        memcpy(&wait_all, &s7, sizeof s7);
        MUST(start(comm, d_x, n));
        MUST(start(comm, d_x + 1000, n - 1000)); /* a second bucket reuses the event */
        MUST(wait_all(comm));
        check_dev("nccl allreduce_start + wait_all, 1 rank", d_x, x, n, 0.0);
    }
    if (s5 && s6 && s7) {
        memcpy(&rs, &s5, sizeof s5);
        memcpy(&ag, &s6, sizeof s6);
        memcpy(&wait_all, &s7, sizeof s7);
        MUST(rs(comm, d_x, n));
        MUST(wait_all(comm));
        check_dev("nccl reduce_scatter_start, 1 rank", d_x, x, n, 0.0);
        MUST(ag(comm, d_x, n));
        MUST(wait_all(comm));
        check_dev("nccl all_gather_start, 1 rank", d_x, x, n, 0.0);
    }
    nfree(comm);
    /* abort of a live non-blocking communicator: later calls fail cleanly */
    void *s9 = dlsym(h, DLT_NCCL_ABORT_SYMBOL);
    if (s9 && s8) {
        dlt_nccl_abort_fn nabort;
        dlt_nccl_allreduce_start_fn start;
        memcpy(&nabort, &s9, sizeof s9);
        memcpy(&start, &s8, sizeof s8);
        MUST(uid(id));
        MUST(init(G, id, 1, 0, 60.0, &comm));
        nabort(comm);
        check_true("nccl: start after abort is DLT_ERR_COMM", start(comm, d_x, n) == DLT_ERR_COMM,
                   dlt_last_error());
        nfree(comm);
    }
    G->free(G, d_x);
    free(x);
    dlclose(h);
}

int main(int argc, char **argv)
{
    if (argc > 1) setenv("DLT_CUDA_LIB", argv[1], 1);
    rng = dlt_rng_make(20240611);
    MUST(dlt_device_open("cpu", 0, &C));
    dlt_status st = dlt_device_open("cuda", 0, &G);
    if (st != DLT_OK) {
        if (strstr(dlt_last_error(), "no GPU is visible")) {
            printf("test_cuda_ops: SKIP (no GPU): %s\n", dlt_last_error());
            C->destroy(C);
            return 77;
        }
        printf("test_cuda_ops: FAIL: %s\n", dlt_last_error());
        return 1;
    }
    char gdesc[256], cdesc[64];
    printf("test_cuda_ops: %s vs %s\n", dlt_device_describe(G, gdesc, sizeof gdesc),
           dlt_device_describe(C, cdesc, sizeof cdesc));

    test_fill_blas();
    test_gemm();
    test_cuda_linear_all();
    test_bias(8, 16, 49);
    test_bias(64, 300, 1);
    test_bias(5, 40, 1); /* fewer rows than the GPU kernel's row lanes */
    test_act();
    test_dropout();
    test_losses(64, 10);
    test_losses(16, 5000);
    test_bad_label();
    test_opt();
    test_conv((dlt_conv_geom){ .n = 4, .c = 3, .h = 17, .w = 19, .k = 8, .r = 3, .s = 3,
                               .stride = 1, .pad = 1 }, 4);
    test_conv((dlt_conv_geom){ .n = 4, .c = 16, .h = 14, .w = 14, .k = 32, .r = 5, .s = 5,
                               .stride = 2, .pad = 2 }, 3);
    test_conv((dlt_conv_geom){ .n = 3, .c = 8, .h = 9, .w = 9, .k = 4, .r = 1, .s = 1,
                               .stride = 1, .pad = 0 }, 3);
    test_pool(DLT_POOL_MAX, (dlt_conv_geom){ .n = 2, .c = 3, .h = 8, .w = 8, .r = 2, .s = 2,
                                             .stride = 2, .pad = 0 });
    test_pool(DLT_POOL_MAX, (dlt_conv_geom){ .n = 2, .c = 3, .h = 9, .w = 7, .r = 3, .s = 3,
                                             .stride = 2, .pad = 1 });
    test_pool(DLT_POOL_AVG, (dlt_conv_geom){ .n = 2, .c = 3, .h = 8, .w = 8, .r = 2, .s = 2,
                                             .stride = 2, .pad = 0 });
    test_pool(DLT_POOL_AVG, (dlt_conv_geom){ .n = 2, .c = 3, .h = 9, .w = 7, .r = 3, .s = 3,
                                             .stride = 2, .pad = 1 });
    test_bnorm(8, 6, 25, 1);
    test_bnorm(32, 10, 1, 1);
    test_bnorm(4, 3, 16, 0);
    test_bnorm(16, 4, 100, 1); /* n*hw > the block's 256 threads: strided loops */
    test_errors();
    test_cuda_seq_all();
    test_cuda_staging_all();
    test_nccl();

    MUST(G->sync(G));
    G->destroy(G);
    C->destroy(C);
    printf("test_cuda_ops: %d of %d checks passed%s\n", checks - failures, checks,
           failures ? " -- FAILED" : "");
    return failures != 0;
}
