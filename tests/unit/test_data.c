/* data/: the shard reader, the sampler and the loader.
 *
 * Shards come from tests/torch/gen_data.py (h5py, as a user would write
 * them). Pixel values follow a formula, recomputed here, so a read-back is
 * checked against something HDF5 did not produce; normalisation is checked
 * against torch. The loader's central promise, that the ranks' rows of a
 * global batch concatenate to the one-rank batch and that an epoch covers
 * every sample exactly once, is checked for 1..4 ranks over unequal shards. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/data.h"
#include "tests/unit/testutil.h"

/* Same formula as gen_data.py. */
static int pixel(int64_t g, int c, int y, int x)
{
    return (int)((g * 131 + c * 31 + y * 17 + x * 7) % 251);
}

static int label(int64_t g) { return (int)((g * 7 + 3) % 10); }

static const char *ref(const char *name)
{
    static char buf[4096];
    return tu_ref_path(name, buf, sizeof buf);
}

static dlt_dataset_t open_ok(const char *name)
{
    dlt_dataset_t ds = NULL;
    dlt_status st = dlt_dataset_open(ref(name), &ds);
    ck_assert_msg(st == DLT_OK, "open %s: %s", name, dlt_last_error());
    return ds;
}

/* ---- reader ---- */

START_TEST(test_read_back)
{
    dlt_dataset_t ds = open_ok("data/good/train-*.h5");
    int c, h, w;
    dlt_dataset_shape(ds, &c, &h, &w);
    ck_assert_int_eq(dlt_dataset_size(ds), 100);
    ck_assert_int_eq(c, 1);
    ck_assert_int_eq(h, 6);
    ck_assert_int_eq(w, 5);
    ck_assert_int_eq(dlt_dataset_classes(ds), 10);
    ck_assert_str_eq(dlt_dataset_class_name(ds, 0), "T-shirt/top");
    ck_assert_str_eq(dlt_dataset_class_name(ds, 9), "Ankle boot");
    ck_assert_ptr_null(dlt_dataset_class_name(ds, 10));
    ck_assert_ptr_nonnull(strstr(dlt_dataset_path(ds), "good/train-00000.h5"));

    /* Read in reverse order so shard boundaries are crossed both ways. */
    int64_t idx[100];
    uint8_t x[100 * 30];
    int32_t y[100];
    for (int i = 0; i < 100; i++) idx[i] = 99 - i;
    ck_assert_int_eq(dlt_dataset_read(ds, idx, 100, x, y), DLT_OK);
    for (int i = 0; i < 100; i++) {
        int64_t g = idx[i];
        ck_assert_int_eq(y[i], label(g));
        for (int yy = 0; yy < 6; yy++)
            for (int xx = 0; xx < 5; xx++)
                ck_assert_int_eq(x[i * 30 + yy * 5 + xx], pixel(g, 0, yy, xx));
    }
    int64_t bad = 100;
    ck_assert_int_eq(dlt_dataset_read(ds, &bad, 1, x, y), DLT_ERR_INVALID);
    bad = -1;
    ck_assert_int_eq(dlt_dataset_read(ds, &bad, 1, x, y), DLT_ERR_INVALID);
    dlt_dataset_close(ds);
}
END_TEST

START_TEST(test_fixed_names_rgb)
{
    dlt_dataset_t ds = open_ok("data/rgb/train-*.h5");
    int c, h, w;
    dlt_dataset_shape(ds, &c, &h, &w);
    ck_assert_int_eq(c * 100 + h * 10 + w, 344);
    ck_assert_int_eq(dlt_dataset_classes(ds), 3);
    ck_assert_str_eq(dlt_dataset_class_name(ds, 0), "cat");
    ck_assert_str_eq(dlt_dataset_class_name(ds, 2), "bird");
    int64_t idx[1] = { 13 };
    uint8_t x[48];
    int32_t y[1];
    ck_assert_int_eq(dlt_dataset_read(ds, idx, 1, x, y), DLT_OK);
    ck_assert_int_eq(y[0], 13 % 3);
    for (int cc = 0; cc < 3; cc++)
        for (int k = 0; k < 16; k++) ck_assert_int_eq(x[cc * 16 + k], pixel(13, cc, k / 4, k % 4));
    dlt_dataset_close(ds);
}
END_TEST

