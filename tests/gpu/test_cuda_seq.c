/* CUDA vs CPU for the sequence-model ops (embedding, layer norm, per-token
 * cross-entropy, attention, LSTM), forward and backward, and the GEMM
 * precisions (train.precision).
 *
 * Same method as test_cuda_ops.c: identical random inputs on both backends,
 * backward outputs start non-zero (the ops accumulate), tensor-level relative
 * error. Ops built on cuBLAS gemms (attention, LSTM) get the TF32 tolerance;
 * embedding rows and the dropout-dependent zeros must match exactly. Data
 * errors (a token id outside the vocabulary, a label >= classes) are found
 * by the kernels and must surface as DLT_ERR_INVALID at the next sync. */
#include <string.h>

#include "core/device.h"
#include "tests/gpu/gpu_test.h"

static float *fup(const float *h, size_t n) { return up(h, n * sizeof(float)); }

static float *ids_rnd(int t, int vocab, int zero_every)
{
    float *x = malloc((size_t)t * sizeof *x);
    for (int i = 0; i < t; i++)
        x[i] = zero_every && i % zero_every == 1 ? 0.0f
                                                 : (float)dlt_rng_below(&rng, (uint64_t)vocab);
    return x;
}

static void test_embedding(int t, int dim, int vocab)
{
    float *ids = ids_rnd(t, vocab, 0), *w = rnd((size_t)vocab * dim, -1, 1);
    float *y = rnd((size_t)t * dim, 0, 1), *dy = rnd((size_t)t * dim, -1, 1);
    float *dw = rnd((size_t)vocab * dim, -1, 1), *dw0 = dup(dw, (size_t)vocab * dim);
    float *d_ids = fup(ids, t), *d_w = fup(w, (size_t)vocab * dim), *d_y = fup(y, (size_t)t * dim);
    float *d_dy = fup(dy, (size_t)t * dim), *d_dw = fup(dw, (size_t)vocab * dim);
    MUST(C->embedding_fwd(C, t, dim, vocab, ids, w, y));
    MUST(G->embedding_fwd(G, t, dim, vocab, d_ids, d_w, d_y));
    check_dev("embedding_fwd", d_y, y, (size_t)t * dim, 0.0);
    MUST(C->embedding_bwd(C, t, dim, vocab, ids, dy, 3, dw));
    MUST(G->embedding_bwd(G, t, dim, vocab, d_ids, d_dy, 3, d_dw));
    check_dev("embedding_bwd (padding_idx 3, repeated ids)", d_dw, dw, (size_t)vocab * dim, 0.0);

    ids[t / 2] = (float)vocab; /* out of range: an error at the next sync */
    MUST(G->upload(G, d_ids, ids, (size_t)t * sizeof(float)));
    dlt_clear_error();
    dlt_status st = G->embedding_fwd(G, t, dim, vocab, d_ids, d_w, d_y);
    if (st == DLT_OK) st = G->sync(G);
    check_true("embedding id >= vocab is DLT_ERR_INVALID at sync", st == DLT_ERR_INVALID,
               dlt_last_error());
    check_true("... and the error is cleared afterwards", G->sync(G) == DLT_OK, NULL);
    free(ids), free(w), free(y), free(dy), free(dw), free(dw0);
    G->free(G, d_ids), G->free(G, d_w), G->free(G, d_y), G->free(G, d_dy), G->free(G, d_dw);
}

/* fill_rows: the listed rows of x take v, the others keep their values
 * (exactly); a row index outside [0, rows) is DLT_ERR_INVALID at sync. */
static void test_fill_rows(int k, int dim, int rows)
{
    float *idx = malloc((size_t)k * sizeof *idx), *x = rnd((size_t)rows * dim, -1, 1);
    for (int i = 0; i < k; i++) idx[i] = (float)((i * 7 + 3) % rows);   /* repeats when k > rows/7 */
    float *d_idx = fup(idx, k), *d_x = fup(x, (size_t)rows * dim);
    MUST(C->fill_rows(C, k, dim, rows, idx, 0.0f, x));
    MUST(G->fill_rows(G, k, dim, rows, d_idx, 0.0f, d_x));
    check_dev("fill_rows", d_x, x, (size_t)rows * dim, 0.0);
    idx[k / 2] = (float)rows;
    MUST(G->upload(G, d_idx, idx, (size_t)k * sizeof(float)));
    dlt_clear_error();
    dlt_status st = G->fill_rows(G, k, dim, rows, d_idx, 0.0f, d_x);
    if (st == DLT_OK) st = G->sync(G);
    check_true("fill_rows row >= rows is DLT_ERR_INVALID at sync", st == DLT_ERR_INVALID,
               dlt_last_error());
    check_true("... and the error is cleared afterwards", G->sync(G) == DLT_OK, NULL);
    free(idx), free(x);
    G->free(G, d_idx), G->free(G, d_x);
}

