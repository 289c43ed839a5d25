/* CUDA vs CPU for the sequence-model ops (embedding, layer norm, per-token
 * cross-entropy, attention, LSTM), forward and backward, and the GEMM
 * precisions (train.precision).
 *
 * Same method as test_cuda_ops.c: identical random inputs on both backends,
 * backward outputs start non-zero (the ops accumulate), tensor-level relative
 * error. Ops on tensor cores (attention's cuBLAS gemms, the LSTM through
 * cuDNN's RNN API with TF32 math) get the TF32 tolerance;
 * embedding rows and the dropout-dependent zeros must match exactly. Data
 * errors (a token id outside the vocabulary, a label >= classes) are found
 * by the kernels and must surface as DLT_ERR_INVALID at the next sync.
 * The flash attention kernels (fp32 SIMT) are held to 1e-4 against the
 * CPU's lse ops over several shapes, masks and dropout. */
#include <math.h>
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
    check_true("fill_rows row >= rows is DLT_ERR_INVALID at sync, naming fill_rows",
               st == DLT_ERR_INVALID && strstr(dlt_last_error(), "fill_rows"), dlt_last_error());
    check_true("... and the error is cleared afterwards", G->sync(G) == DLT_OK, NULL);
    free(idx), free(x);
    G->free(G, d_idx), G->free(G, d_x);
}

/* target_rows: the device's list of rows with a label >= 0 equals the
 * CPU's exactly, across several 1024-row chunks of the one-block kernel;
 * the slots past the count are left untouched. */