START_TEST(test_no_names)
{
    dlt_dataset_t ds = open_ok("data/nonames/train-00000.h5");
    ck_assert_int_eq(dlt_dataset_size(ds), 6);
    ck_assert_int_eq(dlt_dataset_classes(ds), 5);  /* 1 + largest label */
    ck_assert_ptr_null(dlt_dataset_class_name(ds, 0));
    dlt_dataset_close(ds);
}
END_TEST

/* Each malformed input: the status, and a message naming the file and the problem. */
static const struct {
    const char *pattern, *names, *says;
    dlt_status st;
} bad_cases[] = {
    { "data/bad/images_rank3.h5", "images_rank3.h5",
      "dataset 'images' has shape [10, 28, 28], expected [N, C, H, W]", DLT_ERR_IO },
    { "data/bad/labels_len.h5", "labels_len.h5", "'labels' has 9 entries but 'images' has 10",
      DLT_ERR_IO },
    { "data/bad/float_images.h5", "float_images.h5", "has type float32, expected uint8", DLT_ERR_IO },
    { "data/bad/no_labels.h5", "no_labels.h5", "no dataset 'labels'", DLT_ERR_IO },
    { "data/bad/no_images.h5", "no_images.h5", "no dataset 'images'", DLT_ERR_IO },
    { "data/bad/labels_rank2.h5", "labels_rank2.h5", "'labels' has shape [10, 1], expected [N]",
      DLT_ERR_IO },
    { "data/bad/labels_float.h5", "labels_float.h5", "expected an integer type", DLT_ERR_IO },
    { "data/bad/negative_label.h5", "negative_label.h5", "label -1 at index 7 is negative",
      DLT_ERR_IO },
    { "data/bad/version2.h5", "version2.h5", "version 2 is not supported", DLT_ERR_IO },
    { "data/bad/wrong_format.h5", "wrong_format.h5", "format is 'dltrain-tokens'", DLT_ERR_IO },
    { "data/bad/label_over_names.h5", "label_over_names.h5", "class_names has 2 entries",
      DLT_ERR_IO },
    { "data/bad/not_hdf5.h5", "not_hdf5.h5", "not an HDF5 file", DLT_ERR_IO },
    { "data/bad/missing.h5", "missing.h5", "no files match", DLT_ERR_IO },
    { "data/mismatch/*.h5", "mismatch/b.h5", "samples are [1, 4, 5] but in", DLT_ERR_IO },
    { "data/names_differ/*.h5", "names_differ/b.h5", "'class_names' differs", DLT_ERR_IO },
    { "data/bad/truncated.h5", "truncated.h5", "corrupt or truncated", DLT_ERR_IO },
    { "data/bad/nothing-*.h5", "nothing-*.h5", "no files match", DLT_ERR_IO },
};

START_TEST(test_malformed)
{
    dlt_dataset_t ds = (dlt_dataset_t)&ds; /* must be reset to NULL */
    dlt_clear_error();
    dlt_status st = dlt_dataset_open(ref(bad_cases[_i].pattern), &ds);
    const char *msg = dlt_last_error();
    ck_assert_msg(st == bad_cases[_i].st, "%s: status %d (%s)", bad_cases[_i].pattern, st, msg);
    ck_assert_ptr_null(ds);
    ck_assert_msg(strstr(msg, bad_cases[_i].names), "message does not name the file: %s", msg);
    ck_assert_msg(strstr(msg, bad_cases[_i].says), "message does not say '%s': %s",
                  bad_cases[_i].says, msg);
    ck_assert_msg(!strchr(msg, '\n'), "message is not one line: %s", msg);
}
END_TEST

/* Every h5py layout (chunks along N of 1 and 7, chunks splitting H and W,
 * gzip with shuffle, one whole-set chunk, h5py's automatic chunks,
 * contiguous) reads back bit-exact, in random order, through a cache of
 * two blocks and one open file. */
START_TEST(test_chunkings)
{
    static const char *const names[] = { "contiguous", "n1", "n7_split_hw", "gzip9_shuffle",
                                          "gzip_whole", "auto" };
    for (int f = 0; f < 6; f++) {
        char pat[64];
        snprintf(pat, sizeof pat, "data/chunked/%s.h5", names[f]);
        dlt_dataset_t ds = open_ok(pat);
        ck_assert_int_eq(dlt_dataset_size(ds), 30);
        ck_assert_int_eq(dlt_dataset_set_limits(ds, 1, 1), DLT_OK);
        int64_t idx[30];
        dlt_sampler_permutation(3, f, 30, idx);
        uint8_t x[30 * 60];
        int32_t y[30];
        ck_assert_int_eq(dlt_dataset_read(ds, idx, 30, x, y), DLT_OK);
        for (int i = 0; i < 30; i++) {
            ck_assert_int_eq(y[i], label(idx[i]));
            for (int k = 0; k < 60; k++)
                ck_assert_msg(x[i * 60 + k] == pixel(idx[i], k / 30, k % 30 / 5, k % 5),
                              "%s: sample %lld element %d", names[f], (long long)idx[i], k);
        }
        ck_assert_int_le(dlt_dataset_open_files(ds), 1);
        dlt_dataset_close(ds);
    }
}
END_TEST