static void test_layernorm(int rows, int dim)
{
    const size_t n = (size_t)rows * dim;
    float *x = rnd(n, -3, 5), *g = rnd((size_t)dim, 0.5f, 1.5f), *b = rnd((size_t)dim, -1, 1);
    float *y = rnd(n, 0, 1), *mean = rnd((size_t)rows, 0, 1), *rstd = rnd((size_t)rows, 0, 1);
    float *dy = rnd(n, -1, 1), *dx = rnd(n, -1, 1), *dg = rnd((size_t)dim, -1, 1);
    float *db = rnd((size_t)dim, -1, 1);
    float *d_x = fup(x, n), *d_g = fup(g, dim), *d_b = fup(b, dim), *d_y = fup(y, n);
    float *d_mean = fup(mean, rows), *d_rstd = fup(rstd, rows), *d_dy = fup(dy, n);
    float *d_dx = fup(dx, n), *d_dg = fup(dg, dim), *d_db = fup(db, dim);
    MUST(C->layernorm_fwd(C, rows, dim, 1e-5f, x, g, b, y, mean, rstd));
    MUST(G->layernorm_fwd(G, rows, dim, 1e-5f, d_x, d_g, d_b, d_y, d_mean, d_rstd));
    check_dev("layernorm_fwd y", d_y, y, n, 1e-4);
    check_dev("layernorm_fwd mean", d_mean, mean, (size_t)rows, 1e-4);
    check_dev("layernorm_fwd rstd", d_rstd, rstd, (size_t)rows, 1e-4);
    /* backward from the CPU's statistics on both, so only backward is compared */
    MUST(G->upload(G, d_mean, mean, (size_t)rows * sizeof(float)));
    MUST(G->upload(G, d_rstd, rstd, (size_t)rows * sizeof(float)));
    MUST(C->layernorm_bwd(C, rows, dim, x, dy, g, mean, rstd, dx, dg, db));
    MUST(G->layernorm_bwd(G, rows, dim, d_x, d_dy, d_g, d_mean, d_rstd, d_dx, d_dg, d_db));
    check_dev("layernorm_bwd dx", d_dx, dx, n, 1e-4);
    check_dev("layernorm_bwd dgamma", d_dg, dg, (size_t)dim, 1e-4);
    check_dev("layernorm_bwd dbeta", d_db, db, (size_t)dim, 1e-4);
    float *hs[] = { x, g, b, y, mean, rstd, dy, dx, dg, db };
    float *ds[] = { d_x, d_g, d_b, d_y, d_mean, d_rstd, d_dy, d_dx, d_dg, d_db };
    for (size_t i = 0; i < sizeof hs / sizeof hs[0]; i++) free(hs[i]), G->free(G, ds[i]);
}

