/* data/text*.c and data/tokens.c: vocabularies, tokenizers, the online
 * transforms of token models, and the token loader.
 *
 * Tokenizers are checked by round trips (decode(encode(s)) gives the
 * normalised s back) and by the word example of the issue; masking by its
 * statistics over a large sample (15% chosen; 80/10/10 split; specials never
 * touched; same key, same mask); the loader by exactly-once coverage and by
 * the 1-rank batch being the concatenation of the 2-rank batches, with the
 * next-token target across row boundaries of a stream. */
#include <check.h>
#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "data/text.h"
#include "data/tokens.h"

static const char *CORPUS[] = {
    "A dog barked at a cat.",
    "The cat sat on the mat; the dog did not.",
    "a dog is a domesticated carnivore",
    "it's the dog's bone, isn't it?",
};

static dlt_wordcount_t count_corpus(void)
{
    dlt_wordcount_t wc;
    ck_assert_int_eq(dlt_wordcount_init(&wc), DLT_OK);
    for (size_t i = 0; i < sizeof CORPUS / sizeof CORPUS[0]; i++) ck_assert_int_eq(dlt_wordcount_add(wc, CORPUS[i]), DLT_OK);
    return wc;
}

START_TEST(word_example)
{
    dlt_wordcount_t wc = count_corpus();
    dlt_vocab_t v;
    ck_assert_int_eq(dlt_vocab_build_words(wc, 1, 1000, &v), DLT_OK);
    int32_t ids[16];
    int n = dlt_vocab_encode(v, "a dog barked at a cat", ids, 16);
    ck_assert_int_eq(n, 6);
    /* the same word, the same id; distinct words, distinct ids; no specials */
    ck_assert_int_eq(ids[0], ids[4]);
    for (int i = 0; i < 6; i++) ck_assert_int_ge(ids[i], DLT_TOK_N_SPECIAL);
    ck_assert_int_ne(ids[1], ids[5]);
    ck_assert_str_eq(dlt_vocab_token(v, ids[2]), "barked");
    /* "a" is the most frequent word (5 times): the first id after the specials */
    ck_assert_int_eq(ids[0], DLT_TOK_N_SPECIAL);
    n = dlt_vocab_encode(v, "A zebra barked", ids, 16);
    ck_assert_int_eq(n, 3);
    ck_assert_int_eq(ids[1], DLT_TOK_UNK);
    n = dlt_vocab_encode(v, "the [MASK] sat", ids, 16);
    ck_assert_int_eq(ids[1], DLT_TOK_MASK);
    /* min_count and max_size */
    dlt_vocab_t small;
    ck_assert_int_eq(dlt_vocab_build_words(wc, 3, 1000, &small), DLT_OK);
    ck_assert_int_eq(dlt_vocab_find(small, "barked"), -1);
    ck_assert_int_ge(dlt_vocab_find(small, "dog"), DLT_TOK_N_SPECIAL);
    dlt_vocab_free(small);
    ck_assert_int_eq(dlt_vocab_build_words(wc, 1, 8, &small), DLT_OK);
    ck_assert_int_eq(dlt_vocab_size(small), 8);
    dlt_vocab_free(small);
    dlt_vocab_free(v);
    dlt_wordcount_free(wc);
}
END_TEST

static void round_trip(dlt_vocab_t v, const char *text, const char *want)
{
    int32_t ids[256];
    char buf[1024];
    int n = dlt_vocab_encode(v, text, ids, 256);
    ck_assert_int_le(n, 256);
    dlt_vocab_decode(v, ids, n, buf, sizeof buf);
    ck_assert_str_eq(buf, want);
    for (int i = 0; i < n; i++) ck_assert_int_ne(ids[i], DLT_TOK_UNK);
}