static void test_target_rows(int rows, int every)
{
    int32_t *lab = malloc((size_t)rows * sizeof *lab);
    int k = 0;
    for (int r = 0; r < rows; r++) {
        lab[r] = (r * 2654435761u) % (unsigned)every == 0 ? r % 50 : -1;
        k += lab[r] >= 0;
    }
    float *idx = rnd((size_t)rows, -9, -1), *d_idx = fup(idx, (size_t)rows);
    int32_t *d_lab = NULL;
    MUST(G->alloc(G, (size_t)rows * sizeof *lab, (void **)&d_lab));
    MUST(G->upload(G, d_lab, lab, (size_t)rows * sizeof *lab));
    MUST(C->target_rows(C, rows, lab, idx));
    MUST(G->target_rows(G, rows, d_lab, d_idx));
    char what[80];
    snprintf(what, sizeof what, "target_rows (rows %d, %d targets)", rows, k);
    check_dev(what, d_idx, idx, (size_t)rows, 0.0);
    free(lab), free(idx);
    G->free(G, d_idx), G->free(G, d_lab);
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

/* lse (n) on the device against the CPU's: the same rows -INFINITY (all keys
 * masked), the finite ones within tol. */
static void check_lse(const char *what, const float *d_lse, const float *want, size_t n,
                      double tol)
{
    float *got = down(d_lse, n), *w = dup(want, n);
    size_t bad_inf = 0;
    for (size_t i = 0; i < n; i++) {
        if ((got[i] == -INFINITY) != (w[i] == -INFINITY)) bad_inf++;
        if (got[i] == -INFINITY || w[i] == -INFINITY) got[i] = w[i] = 0.0f;
    }
    char d[64];
    snprintf(d, sizeof d, "%zu rows differ in being fully masked", bad_inf);
    check_true(what, bad_inf == 0, bad_inf ? d : NULL);
    check(what, got, w, n, tol);
    free(got), free(w);
}

/* The flash kernels (attention_fwd_lse / attention_bwd_lse) against the
 * CPU's lse ops (which test_attn.c checks against the probs ops). mask: 0
 * none, 1 random padding and a padded tail in the last sample, 2 the last
 * sample entirely padding (lse -INFINITY, output 0, no gradient). Backward
 * runs from the CPU's out and lse on both. SIMT fp32 kernels: a tolerance of
 * 1e-4 (exp and summation order differ, no tensor cores). */
static void test_attention_lse(int n, int len, int heads, int dh, float p, int mask)
{
    const double tol = 1e-4;
    const int D = heads * dh;
    const size_t nq = (size_t)n * len * 3 * D, no = (size_t)n * len * D;
    const size_t nl = (size_t)n * heads * len, nws = DLT_ATTN_LSE_WS_FLOATS(n, heads, len);
    float *qkv = rnd(nq, -1.5f, 1.5f), *tok = mask ? ids_rnd(n * len, 50, 4) : NULL;
    if (mask)
        for (int j = 0; j < len; j++)
            tok[(size_t)(n - 1) * len + j] = mask == 1 && j < len / 2 ? 7.0f : 0.0f;
    float *out = rnd(no, 0, 1), *lse = rnd(nl, 0, 1), *dout = rnd(no, -1, 1);
    float *dqkv = rnd(nq, -1, 1), *ws = rnd(nws, 0, 1);
    float *d_qkv = fup(qkv, nq), *d_tok = tok ? fup(tok, (size_t)n * len) : NULL;
    float *d_out = fup(out, no), *d_lse = fup(lse, nl), *d_dout = fup(dout, no);
    float *d_dqkv = fup(dqkv, nq), *d_ws = fup(ws, nws);
    const uint64_t key = 0xf1a5, first = 777;
    MUST(C->attention_fwd_lse(C, n, len, heads, dh, qkv, tok, p, key, first, out, lse, ws));
    MUST(G->attention_fwd_lse(G, n, len, heads, dh, d_qkv, d_tok, p, key, first, d_out, d_lse,
                              d_ws));
    char what[112];
    snprintf(what, sizeof what, "attention_fwd_lse out (n %d len %d heads %d dh %d p %.1f mask %d)",
             n, len, heads, dh, (double)p, mask);
    check_dev(what, d_out, out, no, tol);
    snprintf(what, sizeof what, "attention_fwd_lse lse (len %d dh %d p %.1f mask %d)", len, dh,
             (double)p, mask);
    check_lse(what, d_lse, lse, nl, tol);
    MUST(G->upload(G, d_out, out, no * sizeof(float)));
    MUST(G->upload(G, d_lse, lse, nl * sizeof(float)));
    MUST(C->attention_bwd_lse(C, n, len, heads, dh, qkv, tok, p, key, first, out, lse, dout, dqkv,
                              ws));
    MUST(G->attention_bwd_lse(G, n, len, heads, dh, d_qkv, d_tok, p, key, first, d_out, d_lse,
                              d_dout, d_dqkv, d_ws));
    snprintf(what, sizeof what,
             "attention_bwd_lse dqkv (n %d len %d heads %d dh %d p %.1f mask %d)", n, len, heads,
             dh, (double)p, mask);
    check_dev(what, d_dqkv, dqkv, nq, tol);
    float *hs[] = { qkv, tok, out, lse, dout, dqkv, ws };
    float *ds[] = { d_qkv, d_tok, d_out, d_lse, d_dout, d_dqkv, d_ws };
    for (size_t i = 0; i < sizeof hs / sizeof hs[0]; i++) free(hs[i]), G->free(G, ds[i]);
}

/* Head dims above the kernels' register tiles are refused with a hint. */
static void test_attention_lse_limits(void)
{
    float *d_x = NULL;
    MUST(G->alloc(G, 3 * 129 * 4 * sizeof(float), (void **)&d_x));
    dlt_clear_error();
    dlt_status st = G->attention_fwd_lse(G, 1, 4, 1, 129, d_x, NULL, 0.0f, 1, 0, d_x, d_x, d_x);
    check_true("attention_fwd_lse dh 129 is DLT_ERR_UNSUPPORTED", st == DLT_ERR_UNSUPPORTED,
               dlt_last_error());
    G->free(G, d_x);
}

/* Backend memory of n floats holding a host copy of x (G), or a heap copy
 * (C, whose backend memory is host memory); x NULL gives NULL. */
static float *on(dlt_backend *be, const float *x, size_t n)
{
    if (!x) return NULL;
    return be == G ? fup(x, n) : dup(x, n);
}

static void release(dlt_backend *be, float *p)
{
    if (be == G) G->free(G, p);
    else free(p);
}

/* LSTM: the saved state is private to each backend (cuDNN's reserve space
 * on CUDA), so each backend runs its own training forward and backward from
 * the same inputs and every output is compared: y, the final (h, c), and
 * the accumulated dx, dw_ih, dw_hh, db_ih, db_hh (dx NULL: weights only).
 * Then an inference-mode forward (train 0, no final state asked for) must
 * give the same y. */
static void test_lstm(int n, int len, int din, int h, int with_state, int dx_null, double tol)
{
    const int g4 = 4 * h;
    const size_t nx = (size_t)n * len * din, ny = (size_t)n * len * h, nh = (size_t)n * h;
    const size_t nwi = (size_t)g4 * din, nwh = (size_t)g4 * h;
    /* host inputs; outputs start random to see overwrite vs accumulate */
    float *hin[] = { rnd(nx, -1, 1), rnd(nwi, -0.5f, 0.5f), rnd(nwh, -0.5f, 0.5f),
                     rnd(g4, -0.5f, 0.5f), rnd(g4, -0.5f, 0.5f),
                     with_state ? rnd(nh, -1, 1) : NULL, with_state ? rnd(nh, -1, 1) : NULL,
                     rnd(ny, -1, 1), rnd(ny, 0, 1), rnd(nh, 0, 1), rnd(nh, 0, 1),
                     rnd(nx, -1, 1), rnd(nwi, -1, 1), rnd(nwh, -1, 1), rnd(g4, -1, 1),
                     rnd(g4, -1, 1) };
    const size_t len_of[] = { nx, nwi, nwh, g4, g4, nh, nh, ny, ny, nh, nh, nx, nwi, nwh, g4, g4 };
    enum { X, WI, WH, BI, BH, H0, C0, DY, Y, HL, CL, DX, DWI, DWH, DBI, DBH, NT };
    dlt_backend *bes[2] = { C, G };
    float *t[2][NT], *saved[2], *ws[2];
    for (int b = 0; b < 2; b++) {
        size_t sf = 0, wf = 0;
        MUST(bes[b]->lstm_sizes(bes[b], n, len, din, h, &sf, &wf));
        float *sh = rnd(sf, 0, 1), *wh = rnd(wf, 0, 1); /* garbage the ops must not rely on */
        saved[b] = on(bes[b], sh, sf);
        ws[b] = on(bes[b], wh, wf);
        free(sh), free(wh);
        for (int i = 0; i < NT; i++) t[b][i] = on(bes[b], hin[i], len_of[i]);
        MUST(bes[b]->lstm_fwd(bes[b], 1, n, len, din, h, t[b][X], t[b][WI], t[b][WH], t[b][BI],
                              t[b][BH], t[b][H0], t[b][C0], t[b][Y], t[b][HL], t[b][CL],
                              saved[b], ws[b]));
    }
    char what[128];
    const char *tag = with_state ? "h0/c0" : "zero state";
    snprintf(what, sizeof what, "lstm_fwd y (n %d len %d h %d, %s)", n, len, h, tag);
    check_dev(what, t[1][Y], t[0][Y], ny, tol);
    snprintf(what, sizeof what, "lstm_fwd h_last (n %d len %d h %d, %s)", n, len, h, tag);
    check_dev(what, t[1][HL], t[0][HL], nh, tol);
    snprintf(what, sizeof what, "lstm_fwd c_last (n %d len %d h %d, %s)", n, len, h, tag);
    check_dev(what, t[1][CL], t[0][CL], nh, tol);
    for (int b = 0; b < 2; b++)
        MUST(bes[b]->lstm_bwd(bes[b], n, len, din, h, t[b][X], t[b][WI], t[b][WH], t[b][H0],
                              t[b][C0], t[b][Y], saved[b], t[b][DY], dx_null ? NULL : t[b][DX],
                              t[b][DWI], t[b][DWH], t[b][DBI], t[b][DBH], ws[b]));
    const struct { const char *name; int i; } outs[] = {
        { "dx", DX }, { "dw_ih", DWI }, { "dw_hh", DWH }, { "db_ih", DBI }, { "db_hh", DBH },
    };
    for (size_t i = 0; i < sizeof outs / sizeof outs[0]; i++) {
        snprintf(what, sizeof what, "lstm_bwd %s (n %d len %d h %d, %s%s)", outs[i].name, n, len,
                 h, tag, dx_null ? ", dx NULL" : "");
        /* dx NULL: the CPU's dx is the untouched start value, so the check
         * also sees that CUDA left it alone */
        check_dev(what, t[1][outs[i].i], t[0][outs[i].i], len_of[outs[i].i], tol);
    }
    /* inference mode: same y without saving anything for backward */
    MUST(G->fill(G, t[1][Y], ny, 0.0f));
    MUST(G->lstm_fwd(G, 0, n, len, din, h, t[1][X], t[1][WI], t[1][WH], t[1][BI], t[1][BH],
                     t[1][H0], t[1][C0], t[1][Y], NULL, NULL, saved[1], ws[1]));
    snprintf(what, sizeof what, "lstm_fwd y, inference mode (n %d len %d h %d, %s)", n, len, h,
             tag);
    check_dev(what, t[1][Y], t[0][Y], ny, tol);
    for (int b = 0; b < 2; b++) {
        for (int i = 0; i < NT; i++) release(bes[b], t[b][i]);
        release(bes[b], saved[b]);
        release(bes[b], ws[b]);
    }
    for (int i = 0; i < NT; i++) free(hin[i]);
}

/* lstm_sizes: positive on CUDA and non-decreasing in n (the layer plans for
 * its largest batch and runs smaller ones in the same buffers). */
static void test_lstm_sizes(void)
{
    size_t s3 = 0, w3 = 0, s8 = 0, w8 = 0;
    MUST(G->lstm_sizes(G, 3, 35, 64, 128, &s3, &w3));
    MUST(G->lstm_sizes(G, 8, 35, 64, 128, &s8, &w8));
    char detail[128];
    snprintf(detail, sizeof detail, "n 3: saved %zu ws %zu; n 8: saved %zu ws %zu", s3, w3, s8, w8);
    check_true("lstm_sizes positive and non-decreasing in n",
               s3 > 0 && w3 > 0 && s3 <= s8 && w3 <= w8, detail);
    check_true("lstm_sizes rejects h 0", G->lstm_sizes(G, 3, 35, 64, 0, &s3, &w3) == DLT_ERR_SHAPE,
               dlt_last_error());
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
        test_lstm(3, 6, 16, 32, 1, 0, TOL_BF16); /* cuDNN's math type follows the precision */
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
    test_target_rows(5, 2);
    test_target_rows(4096, 7);          /* BERT-tiny's 64 x 64 tokens, ~15% targets */
    test_target_rows(32768 + 17, 3);    /* a partial last chunk */
    test_layernorm(37, 200);
    test_layernorm(1024, 768);
    test_xent_seq(4, 9, 1000);
    test_xent_seq(2, 5, 30522);
    test_attention(3, 13, 3, 8, 0.0f, TOL_TF32);
    test_attention(3, 13, 3, 8, 0.1f, TOL_TF32);
    test_attention(2, 128, 4, 64, 0.1f, TOL_TF32);
    test_lstm_sizes();
    test_lstm(3, 5, 6, 7, 0, 0, TOL_TF32);
    test_lstm(3, 5, 6, 7, 1, 0, TOL_TF32);
    test_lstm(3, 5, 6, 7, 1, 1, TOL_TF32);
    test_lstm(2, 5, 6, 7, 0, 1, TOL_TF32);   /* a smaller batch: another cuDNN shape */
    test_lstm(1, 1, 4, 8, 1, 0, TOL_TF32);   /* one step */
    test_lstm(8, 35, 64, 128, 1, 0, TOL_TF32);
    test_attention_lse(3, 13, 3, 8, 0.0f, 1);
    test_attention_lse(3, 13, 3, 8, 0.1f, 2);
    test_attention_lse(2, 40, 3, 5, 0.0f, 0);      /* odd dh, partial key tile */
    test_attention_lse(2, 128, 4, 64, 0.0f, 1);
    test_attention_lse(2, 128, 4, 64, 0.1f, 1);
    test_attention_lse(2, 512, 2, 64, 0.1f, 2);    /* BERT's longest sequences */
    test_attention_lse(2, 77, 2, 100, 0.2f, 1);    /* dh not a multiple of 32 */
    test_attention_lse(1, 33, 1, 128, 0.1f, 0);    /* dh 128: shared memory above 48 KiB */
    test_attention_lse(2, 49, 2, 96, 0.0f, 2);
    test_attention_lse_limits();
    test_precision();
}