static void test_xent_seq(int n, int len, int k)
{
    const int rows = n * len;
    float *z = rnd((size_t)rows * k, -4, 4), *dz = rnd((size_t)rows * k, -1, 1);
    int32_t *lab = rnd_labels(rows, k);
    for (int r = 0; r < rows; r += 3) lab[r] = -1; /* ignored tokens */
    z[(size_t)1 * k + 5] = z[(size_t)1 * k + 9] = 100.0f; /* a tie: first argmax wins */
    float loss[64], cor[64], cnt[64];
    float *d_z = fup(z, (size_t)rows * k), *d_dz = fup(dz, (size_t)rows * k);
    int32_t *d_lab = up(lab, (size_t)rows * sizeof(int32_t));
    float *d_loss = NULL, *d_cor = NULL, *d_cnt = NULL;
    MUST(G->alloc(G, (size_t)n * sizeof(float), (void **)&d_loss));
    MUST(G->alloc(G, (size_t)n * sizeof(float), (void **)&d_cor));
    MUST(G->alloc(G, (size_t)n * sizeof(float), (void **)&d_cnt));
    MUST(C->softmax_xent_seq_fwd(C, n, len, k, z, lab, loss, cor, cnt));
    MUST(G->softmax_xent_seq_fwd(G, n, len, k, d_z, d_lab, d_loss, d_cor, d_cnt));
    char what[96];
    snprintf(what, sizeof what, "softmax_xent_seq_fwd loss (k=%d)", k);
    check_dev(what, d_loss, loss, (size_t)n, 1e-5);
    check_dev("softmax_xent_seq_fwd correct (exact)", d_cor, cor, (size_t)n, 0.0);
    check_dev("softmax_xent_seq_fwd count (exact)", d_cnt, cnt, (size_t)n, 0.0);
    MUST(C->softmax_xent_seq_bwd(C, rows, k, z, lab, 0.37f, dz));
    MUST(G->softmax_xent_seq_bwd(G, rows, k, d_z, d_lab, 0.37f, d_dz));
    snprintf(what, sizeof what, "softmax_xent_seq_bwd (k=%d)", k);
    check_dev(what, d_dz, dz, (size_t)rows * k, 1e-5);

    lab[2] = k; /* label out of range */
    MUST(G->upload(G, d_lab, lab, (size_t)rows * sizeof(int32_t)));
    dlt_status st = G->softmax_xent_seq_fwd(G, n, len, k, d_z, d_lab, d_loss, d_cor, d_cnt);
    if (st == DLT_OK) st = G->sync(G);
    check_true("softmax_xent_seq label >= k is DLT_ERR_INVALID at sync", st == DLT_ERR_INVALID,
               dlt_last_error());
    free(z), free(dz), free(lab);
    G->free(G, d_z), G->free(G, d_dz), G->free(G, d_lab), G->free(G, d_loss);
    G->free(G, d_cor), G->free(G, d_cnt);
}

static void test_attention(int n, int len, int heads, int dh, float p, double tol)
{
    const int D = heads * dh;
    const size_t nq = (size_t)n * len * 3 * D, no = (size_t)n * len * D;
    const size_t np = (size_t)n * heads * len * len, blk = (size_t)len * len;
    float *qkv = rnd(nq, -1, 1), *tok = ids_rnd(n * len, 50, 4);
    for (int j = 0; j < len; j++) tok[(size_t)(n - 1) * len + j] = j < 2 ? 7.0f : 0.0f;
    float *probs = rnd(np, 0, 1), *out = rnd(no, 0, 1), *dout = rnd(no, -1, 1);
    float *dqkv = rnd(nq, -1, 1), *ws = rnd(2 * blk, 0, 1);
    float *d_qkv = fup(qkv, nq), *d_tok = fup(tok, (size_t)n * len), *d_probs = fup(probs, np);
    float *d_out = fup(out, no), *d_dout = fup(dout, no), *d_dqkv = fup(dqkv, nq);
    float *d_ws = fup(ws, 2 * blk);
    const uint64_t key = 0x5eed, first = 1000;
    MUST(C->attention_fwd(C, n, len, heads, dh, qkv, tok, p, key, first, probs, out, ws));
    MUST(G->attention_fwd(G, n, len, heads, dh, d_qkv, d_tok, p, key, first, d_probs, d_out, d_ws));
    char what[96];
    snprintf(what, sizeof what, "attention_fwd probs (len %d, p %.1f)", len, (double)p);
    check_dev(what, d_probs, probs, np, tol);
    snprintf(what, sizeof what, "attention_fwd out (len %d, p %.1f)", len, (double)p);
    check_dev(what, d_out, out, no, tol);
    /* backward from the CPU's probabilities on both */
    MUST(G->upload(G, d_probs, probs, np * sizeof(float)));
    MUST(C->attention_bwd(C, n, len, heads, dh, qkv, p, key, first, probs, dout, dqkv, ws));
    MUST(G->attention_bwd(G, n, len, heads, dh, d_qkv, p, key, first, d_probs, d_dout, d_dqkv,
                          d_ws));
    snprintf(what, sizeof what, "attention_bwd dqkv (len %d, p %.1f)", len, (double)p);
    check_dev(what, d_dqkv, dqkv, nq, tol);
    float *hs[] = { qkv, tok, probs, out, dout, dqkv, ws };
    float *ds[] = { d_qkv, d_tok, d_probs, d_out, d_dout, d_dqkv, d_ws };
    for (size_t i = 0; i < sizeof hs / sizeof hs[0]; i++) free(hs[i]), G->free(G, ds[i]);
}