/* The file handle bound holds across shards, and the data stay right. */
START_TEST(test_open_files_bounded)
{
    dlt_dataset_t ds = open_ok("data/good/train-*.h5");
    ck_assert_int_eq(dlt_dataset_set_limits(ds, 1, 1), DLT_OK);
    for (int64_t k = 99; k >= 0; k -= 3) {
        uint8_t x[30];
        int32_t y;
        ck_assert_int_eq(dlt_dataset_read(ds, &k, 1, x, &y), DLT_OK);
        ck_assert_int_eq(x[7], pixel(k, 0, 1, 2));
        ck_assert_int_le(dlt_dataset_open_files(ds), 1);
    }
    ck_assert_int_eq(dlt_dataset_set_limits(ds, 2, 0), DLT_OK);
    int64_t all[100];
    uint8_t x[100 * 30];
    for (int i = 0; i < 100; i++) all[i] = i;
    ck_assert_int_eq(dlt_dataset_read(ds, all, 100, x, NULL), DLT_OK);
    ck_assert_int_eq(dlt_dataset_open_files(ds), 2);
    dlt_dataset_close(ds);
}
END_TEST

/* A damaged gzip chunk is found when read: the error names the file, the
 * dataset and the samples, in one line. */
START_TEST(test_corrupt_chunk)
{
    dlt_dataset_t ds = open_ok("data/bad/corrupt_gzip.h5");
    int64_t k = 85;
    uint8_t x[256];
    dlt_clear_error();
    ck_assert_int_eq(dlt_dataset_read(ds, &k, 1, x, NULL), DLT_ERR_IO);
    const char *msg = dlt_last_error();
    ck_assert_msg(strstr(msg, "corrupt_gzip.h5") && strstr(msg, "'images'") &&
                      strstr(msg, "[80, 96)") && !strchr(msg, '\n'),
                  "%s", msg);
    k = 3; /* other chunks are fine */
    ck_assert_int_eq(dlt_dataset_read(ds, &k, 1, x, NULL), DLT_OK);
    dlt_dataset_close(ds);
}
END_TEST

/* ---- sampler ---- */

static int is_perm(const int64_t *p, int64_t n)
{
    char *seen = calloc((size_t)n + 1, 1);
    int ok = 1;
    for (int64_t i = 0; i < n && ok; i++) {
        ok = p[i] >= 0 && p[i] < n && !seen[p[i]];
        if (ok) seen[p[i]] = 1;
    }
    free(seen);
    return ok;
}

START_TEST(test_sampler)
{
    enum { N = 1000 };
    int64_t a[N], b[N], c[N], d[N];
    dlt_sampler_permutation(7, 3, N, a);
    dlt_sampler_permutation(7, 3, N, b);
    dlt_sampler_permutation(7, 4, N, c);
    dlt_sampler_permutation(8, 3, N, d);
    ck_assert(is_perm(a, N));
    ck_assert(is_perm(c, N));
    ck_assert(memcmp(a, b, sizeof a) == 0);
    ck_assert(memcmp(a, c, sizeof a) != 0);
    ck_assert(memcmp(a, d, sizeof a) != 0);
    int fixed = 0;
    for (int i = 0; i < N; i++) fixed += a[i] == i;
    ck_assert_int_lt(fixed, 10); /* a shuffle, not nearly the identity */
    int64_t one = -5;
    dlt_sampler_permutation(1, 0, 1, &one);
    ck_assert_int_eq(one, 0);
    dlt_sampler_permutation(1, 0, 0, NULL);
}
END_TEST

/* Where element 0 lands, over many epochs, is uniform: Fisher-Yates, not a biased shuffle. */
START_TEST(test_sampler_uniform)
{
    enum { N = 5, E = 20000 };
    int count[N][N] = { { 0 } };
    int64_t p[N];
    for (int e = 0; e < E; e++) {
        dlt_sampler_permutation(11, e, N, p);
        for (int i = 0; i < N; i++) count[i][p[i]]++;
    }
    for (int i = 0; i < N; i++)
        for (int k = 0; k < N; k++)  /* expected 4000, sd ~ 57 */
            ck_assert_msg(abs(count[i][k] - E / N) < 300, "position %d holds %d %d times", i, k,
                          count[i][k]);
}
END_TEST

