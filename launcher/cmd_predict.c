/* `dltrain predict CONFIG ckpt=PATH input=FILE [top=K] [key=value ...]`
 *
 * Class and probabilities of each input sample, one line each:
 *   "<i>: class <c> [(<name>)] p=<prob> [label <y>] probs <p0> <p1> ..."
 * (top=K lists only the K most likely classes as "<class>:<prob>").
 * Inputs, by file name:
 *   *.h5   an image shard (images uint8 [N, C, H, W], labels optional in the
 *          output): every sample;
 *   *.npy  NumPy array, uint8 or float32, C order, shape [N, C, H, W],
 *          [C, H, W], [N, H, W] or [H, W] (one channel). uint8 pixels are
 *          normalised like the training data (data.mean/std); float32
 *          values are taken as already normalised;
 *   *.pgm  binary 8-bit greyscale (P5), one image, [1, H, W].
 * Images (models with [C, H, W] input) only; the text path of the
 * language models branches off in predict_input() below. One process. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/data.h"
#include "launcher/commands.h"
#include "launcher/infer.h"

typedef struct {
    int64_t n;
    float *x;        /* (n, C, H, W) normalised */
    int32_t *y;      /* (n) labels or NULL */
    dlt_dataset_t ds;
} inputs;

static int ends_with(const char *s, const char *suf)
{
    size_t l = strlen(s), k = strlen(suf);
    return l >= k && !strcmp(s + l - k, suf);
}

static dlt_status alloc_inputs(inputs *in, int64_t n, size_t sample)
{
    in->n = n;
    in->x = malloc((size_t)n * sample * sizeof(float));
    if (!in->x) return DLT_ERR(DLT_ERR_NOMEM, "out of memory for %lld inputs", (long long)n);
    return DLT_OK;
}

/* uint8 pixels of n samples -> normalised floats, as the loader does. */
static void normalise(const dlt_infer *r, const uint8_t *px, int64_t n, float *x)
{
    size_t hw = (size_t)r->input[1] * (size_t)r->input[2];
    for (int64_t i = 0; i < n; i++)
        for (int c = 0; c < r->input[0]; c++)
            for (size_t j = 0; j < hw; j++) {
                size_t o = ((size_t)i * (size_t)r->input[0] + (size_t)c) * hw + j;
                x[o] = ((float)px[o] / 255.0f - r->mean[c % 4]) / r->std[c % 4];
            }
}

static dlt_status read_h5(const dlt_infer *r, const char *path, inputs *in)
{
    DLT_CHECK(dlt_dataset_open(path, &in->ds));
    int c, h, w;
    dlt_dataset_shape(in->ds, &c, &h, &w);
    if (c != r->input[0] || h != r->input[1] || w != r->input[2])
        return DLT_ERR(DLT_ERR_SHAPE, "%s: images are [%d, %d, %d] but the model takes [%d, %d, %d]", path, c, h,
                       w, r->input[0], r->input[1], r->input[2]);
    int64_t n = dlt_dataset_size(in->ds);
    size_t sample = (size_t)c * (size_t)h * (size_t)w;
    DLT_CHECK(alloc_inputs(in, n, sample));
    in->y = malloc((size_t)n * sizeof(int32_t));
    uint8_t *px = malloc((size_t)n * sample);
    int64_t *idx = malloc((size_t)n * sizeof *idx);
    dlt_status st = in->y && px && idx ? DLT_OK : DLT_ERR(DLT_ERR_NOMEM, "out of memory");
    for (int64_t i = 0; st == DLT_OK && i < n; i++) idx[i] = i;
    if (st == DLT_OK) st = dlt_dataset_read(in->ds, idx, (int)n, px, in->y);
    if (st == DLT_OK) normalise(r, px, n, in->x);
    free(px);
    free(idx);
    return st;
}