static void test_lstm(int n, int len, int din, int h, int with_state)
{
    const int g4 = 4 * h;
    const size_t nx = (size_t)n * len * din, ny = (size_t)n * len * h, ng = (size_t)n * len * g4;
    const size_t nws = ng + 2 * (size_t)n * h;
    float *x = rnd(nx, -1, 1), *wih = rnd((size_t)g4 * din, -0.5f, 0.5f);
    float *whh = rnd((size_t)g4 * h, -0.5f, 0.5f), *bih = rnd(g4, -0.5f, 0.5f);
    float *bhh = rnd(g4, -0.5f, 0.5f);
    float *h0 = with_state ? rnd((size_t)n * h, -1, 1) : NULL;
    float *c0 = with_state ? rnd((size_t)n * h, -1, 1) : NULL;
    float *y = rnd(ny, 0, 1), *gates = rnd(ng, 0, 1), *c = rnd(ny, 0, 1), *dy = rnd(ny, -1, 1);
    float *dx = rnd(nx, -1, 1), *dwih = rnd((size_t)g4 * din, -1, 1);
    float *dwhh = rnd((size_t)g4 * h, -1, 1), *dbih = rnd(g4, -1, 1), *dbhh = rnd(g4, -1, 1);
    float *ws = rnd(nws, 0, 1);
    float *d_x = fup(x, nx), *d_wih = fup(wih, (size_t)g4 * din), *d_whh = fup(whh, (size_t)g4 * h);
    float *d_bih = fup(bih, g4), *d_bhh = fup(bhh, g4), *d_h0 = h0 ? fup(h0, (size_t)n * h) : NULL;
    float *d_c0 = c0 ? fup(c0, (size_t)n * h) : NULL, *d_y = fup(y, ny), *d_gates = fup(gates, ng);
    float *d_c = fup(c, ny), *d_dy = fup(dy, ny), *d_dx = fup(dx, nx);
    float *d_dwih = fup(dwih, (size_t)g4 * din), *d_dwhh = fup(dwhh, (size_t)g4 * h);
    float *d_dbih = fup(dbih, g4), *d_dbhh = fup(dbhh, g4), *d_ws = fup(ws, nws);
    MUST(C->lstm_fwd(C, n, len, din, h, x, wih, whh, bih, bhh, h0, c0, y, gates, c));
    MUST(G->lstm_fwd(G, n, len, din, h, d_x, d_wih, d_whh, d_bih, d_bhh, d_h0, d_c0, d_y, d_gates,
                     d_c));
    const char *tag = with_state ? "with h0/c0" : "zero state";
    char what[96];
    snprintf(what, sizeof what, "lstm_fwd y (%s)", tag);
    check_dev(what, d_y, y, ny, TOL_TF32);
    snprintf(what, sizeof what, "lstm_fwd gates (%s)", tag);
    check_dev(what, d_gates, gates, ng, TOL_TF32);
    snprintf(what, sizeof what, "lstm_fwd c (%s)", tag);
    check_dev(what, d_c, c, ny, TOL_TF32);
    /* backward from the CPU's activations on both */
    MUST(G->upload(G, d_y, y, ny * sizeof(float)));
    MUST(G->upload(G, d_gates, gates, ng * sizeof(float)));
    MUST(G->upload(G, d_c, c, ny * sizeof(float)));
    MUST(C->lstm_bwd(C, n, len, din, h, x, wih, whh, h0, c0, y, gates, c, dy, dx, dwih, dwhh, dbih,
                     dbhh, ws));
    MUST(G->lstm_bwd(G, n, len, din, h, d_x, d_wih, d_whh, d_h0, d_c0, d_y, d_gates, d_c, d_dy,
                     d_dx, d_dwih, d_dwhh, d_dbih, d_dbhh, d_ws));
    const struct { const char *name; float *d, *hst; size_t n; } outs[] = {
        { "dx", d_dx, dx, nx }, { "dw_ih", d_dwih, dwih, (size_t)g4 * din },
        { "dw_hh", d_dwhh, dwhh, (size_t)g4 * h }, { "db_ih", d_dbih, dbih, (size_t)g4 },
        { "db_hh", d_dbhh, dbhh, (size_t)g4 },
    };
    for (size_t i = 0; i < sizeof outs / sizeof outs[0]; i++) {
        snprintf(what, sizeof what, "lstm_bwd %s (%s)", outs[i].name, tag);
        check_dev(what, outs[i].d, outs[i].hst, outs[i].n, TOL_TF32);
    }
    float *hs[] = { x, wih, whh, bih, bhh, h0, c0, y, gates, c, dy, dx, dwih, dwhh, dbih, dbhh, ws };
    float *ds[] = { d_x, d_wih, d_whh, d_bih, d_bhh, d_h0, d_c0, d_y, d_gates, d_c, d_dy, d_dx,
                    d_dwih, d_dwhh, d_dbih, d_dbhh, d_ws };
    for (size_t i = 0; i < sizeof hs / sizeof hs[0]; i++) free(hs[i]), G->free(G, ds[i]);
}