START_TEST(test_block_permutation)
{
    enum { N = 1003, B = 64 };
    int64_t a[N], b[N], c[N];
    dlt_sampler_block_permutation(7, 3, N, B, a);
    dlt_sampler_block_permutation(7, 3, N, B, b);
    dlt_sampler_block_permutation(7, 4, N, B, c);
    ck_assert(is_perm(a, N));
    ck_assert(is_perm(c, N));
    ck_assert(memcmp(a, b, sizeof a) == 0);
    ck_assert(memcmp(a, c, sizeof a) != 0);
    /* each block's positions are consecutive: the block id changes 15 times */
    int changes = 0, fixed = 0, first_block = (int)(a[0] / B);
    for (int i = 1; i < N; i++) changes += a[i] / B != a[i - 1] / B;
    for (int i = 0; i < N; i++) fixed += a[i] == i;
    ck_assert_int_eq(changes, (N + B - 1) / B - 1);
    ck_assert_int_lt(fixed, 30);                 /* shuffled inside blocks too */
    ck_assert(first_block != 0 || c[0] / B != 0); /* and the block order */
    int64_t p[5];
    dlt_sampler_block_permutation(1, 0, 5, 1, p); /* block 1: the full shuffle */
    int64_t q[5];
    dlt_sampler_permutation(1, 0, 5, q);
    ck_assert(memcmp(p, q, sizeof p) == 0);
}
END_TEST

/* ---- loader ---- */

typedef struct {
    int64_t steps;
    int *global_n;      /* (steps) */
    float *x;           /* (steps, b, 30) */
    int32_t *y;         /* (steps, b) */
} epoch_ref;

static dlt_loader_cfg cfg_of(int b, int rank, int world, int drop_last)
{
    dlt_loader_cfg cfg = { .global_batch = b, .rank = rank, .world = world, .seed = 42,
                           .shuffle = 1, .drop_last = drop_last };
    return cfg;
}

/* Runs epoch `epoch` on 1 rank and keeps every batch. */
static epoch_ref one_rank_epoch(dlt_dataset_t ds, int b, int drop_last, int64_t epoch)
{
    dlt_loader_cfg cfg = cfg_of(b, 0, 1, drop_last);
    dlt_loader_t l;
    ck_assert_int_eq(dlt_loader_init(ds, &cfg, &l), DLT_OK);
    ck_assert_int_eq(dlt_loader_max_local(l), b);
    epoch_ref r = { dlt_loader_steps(l), NULL, NULL, NULL };
    r.global_n = calloc((size_t)r.steps, sizeof *r.global_n);
    r.x = calloc((size_t)(r.steps * b * 30), sizeof *r.x);
    r.y = calloc((size_t)(r.steps * b), sizeof *r.y);
    ck_assert_int_eq(dlt_loader_start_epoch(l, epoch), DLT_OK);
    for (int64_t s = 0; s < r.steps; s++) {
        int n, gn;
        int64_t s0;
        ck_assert_int_eq(dlt_loader_next(l, r.x + s * b * 30, r.y + s * b, &n, &s0, &gn), DLT_OK);
        ck_assert_int_eq(n, gn);
        ck_assert_int_eq(s0, s * b);
        r.global_n[s] = gn;
    }
    dlt_loader_free(l);
    return r;
}

static void free_ref(epoch_ref *r)
{
    free(r->global_n);
    free(r->x);
    free(r->y);
}

/* Sample index from its first pixel: pixel(g,0,0,0) = 131 g mod 251. */
static int64_t sample_of(const float *x)
{
    int p = (int)(x[0] * 255.0f + 0.5f);
    for (int64_t g = 0; g < 251; g++)
        if (pixel(g, 0, 0, 0) == p) return g;
    return -1;
}