START_TEST(round_trips_and_file)
{
    dlt_wordcount_t wc = count_corpus();
    dlt_vocab_t w, p;
    ck_assert_int_eq(dlt_vocab_build_words(wc, 1, 1000, &w), DLT_OK);
    ck_assert_int_eq(dlt_vocab_build_wordpiece(wc, 1, 60, &p), DLT_OK);
    ck_assert_int_le(dlt_vocab_size(p), 60);
    round_trip(w, "The Dog  sat on the mat.", "the dog sat on the mat .");
    round_trip(w, "it's", "it ' s");
    /* WordPiece splits words it never saw whole, but never into [UNK] */
    round_trip(p, "A dog barked at a cat.", "a dog barked at a cat .");
    round_trip(p, "domesticated bone", "domesticated bone");
    round_trip(p, "tactic", "tactic"); /* unseen word, known characters */
    int32_t ids[32];
    int n = dlt_vocab_encode(p, "domesticated", ids, 32);
    ck_assert_int_gt(n, 1); /* a 60-id vocabulary has no room for it whole */
    ck_assert(!strncmp(dlt_vocab_token(p, ids[1]), "##", 2));

    char path[] = "/tmp/dlt-vocab-XXXXXX";
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    close(fd);
    ck_assert_int_eq(dlt_vocab_save(p, path), DLT_OK);
    dlt_vocab_t back;
    ck_assert_int_eq(dlt_vocab_load(path, &back), DLT_OK);
    ck_assert_int_eq(dlt_vocab_size(back), dlt_vocab_size(p));
    ck_assert_int_eq(dlt_vocab_kind_of(back), DLT_VOCAB_WORDPIECE);
    for (int i = 0; i < dlt_vocab_size(p); i++) ck_assert_str_eq(dlt_vocab_token(back, i), dlt_vocab_token(p, i));
    round_trip(back, "the cat sat", "the cat sat");
    FILE *f = fopen(path, "w");
    fprintf(f, "[PAD]\n[UNK]\n");
    fclose(f);
    dlt_vocab_t bad;
    ck_assert_int_eq(dlt_vocab_load(path, &bad), DLT_ERR_IO);
    ck_assert_ptr_nonnull(strstr(dlt_last_error(), "not a dltrain vocabulary"));
    remove(path);
    dlt_vocab_free(back);
    dlt_vocab_free(w);
    dlt_vocab_free(p);
    dlt_wordcount_free(wc);
}
END_TEST

START_TEST(masking_statistics)
{
    enum { L = 64, N = 4000, V = 1000 };
    int32_t t[L], x[L], y[L];
    long chosen = 0, eligible = 0, masked = 0, random = 0, kept = 0;
    for (int s = 0; s < N; s++) {
        for (int i = 0; i < L; i++) t[i] = i == 0 ? DLT_TOK_CLS : i == L - 1 ? DLT_TOK_SEP : i > 50 ? DLT_TOK_PAD
                                                                                          : DLT_TOK_N_SPECIAL + (s * 7 + i * 13) % (V - DLT_TOK_N_SPECIAL);
        int c = dlt_text_mask(42, 3, s, 0.15f, V, t, L, x, y);
        int counted = 0;
        for (int i = 0; i < L; i++) {
            if (t[i] < DLT_TOK_N_SPECIAL) {
                ck_assert_int_eq(x[i], t[i]); /* specials never touched */
                ck_assert_int_eq(y[i], -1);
                continue;
            }
            eligible++;
            if (y[i] < 0) {
                ck_assert_int_eq(x[i], t[i]);
                continue;
            }
            counted++;
            ck_assert_int_eq(y[i], t[i]);
            if (x[i] == DLT_TOK_MASK) masked++;
            else if (x[i] == t[i]) kept++;
            else {
                random++;
                ck_assert_int_ge(x[i], DLT_TOK_N_SPECIAL);
                ck_assert_int_lt(x[i], V);
            }
        }
        ck_assert_int_eq(c, counted);
        chosen += c;
    }
    double rate = (double)chosen / (double)eligible;
    /* 200k eligible tokens: the standard error of 0.15 is 0.0008 */
    ck_assert_msg(fabs(rate - 0.15) < 0.005, "chosen rate %.4f", rate);
    double fm = (double)masked / chosen, fr = (double)random / chosen, fk = (double)kept / chosen;
    ck_assert_msg(fabs(fm - 0.8) < 0.01, "mask fraction %.4f", fm);
    ck_assert_msg(fabs(fr - 0.1) < 0.01, "random fraction %.4f", fr); /* a random draw equal to t counts as kept */
    ck_assert_msg(fabs(fk - 0.1) < 0.01, "kept fraction %.4f", fk);

    /* deterministic in (seed, epoch, sample); another epoch masks differently */
    int32_t x2[L], y2[L];
    dlt_text_mask(42, 3, 17, 0.15f, V, t, L, x, y);
    dlt_text_mask(42, 3, 17, 0.15f, V, t, L, x2, y2);
    ck_assert_mem_eq(x, x2, sizeof x);
    int differ = 0;
    for (int s = 0; s < 20; s++) {
        dlt_text_mask(42, 3, s, 0.15f, V, t, L, x, y);
        dlt_text_mask(42, 4, s, 0.15f, V, t, L, x2, y2);
        differ += memcmp(y, y2, sizeof y) != 0;
    }
    ck_assert_int_gt(differ, 10);
}
END_TEST