/* train.precision: bf16/fp16 gemms within TOL_BF16, the CPU refuses them. */
static void test_precision(void)
{
    const int m = 67, n = 45, k = 300;
    float *a = rnd((size_t)m * k, -1, 1), *b = rnd((size_t)k * n, -1, 1);
    float *c = rnd((size_t)m * n, -1, 1);
    float *d_a = fup(a, (size_t)m * k), *d_b = fup(b, (size_t)k * n);
    float *d_c = fup(c, (size_t)m * n);
    MUST(C->gemm(C, 0, 0, m, n, k, 1.0f, a, k, b, n, 0.5f, c, n));
    const char *modes[] = { "bf16", "fp16" };
    for (int i = 0; i < 2; i++) {
        float *d_ci = NULL;
        MUST(G->alloc(G, (size_t)m * n * sizeof(float), (void **)&d_ci));
        MUST(G->copy(G, d_ci, d_c, (size_t)m * n * sizeof(float)));
        MUST(dlt_device_set_precision(G, modes[i]));
        MUST(G->gemm(G, 0, 0, m, n, k, 1.0f, d_a, k, d_b, n, 0.5f, d_ci, n));
        char what[64];
        snprintf(what, sizeof what, "gemm in %s", modes[i]);
        check_dev(what, d_ci, c, (size_t)m * n, TOL_BF16);
        G->free(G, d_ci);
    }
    test_attention(2, 16, 2, 16, 0.0f, TOL_BF16); /* the batched gemms follow too */
    MUST(dlt_device_set_precision(G, "fp32"));
    check_true("precision 'fp8' is DLT_ERR_INVALID",
               dlt_device_set_precision(G, "fp8") == DLT_ERR_INVALID, dlt_last_error());
    check_true("cpu backend refuses bf16",
               dlt_device_set_precision(C, "bf16") == DLT_ERR_UNSUPPORTED, dlt_last_error());
    free(a), free(b), free(c);
    G->free(G, d_a), G->free(G, d_b), G->free(G, d_c);
}

void test_cuda_seq_all(void)
{
    test_embedding(300, 70, 50);
    test_embedding(4000, 768, 30522);
    test_fill_rows(37, 70, 300);
    test_fill_rows(600, 30522, 1024);   /* a masked-LM logits gradient's target rows */
    test_layernorm(37, 200);
    test_layernorm(1024, 768);
    test_xent_seq(4, 9, 1000);
    test_xent_seq(2, 5, 30522);
    test_attention(3, 13, 3, 8, 0.0f, TOL_TF32);
    test_attention(3, 13, 3, 8, 0.1f, TOL_TF32);
    test_attention(2, 128, 4, 64, 0.1f, TOL_TF32);
    test_lstm(3, 5, 6, 7, 0);
    test_lstm(3, 5, 6, 7, 1);
    test_lstm(8, 35, 64, 128, 1);
    test_precision();
}