START_TEST(test_loader_ranks)
{
    static const int batches[] = { 8, 7, 5 };
    dlt_dataset_t ds = open_ok("data/good/train-*.h5");
    for (int bi = 0; bi < 3; bi++)
        for (int drop_last = 0; drop_last < 2; drop_last++)
            for (int64_t epoch = 0; epoch < 2; epoch++) {
                int b = batches[bi];
                epoch_ref ref1 = one_rank_epoch(ds, b, drop_last, epoch);
                ck_assert_int_eq(ref1.steps, drop_last ? 100 / b : (100 + b - 1) / b);
                for (int world = 1; world <= 4; world++) {
                    int seen[100] = { 0 };
                    for (int r = 0; r < world; r++) {
                        dlt_loader_cfg cfg = cfg_of(b, r, world, drop_last);
                        dlt_loader_t l;
                        ck_assert_int_eq(dlt_loader_init(ds, &cfg, &l), DLT_OK);
                        ck_assert_int_eq(dlt_loader_steps(l), ref1.steps);
                        int ml = dlt_loader_max_local(l), got_ml = 0;
                        float *x = malloc((size_t)ml * 30 * sizeof *x);
                        int32_t *y = malloc((size_t)ml * sizeof *y);
                        ck_assert_int_eq(dlt_loader_start_epoch(l, epoch), DLT_OK);
                        for (int64_t s = 0;; s++) {
                            int n, gn;
                            int64_t s0;
                            ck_assert_int_eq(dlt_loader_next(l, x, y, &n, &s0, &gn), DLT_OK);
                            if (gn == 0) {
                                ck_assert_int_eq(s, ref1.steps);
                                ck_assert_int_eq(n, 0);
                                break;
                            }
                            ck_assert_int_eq(gn, ref1.global_n[s]);
                            ck_assert_int_le(n, ml);
                            if (n == ml) got_ml = 1;
                            /* This rank's rows are rows [r*gn/W, (r+1)*gn/W) of the 1-rank batch. */
                            int64_t lo = (int64_t)r * gn / world;
                            ck_assert_int_eq(n, (int64_t)(r + 1) * gn / world - lo);
                            ck_assert_int_eq(s0, s * b + lo);
                            const float *want = ref1.x + (s * b + lo) * 30;
                            ck_assert(memcmp(x, want, (size_t)n * 30 * sizeof *x) == 0);
                            ck_assert(memcmp(y, ref1.y + s * b + lo, (size_t)n * sizeof *y) == 0);
                            for (int i = 0; i < n; i++) {
                                int64_t g = sample_of(x + i * 30);
                                ck_assert(g >= 0 && g < 100);
                                ck_assert_int_eq(y[i], label(g));
                                seen[g]++;
                            }
                        }
                        ck_assert_msg(got_ml, "max_local %d never reached", ml);
                        free(x);
                        free(y);
                        dlt_loader_free(l);
                    }
                    int total = 0;
                    for (int g = 0; g < 100; g++) {
                        ck_assert_int_le(seen[g], 1);
                        total += seen[g];
                    }
                    ck_assert_int_eq(total, drop_last ? (int)ref1.steps * b : 100);
                }
                free_ref(&ref1);
            }
    dlt_dataset_close(ds);
}
END_TEST

START_TEST(test_loader_epochs_differ)
{
    dlt_dataset_t ds = open_ok("data/good/train-*.h5");
    epoch_ref e0 = one_rank_epoch(ds, 10, 0, 0), e1 = one_rank_epoch(ds, 10, 0, 1);
    epoch_ref e0b = one_rank_epoch(ds, 10, 0, 0);
    ck_assert(memcmp(e0.y, e1.y, 100 * sizeof *e0.y) != 0 ||
              memcmp(e0.x, e1.x, 1000 * sizeof *e0.x) != 0);
    ck_assert(memcmp(e0.x, e0b.x, 3000 * sizeof *e0.x) == 0);
    free_ref(&e0);
    free_ref(&e1);
    free_ref(&e0b);
    dlt_dataset_close(ds);
}
END_TEST

START_TEST(test_drop_last_count)
{
    dlt_dataset_t ds = open_ok("data/good/train-*.h5");
    for (int drop_last = 0; drop_last < 2; drop_last++) {
        dlt_loader_cfg cfg = cfg_of(8, 1, 2, drop_last);
        dlt_loader_t l;
        ck_assert_int_eq(dlt_loader_init(ds, &cfg, &l), DLT_OK);
        ck_assert_int_eq(dlt_loader_steps(l), drop_last ? 12 : 13);
        float x[4 * 30];
        int32_t y[4];
        int n, gn, last_gn = -1, count = 0;
        int64_t s0;
        ck_assert_int_eq(dlt_loader_next(l, x, y, &n, &s0, &gn), DLT_ERR_INVALID); /* no epoch yet */
        ck_assert_int_eq(dlt_loader_start_epoch(l, 0), DLT_OK);
        while (dlt_loader_next(l, x, y, &n, &s0, &gn) == DLT_OK && gn > 0) {
            last_gn = gn;
            count++;
        }
        ck_assert_int_eq(count, drop_last ? 12 : 13);
        ck_assert_int_eq(last_gn, drop_last ? 8 : 4);
        /* Still at the end until the next epoch starts. */
        ck_assert_int_eq(dlt_loader_next(l, x, y, &n, &s0, &gn), DLT_OK);
        ck_assert_int_eq(gn, 0);
        dlt_loader_free(l);
    }
    dlt_dataset_close(ds);
}
END_TEST