/* Parses the header of a .npy (versions 1-3): dtype, shape. */
static dlt_status read_npy(const dlt_infer *r, const char *path, inputs *in)
{
    FILE *f = fopen(path, "rb");
    if (!f) return DLT_ERR(DLT_ERR_IO, "%s: cannot open", path);
    unsigned char pre[10];
    dlt_status st = DLT_OK;
    char *hdr = NULL;
    uint8_t *raw = NULL;
    if (fread(pre, 1, 10, f) != 10 || memcmp(pre, "\x93NUMPY", 6)) {
        st = DLT_ERR(DLT_ERR_IO, "%s: not a .npy file", path);
        goto out;
    }
    size_t hl = pre[8] | (size_t)pre[9] << 8;
    if (pre[6] >= 2) { /* 4-byte header length */
        unsigned char more[2];
        if (fread(more, 1, 2, f) != 2) {
            st = DLT_ERR(DLT_ERR_IO, "%s: truncated header", path);
            goto out;
        }
        hl |= (size_t)more[0] << 16 | (size_t)more[1] << 24;
    }
    hdr = calloc(hl + 1, 1);
    if (!hdr || hl > (1u << 20) || fread(hdr, 1, hl, f) != hl) {
        st = DLT_ERR(DLT_ERR_IO, "%s: truncated header", path);
        goto out;
    }
    int u8 = strstr(hdr, "'|u1'") != NULL, f32 = strstr(hdr, "'<f4'") != NULL;
    const char *sp = strstr(hdr, "'shape'");
    const char *lp = sp ? strchr(sp, '(') : NULL;
    if ((!u8 && !f32) || strstr(hdr, "'fortran_order': True") || !lp) {
        st = DLT_ERR(DLT_ERR_IO, "%s: need dtype uint8 or float32 (little-endian), C order; header %s", path, hdr);
        goto out;
    }
    long long d[8];
    int nd = 0;
    for (const char *p = lp + 1; nd < 8;) {
        char *e;
        long long v = strtoll(p, &e, 10);
        if (e == p) break;
        d[nd++] = v;
        p = e;
        while (*p == ',' || *p == ' ' || *p == 'L') p++;
    }
    int C = r->input[0], H = r->input[1], W = r->input[2];
    long long n = -1;
    if (nd == 4 && d[1] == C && d[2] == H && d[3] == W) n = d[0];
    if (nd == 3 && d[0] == C && d[1] == H && d[2] == W) n = 1;
    if (nd == 3 && C == 1 && d[1] == H && d[2] == W && n < 0) n = d[0];
    if (nd == 2 && C == 1 && d[0] == H && d[1] == W) n = 1;
    if (n < 0) {
        st = DLT_ERR(DLT_ERR_SHAPE, "%s: array shape %s does not fit the model's input [%d, %d, %d]", path, lp, C,
                     H, W);
        goto out;
    }
    size_t sample = (size_t)C * (size_t)H * (size_t)W, count = (size_t)n * sample;
    DLT_CHECK_GOTO(alloc_inputs(in, n, sample), st, out);
    if (f32) {
        if (fread(in->x, sizeof(float), count, f) != count) st = DLT_ERR(DLT_ERR_IO, "%s: truncated data", path);
    } else {
        raw = malloc(count);
        if (!raw || fread(raw, 1, count, f) != count)
            st = DLT_ERR(DLT_ERR_IO, "%s: truncated data", path);
        else
            normalise(r, raw, n, in->x);
    }
out:
    free(raw);
    free(hdr);
    fclose(f);
    return st;
}

static dlt_status read_pgm(const dlt_infer *r, const char *path, inputs *in)
{
    FILE *f = fopen(path, "rb");
    if (!f) return DLT_ERR(DLT_ERR_IO, "%s: cannot open", path);
    int w, h, maxv;
    dlt_status st = DLT_OK;
    uint8_t *px = NULL;
    if (fscanf(f, "P5 %d %d %d", &w, &h, &maxv) != 3 || maxv != 255 || fgetc(f) == EOF) {
        st = DLT_ERR(DLT_ERR_IO, "%s: not a binary 8-bit PGM (P5, maxval 255)", path);
    } else if (r->input[0] != 1 || h != r->input[1] || w != r->input[2]) {
        st = DLT_ERR(DLT_ERR_SHAPE, "%s: a %dx%d greyscale image does not fit the model's input [%d, %d, %d]", path,
                     h, w, r->input[0], r->input[1], r->input[2]);
    } else if ((st = alloc_inputs(in, 1, (size_t)h * (size_t)w)) == DLT_OK) {
        px = malloc((size_t)h * (size_t)w);
        if (!px || fread(px, 1, (size_t)h * (size_t)w, f) != (size_t)h * (size_t)w)
            st = DLT_ERR(DLT_ERR_IO, "%s: truncated pixels", path);
        else
            normalise(r, px, 1, in->x);
    }
    free(px);
    fclose(f);
    return st;
}