START_TEST(lm_targets)
{
    int32_t t[5] = { 10, 11, 12, DLT_TOK_PAD, DLT_TOK_PAD }, y[5];
    dlt_text_lm_targets(t, 5, 99, y);
    int32_t want[5] = { 11, 12, -1, -1, 99 };
    ck_assert_mem_eq(y, want, sizeof want);
}
END_TEST

/* A token shard as h5py would write it: tokens[i][j] = 5 + (first+i)*L + j mod (V-5). */
static void write_shard(const char *path, int64_t first, int n, int L, int V, int vattr, int labels)
{
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    hsize_t d[2] = { (hsize_t)n, (hsize_t)L };
    int32_t *t = malloc((size_t)n * L * sizeof *t);
    int64_t *y = malloc((size_t)n * sizeof *y);
    for (int i = 0; i < n; i++) {
        y[i] = (first + i) % 3;
        for (int j = 0; j < L; j++) t[i * L + j] = 5 + (int32_t)(((first + i) * L + j) % (V - 5));
    }
    hid_t sp = H5Screate_simple(2, d, NULL);
    hid_t ds = H5Dcreate2(f, "tokens", H5T_STD_I32LE, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    H5Dwrite(ds, H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, t);
    hid_t asp = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(ds, "vocab_size", H5T_STD_I64LE, asp, H5P_DEFAULT, H5P_DEFAULT);
    int64_t v = vattr;
    H5Awrite(a, H5T_NATIVE_INT64, &v);
    H5Aclose(a);
    H5Dclose(ds);
    H5Sclose(sp);
    hid_t st = H5Tcopy(H5T_C_S1);
    H5Tset_size(st, H5T_VARIABLE);
    const char *layout = "stream";
    a = H5Acreate2(f, "layout", st, asp, H5P_DEFAULT, H5P_DEFAULT);
    H5Awrite(a, st, &layout);
    H5Aclose(a);
    H5Tclose(st);
    H5Sclose(asp);
    if (labels) {
        sp = H5Screate_simple(1, d, NULL);
        ds = H5Dcreate2(f, "labels", H5T_STD_I64LE, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        H5Dwrite(ds, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, y);
        H5Dclose(ds);
        H5Sclose(sp);
    }
    H5Fclose(f);
    free(t);
    free(y);
}

START_TEST(loader_ranks)
{
    enum { L = 6, V = 1000, B = 10 };
    write_shard("/tmp/dlt-text-tok-a.h5", 0, 23, L, V, V, 1);
    write_shard("/tmp/dlt-text-tok-b.h5", 23, 14, L, V, V, 1);
    dlt_tokens_t ds;
    ck_assert_int_eq(dlt_tokens_open("/tmp/dlt-text-tok-?.h5", &ds), DLT_OK);
    ck_assert_int_eq(dlt_tokens_size(ds), 37);
    ck_assert_int_eq(dlt_tokens_seq_len(ds), L);
    ck_assert_int_eq(dlt_tokens_vocab_size(ds), V);
    ck_assert_int_eq(dlt_tokens_classes(ds), 3);
    ck_assert(dlt_tokens_is_stream(ds));
    for (int task = 0; task < 3; task++)
        for (int order = 0; order < 3; order++) {
            dlt_tokens_loader_t one, two[2];
            dlt_tokens_loader_cfg c = { .global_batch = B, .rank = 0, .world = 1, .seed = 5, .order = order,
                                        .drop_last = 1, .task = task, .mask_prob = 0.3f, .mask_epoch = -1 };
            ck_assert_int_eq(dlt_tokens_loader_init(ds, &c, &one), DLT_OK);
            for (int r = 0; r < 2; r++) {
                c.rank = r;
                c.world = 2;
                ck_assert_int_eq(dlt_tokens_loader_init(ds, &c, &two[r]), DLT_OK);
            }
            int ln = dlt_tokens_loader_label_numel(one);
            float x1[B * L], x2[B * L];
            int32_t y1[B * L], y2[B * L];
            int seen[37] = { 0 };
            for (int epoch = 0; epoch < 2; epoch++) {
                dlt_tokens_loader_start_epoch(one, epoch);
                dlt_tokens_loader_start_epoch(two[0], epoch);
                dlt_tokens_loader_start_epoch(two[1], epoch);
                for (;;) {
                    int n, g, na, nb, ga;
                    int64_t s0, sa, cnt, ca, cb;
                    ck_assert_int_eq(dlt_tokens_loader_next(one, x1, y1, &n, &s0, &g, &cnt), DLT_OK);
                    ck_assert_int_eq(dlt_tokens_loader_next(two[0], x2, y2, &na, &sa, &ga, &ca), DLT_OK);
                    ck_assert_int_eq(dlt_tokens_loader_next(two[1], x2 + na * L, y2 + na * ln, &nb, &sa, &ga, &cb),
                                     DLT_OK);
                    ck_assert_int_eq(g, ga);
                    if (g == 0) break;
                    ck_assert_int_eq(n, na + nb);
                    ck_assert_int_eq(cnt, ca + cb);
                    ck_assert_mem_eq(x1, x2, sizeof(float) * n * L);
                    ck_assert_mem_eq(y1, y2, sizeof(int32_t) * n * ln);
                    if (epoch == 0 && task == 0)
                        for (int i = 0; i < n; i++) seen[((int)x1[i * L] - 5) / L]++; /* row id from its first token */
                    if (task == DLT_TEXT_TASK_LM)
                        for (int i = 0; i < n; i++) /* the stream's next token, across rows and shards */
                            for (int j = 0; j < L; j++)
                                ck_assert(y1[i * L + j] == -1 || y1[i * L + j] == 5 + ((int)x1[i * L + j] - 5 + 1) % (V - 5));
                }
            }
            if (task == 0) /* 37 rows, batch 10, drop_last: 30 rows, each at most once */
                for (int i = 0; i < 37; i++) ck_assert_int_le(seen[i], 1);
            dlt_tokens_loader_free(one);
            dlt_tokens_loader_free(two[0]);
            dlt_tokens_loader_free(two[1]);
        }
    /* streams: row b of step s is sample b*steps + s */
    dlt_tokens_loader_t st;
    dlt_tokens_loader_cfg c = { .global_batch = 4, .world = 1, .order = DLT_TOKENS_STREAMS, .task = DLT_TEXT_TASK_LM,
                                .mask_epoch = -1 };
    ck_assert_int_eq(dlt_tokens_loader_init(ds, &c, &st), DLT_OK);
    ck_assert_int_eq(dlt_tokens_loader_steps(st), 9);
    dlt_tokens_loader_start_epoch(st, 0);
    float x[4 * L];
    int32_t y[4 * L];
    int n, g;
    int64_t s0, cnt;
    dlt_tokens_loader_next(st, x, y, &n, &s0, &g, &cnt);
    dlt_tokens_loader_next(st, x, y, &n, &s0, &g, &cnt);
    ck_assert_int_eq(((int)x[2 * L] - 5) / L, 2 * 9 + 1);
    ck_assert_int_eq(cnt, 4 * L);
    dlt_tokens_loader_free(st);
    dlt_tokens_close(ds);

    /* bad input: no match, missing dataset, out-of-range ids */
    ck_assert_int_eq(dlt_tokens_open("/tmp/dlt-text-none-*.h5", &ds), DLT_ERR_IO);
    hid_t f = H5Fcreate("/tmp/dlt-text-tok-bad.h5", H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    H5Fclose(f);
    ck_assert_int_eq(dlt_tokens_open("/tmp/dlt-text-tok-bad.h5", &ds), DLT_ERR_IO);
    ck_assert_ptr_nonnull(strstr(dlt_last_error(), "no dataset 'tokens'"));
    write_shard("/tmp/dlt-text-tok-bad.h5", 0, 4, L, V, 7, 0);
    ck_assert_int_eq(dlt_tokens_open("/tmp/dlt-text-tok-bad.h5", &ds), DLT_ERR_IO);
    ck_assert_ptr_nonnull(strstr(dlt_last_error(), "outside [0, vocab_size"));
    remove("/tmp/dlt-text-tok-bad.h5");
    remove("/tmp/dlt-text-tok-a.h5");
    remove("/tmp/dlt-text-tok-b.h5");
}
END_TEST

static Suite *text_suite(void)
{
    Suite *s = suite_create("text");
    TCase *tc = tcase_create("text");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, word_example);
    tcase_add_test(tc, round_trips_and_file);
    tcase_add_test(tc, masking_statistics);
    tcase_add_test(tc, lm_targets);
    tcase_add_test(tc, loader_ranks);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(text_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed != 0;
}