START_TEST(test_normalisation)
{
    static const float mean[3] = { 0.5f, 0.4f, 0.3f }, std[3] = { 0.25f, 0.2f, 0.3f };
    dlt_dataset_t ds = open_ok("data/rgb/train-*.h5");
    dlt_loader_cfg cfg = { .global_batch = 20, .world = 1, .shuffle = 0, .channels = 3,
                           .mean = mean, .std = std };
    dlt_loader_t l;
    ck_assert_int_eq(dlt_loader_init(ds, &cfg, &l), DLT_OK);
    float x[20 * 48];
    int32_t y[20];
    int n, gn;
    int64_t s0;
    ck_assert_int_eq(dlt_loader_start_epoch(l, 0), DLT_OK);
    ck_assert_int_eq(dlt_loader_next(l, x, y, &n, &s0, &gn), DLT_OK);
    ck_assert_int_eq(n, 20);
    size_t count;
    float *want = tu_read_f32(ref("data/rgb_ref.h5"), "x_norm", &count, NULL, NULL);
    ck_assert_int_eq(count, 20 * 48);
    ck_assert_msg(tu_max_rel_err(x, want, count) < 1e-6, "err %g", tu_max_rel_err(x, want, count));
    /* And against the formula in double, independent of torch. */
    for (int i = 0; i < 20; i++)
        for (int c = 0; c < 3; c++) {
            double v = (pixel(i, c, 1, 2) / 255.0 - mean[c]) / std[c];
            ck_assert_double_eq_tol(x[i * 48 + c * 16 + 1 * 4 + 2], v, 1e-5);
        }
    free(want);
    dlt_loader_free(l);

    /* Bad normalisation and batch settings are refused with a reason. */
    static const float zero[3] = { 1, 0, 1 };
    dlt_loader_cfg bad = cfg;
    bad.channels = 1;
    ck_assert_int_eq(dlt_loader_init(ds, &bad, &l), DLT_ERR_INVALID);
    ck_assert_ptr_nonnull(strstr(dlt_last_error(), "channel"));
    bad = cfg;
    bad.std = zero;
    ck_assert_int_eq(dlt_loader_init(ds, &bad, &l), DLT_ERR_INVALID);
    bad = cfg;
    bad.world = 4;
    bad.rank = 4;
    ck_assert_int_eq(dlt_loader_init(ds, &bad, &l), DLT_ERR_INVALID);
    bad = cfg;
    bad.global_batch = 21;
    bad.drop_last = 1;
    ck_assert_int_eq(dlt_loader_init(ds, &bad, &l), DLT_ERR_INVALID);
    ck_assert_ptr_null(l);
    dlt_dataset_close(ds);
}
END_TEST

/* One rank's epoch: the sample index of every row, in order; returns rows. */
static int run_epoch(dlt_dataset_t ds, const dlt_loader_cfg *cfg, int64_t epoch, int64_t *rows,
                     int64_t *steps)
{
    dlt_loader_t l;
    ck_assert_int_eq(dlt_loader_init(ds, cfg, &l), DLT_OK);
    int ml = dlt_loader_max_local(l), total = 0;
    float *x = malloc((size_t)ml * 30 * sizeof *x);
    int32_t *y = malloc((size_t)ml * sizeof *y);
    ck_assert_int_eq(dlt_loader_start_epoch(l, epoch), DLT_OK);
    *steps = dlt_loader_steps(l);
    for (;;) {
        int n, gn;
        int64_t s0;
        ck_assert_int_eq(dlt_loader_next(l, x, y, &n, &s0, &gn), DLT_OK);
        if (gn == 0) break;
        for (int i = 0; i < n; i++) {
            rows[total] = sample_of(x + i * 30);
            ck_assert_int_eq(y[i], label(rows[total]));
            total++;
        }
    }
    free(x);
    free(y);
    dlt_loader_free(l);
    return total;
}