/* The branch point by input kind; text inputs of language models go here too. */
static dlt_status predict_input(const dlt_infer *r, const char *path, inputs *in)
{
    if (!path) return DLT_ERR(DLT_ERR_INVALID, "missing input=FILE (.h5 shard, .npy or .pgm)");
    if (ends_with(path, ".h5") || ends_with(path, ".hdf5")) return read_h5(r, path, in);
    if (ends_with(path, ".npy")) return read_npy(r, path, in);
    if (ends_with(path, ".pgm")) return read_pgm(r, path, in);
    return DLT_ERR(DLT_ERR_INVALID, "input=%s: unknown kind (use an .h5 shard, a .npy array or a .pgm image)", path);
}

static void print_row(const dlt_infer *r, const inputs *in, int64_t i, const float *p, int top)
{
    int k = r->classes, best = 0;
    for (int j = 1; j < k; j++)
        if (p[j] > p[best]) best = j;
    const char *name = in->ds ? dlt_dataset_class_name(in->ds, best) : NULL;
    printf("%lld: class %d", (long long)i, best);
    if (name) printf(" (%s)", name);
    printf(" p=%.4f", p[best]);
    if (in->y) printf(" label %d", in->y[i]);
    printf(" probs");
    if (top <= 0 || top >= k) {
        for (int j = 0; j < k; j++) printf(" %.4f", p[j]);
    } else {
        char used[1024] = { 0 };
        for (int t = 0; t < top; t++) {
            int b = -1;
            for (int j = 0; j < k && j < 1024; j++)
                if (!used[j] && (b < 0 || p[j] > p[b])) b = j;
            used[b] = 1;
            printf(" %d:%.4f", b, p[b]);
        }
    }
    printf("\n");
}

int dlt_cmd_predict(int argc, char **argv)
{
    dlt_comm_t comm;
    if (dlt_comm_init(&argc, &argv, &comm) != DLT_OK) {
        fprintf(stderr, "dltrain: error: %s\n", dlt_last_error());
        return 1;
    }
    static const char *const names[] = { "ckpt", "input", "top" };
    const char *v[3];
    argc = dlt_infer_options(argc, argv, names, v, 3);
    static dlt_infer r;
    memset(&r, 0, sizeof r);
    inputs in;
    memset(&in, 0, sizeof in);
    dlt_status st = argc < 1 ? DLT_ERR(DLT_ERR_INVALID, "usage: dltrain predict CONFIG ckpt=PATH input=FILE [top=K]")
                             : dlt_infer_open(&r, comm, argv[0], argv + 1, argc - 1, v[0], 64);
    if (st == DLT_OK) st = predict_input(&r, v[1], &in);
    float *p = st == DLT_OK ? malloc((size_t)r.classes * sizeof *p) : NULL;
    if (st == DLT_OK && !p) st = DLT_ERR(DLT_ERR_NOMEM, "out of memory");
    size_t sample = (size_t)r.input[0] * (size_t)r.input[1] * (size_t)r.input[2];
    for (int64_t i0 = 0; st == DLT_OK && i0 < in.n; i0 += r.max_batch) {
        int n = (int)(in.n - i0 < r.max_batch ? in.n - i0 : r.max_batch);
        st = dlt_infer_run(&r, in.x + (size_t)i0 * sample, NULL, n, NULL, NULL);
        for (int i = 0; st == DLT_OK && i < n; i++) {
            dlt_infer_softmax(&r, i, p);
            if (r.rank == 0) print_row(&r, &in, i0 + i, p, v[2] ? atoi(v[2]) : 0);
        }
    }
    fflush(stdout);
    if (st != DLT_OK && r.rank == 0) fprintf(stderr, "dltrain: error: %s\n", dlt_last_error());
    free(p);
    free(in.x);
    free(in.y);
    if (in.ds) dlt_dataset_close(in.ds);
    dlt_infer_close(&r);
    dlt_comm_free(comm);
    return st == DLT_OK ? 0 : 1;
}