/* Sampler modes (locality blocks; drop, pad, partial last batch) with and
 * without prefetch threads, 1..4 ranks over unequal shards: the ranks'
 * rows, concatenated per step, are the one-rank epoch, and every sample is
 * used exactly once (partial), at most once (drop) or at least once (pad). */
START_TEST(test_loader_modes)
{
    dlt_dataset_t ds = open_ok("data/good/train-*.h5");
    enum { B = 8 };
    for (int blk = 0; blk <= 16; blk += 16)
        for (int last = 0; last < 3; last++) /* 0 partial, 1 drop, 2 pad */
            for (int pf = 0; pf <= 2; pf += 2) {
                dlt_loader_cfg cfg = cfg_of(B, 0, 1, last == 1);
                cfg.pad_last = last == 2;
                cfg.shuffle_block = blk;
                cfg.prefetch = pf;
                cfg.threads = pf;
                int64_t ref[112], steps;
                int nref = run_epoch(ds, &cfg, 1, ref, &steps);
                ck_assert_int_eq(nref, last == 0 ? 100 : last == 1 ? 96 : 104);
                for (int world = 1; world <= 4; world++) {
                    int64_t got[4][112];
                    int ngot[4], seen[100] = { 0 };
                    for (int r = 0; r < world; r++) {
                        cfg.rank = r;
                        cfg.world = world;
                        int64_t st;
                        ngot[r] = run_epoch(ds, &cfg, 1, got[r], &st);
                        ck_assert_int_eq(st, steps);
                    }
                    /* reassemble step by step: rank r holds rows [r*g/W, (r+1)*g/W) */
                    int pos[4] = { 0 }, k = 0;
                    for (int64_t s = 0; s < steps; s++) {
                        int g = last == 0 && s == steps - 1 ? 100 - (int)s * B : B;
                        for (int r = 0; r < world; r++) {
                            int cnt = (r + 1) * g / world - r * g / world;
                            for (int i = 0; i < cnt; i++) {
                                int64_t v = got[r][pos[r]++];
                                ck_assert_int_eq(v, ref[k++]);
                                seen[v]++;
                            }
                        }
                    }
                    for (int r = 0; r < world; r++) ck_assert_int_eq(pos[r], ngot[r]);
                    ck_assert_int_eq(k, nref);
                    for (int g = 0; g < 100; g++) {
                        if (last == 0) ck_assert_int_eq(seen[g], 1);
                        if (last == 1) ck_assert_int_le(seen[g], 1);
                        if (last == 2) ck_assert(seen[g] == 1 || seen[g] == 2);
                    }
                }
            }
    /* locality: with blocks of 16, a rank's 4 rows of a step come from at most 2 blocks */
    dlt_loader_cfg cfg = cfg_of(B, 1, 2, 1);
    cfg.shuffle_block = 16;
    int64_t rows[64], steps;
    int n = run_epoch(ds, &cfg, 0, rows, &steps);
    for (int i = 0; i + 4 <= n; i += 4) {
        int64_t lo = rows[i], hi = rows[i];
        for (int j = 1; j < 4; j++) {
            lo = rows[i + j] < lo ? rows[i + j] : lo;
            hi = rows[i + j] > hi ? rows[i + j] : hi;
        }
        ck_assert_int_lt(hi - lo, 32);
    }
    dlt_dataset_close(ds);
}
END_TEST

/* All batches of epochs 0 and 1 of an augmented loader, as floats. */
static float *aug_run(dlt_dataset_t ds, const dlt_loader_cfg *cfg, int64_t epoch, int64_t step0,
                      int *count)
{
    dlt_loader_t l;
    ck_assert_int_eq(dlt_loader_init(ds, cfg, &l), DLT_OK);
    int ml = dlt_loader_max_local(l);
    int64_t steps = dlt_loader_steps(l);
    float *all = calloc((size_t)(steps * ml * 48), sizeof *all);
    int32_t y[32];
    *count = 0;
    ck_assert_int_eq(step0 ? dlt_loader_seek(l, epoch, step0) : dlt_loader_start_epoch(l, epoch), DLT_OK);
    for (;;) {
        int n, gn;
        int64_t s0;
        const float *x;
        const int32_t *yr;
        ck_assert_int_eq(dlt_loader_next_ref(l, &x, &yr, &n, &s0, &gn), DLT_OK);
        if (gn == 0) break;
        memcpy(all + (size_t)*count * 48, x, (size_t)n * 48 * sizeof *x);
        memcpy(y, yr, (size_t)n * sizeof *y);
        *count += n;
    }
    int64_t e, s;
    dlt_loader_position(l, &e, &s);
    ck_assert_int_eq(e, epoch);
    ck_assert_int_eq(s, steps);
    dlt_loader_free(l);
    return all;
}

/* Augmented batches are the same bytes with or without prefetch threads,
 * and a loader sought to (epoch, step) continues exactly. */
START_TEST(test_prefetch_seek_deterministic)
{
    dlt_dataset_t ds = open_ok("data/rgb/train-*.h5");
    static const float mean[3] = { 0.5f, 0.4f, 0.3f }, std[3] = { 0.25f, 0.2f, 0.3f };
    dlt_augment_cfg aug = { .crop_pad = 1, .scale_min = 0.3f, .scale_max = 1, .hflip = 0.5f,
                            .rotate = 10, .brightness = 0.2f, .contrast = 0.2f, .noise_std = 0.05f,
                            .cutout = 2 };
    dlt_loader_cfg cfg = { .global_batch = 6, .world = 1, .seed = 5, .shuffle = 1, .channels = 3,
                           .mean = mean, .std = std, .augment = &aug };
    for (int64_t epoch = 0; epoch < 2; epoch++) {
        int n0, n1, n2;
        cfg.prefetch = 0;
        float *sync = aug_run(ds, &cfg, epoch, 0, &n0);
        cfg.prefetch = 3;
        cfg.threads = 2;
        float *pf = aug_run(ds, &cfg, epoch, 0, &n1);
        float *sought = aug_run(ds, &cfg, epoch, 2, &n2);
        ck_assert_int_eq(n0, 20);
        ck_assert_int_eq(n1, 20);
        ck_assert_int_eq(n2, 20 - 12);
        ck_assert(memcmp(sync, pf, 20 * 48 * sizeof *sync) == 0);
        ck_assert(memcmp(sync + 12 * 48, sought, 8 * 48 * sizeof *sync) == 0);
        free(sync);
        free(pf);
        free(sought);
    }
    /* augmentation really changes the samples, and differently per epoch */
    int n;
    cfg.prefetch = 0;
    float *e0 = aug_run(ds, &cfg, 0, 0, &n), *e1 = aug_run(ds, &cfg, 1, 0, &n);
    cfg.augment = NULL;
    float *plain = aug_run(ds, &cfg, 0, 0, &n);
    ck_assert(memcmp(e0, plain, 20 * 48 * sizeof *e0) != 0);
    ck_assert(memcmp(e0, e1, 20 * 48 * sizeof *e0) != 0);
    free(e0);
    free(e1);
    free(plain);
    dlt_loader_cfg bad = cfg;
    dlt_augment_cfg badaug = { .hflip = 2 };
    bad.augment = &badaug;
    dlt_loader_t l;
    ck_assert_int_eq(dlt_loader_init(ds, &bad, &l), DLT_ERR_INVALID);
    ck_assert_ptr_nonnull(strstr(dlt_last_error(), "hflip"));
    dlt_dataset_close(ds);
}
END_TEST

static Suite *data_suite(void)
{
    Suite *s = suite_create("data");
    TCase *t = tcase_create("reader");
    tcase_add_test(t, test_read_back);
    tcase_add_test(t, test_fixed_names_rgb);
    tcase_add_test(t, test_no_names);
    tcase_add_loop_test(t, test_malformed, 0, (int)(sizeof bad_cases / sizeof bad_cases[0]));
    tcase_add_test(t, test_chunkings);
    tcase_add_test(t, test_open_files_bounded);
    tcase_add_test(t, test_corrupt_chunk);
    suite_add_tcase(s, t);
    t = tcase_create("sampler");
    tcase_add_test(t, test_sampler);
    tcase_add_test(t, test_sampler_uniform);
    tcase_add_test(t, test_block_permutation);
    suite_add_tcase(s, t);
    t = tcase_create("loader");
    tcase_set_timeout(t, 60);
    tcase_add_test(t, test_loader_ranks);
    tcase_add_test(t, test_loader_epochs_differ);
    tcase_add_test(t, test_drop_last_count);
    tcase_add_test(t, test_normalisation);
    tcase_add_test(t, test_loader_modes);
    tcase_add_test(t, test_prefetch_seek_deterministic);
    suite_add_tcase(s, t);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(data_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed != 0;
}
