/* data/augment: invariants of the per-sample augmentations.
 *
 * No oracle file: each property is exact or statistical by construction.
 * Flipping twice, rotating by (almost) 0 and a resized crop covering the
 * whole image give back the normalised input; a padded random crop is a
 * pure shift with zeros; noise has the asked mean and std; the same key
 * gives the same output and another epoch another one; outputs keep their
 * size (a guard past the end stays untouched) and are finite. */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "data/augment.h"

enum { C = 3, H = 9, W = 11, N = C * H * W };

static uint8_t src[N];
static float plain[N];    /* normalisation only, mean 0, std 1: pixel/255 */
static float out[N + 4];
static unsigned char scratch[1 << 16];

static void setup(void)
{
    for (int i = 0; i < N; i++) src[i] = (uint8_t)((i * 37 + 11) % 256);
    dlt_augment_sample(NULL, 0, src, C, H, W, NULL, NULL, plain, scratch);
}

/* Back to pixels: exact when out holds v/255 of integers v. */
static void to_u8(const float *x, uint8_t *p)
{
    for (int i = 0; i < N; i++) p[i] = (uint8_t)lrintf(x[i] * 255.0f);
}

START_TEST(test_plain_is_normalisation)
{
    static const float mean[3] = { 0.5f, 0.4f, 0.3f }, std[3] = { 0.25f, 0.2f, 0.3f };
    ck_assert(sizeof scratch >= dlt_augment_scratch_bytes(C, H, W));
    dlt_augment_sample(NULL, 0, src, C, H, W, mean, std, out, scratch);
    for (int i = 0; i < N; i++) {
        int c = i / (H * W);
        ck_assert_float_eq(out[i], ((float)src[i] / 255.0f - mean[c]) / std[c]);
        ck_assert_float_eq(plain[i], (float)src[i] / 255.0f);
    }
}
END_TEST

START_TEST(test_flip_twice)
{
    dlt_augment_cfg a = { .hflip = 1 };
    uint8_t once[N];
    dlt_augment_sample(&a, 1, src, C, H, W, NULL, NULL, out, scratch);
    ck_assert(memcmp(out, plain, sizeof plain) != 0);
    ck_assert_float_eq(out[0], plain[W - 1]); /* a mirror */
    to_u8(out, once);
    dlt_augment_sample(&a, 1, once, C, H, W, NULL, NULL, out, scratch);
    ck_assert(memcmp(out, plain, sizeof plain) == 0);
}
END_TEST

START_TEST(test_identities)
{
    /* rotation within +-1e-6 degrees: the identity up to float rounding */
    dlt_augment_cfg rot = { .rotate = 1e-6f };
    dlt_augment_sample(&rot, 9, src, C, H, W, NULL, NULL, out, scratch);
    for (int i = 0; i < N; i++) ck_assert_float_eq_tol(out[i], plain[i], 1e-4f);
    /* a resized crop of the whole image at its own aspect ratio: bit-exact */
    dlt_augment_cfg whole = { .scale_min = 1, .scale_max = 1, .ratio_min = (float)W / H,
                              .ratio_max = (float)W / H };
    for (uint64_t k = 0; k < 20; k++) {
        dlt_augment_sample(&whole, k, src, C, H, W, NULL, NULL, out, scratch);
        ck_assert(memcmp(out, plain, sizeof plain) == 0);
    }
}
END_TEST

/* A padded random crop is a shift by (dy, dx) in [-2, 2]^2, zeros outside;
 * several keys reach several shifts. */
START_TEST(test_crop_pad_shift)
{
    dlt_augment_cfg a = { .crop_pad = 2 };
    int shifts = 0, seen[25] = { 0 };
    for (uint64_t k = 0; k < 40; k++) {
        dlt_augment_sample(&a, k, src, C, H, W, NULL, NULL, out, scratch);
        int found = -1;
        for (int dy = -2; dy <= 2 && found < 0; dy++)
            for (int dx = -2; dx <= 2 && found < 0; dx++) {
                int ok = 1;
                for (int i = 0; i < N && ok; i++) {
                    int c = i / (H * W), y = i / W % H, x = i % W;
                    int sy = y + dy, sx = x + dx;
                    float want = sy < 0 || sy >= H || sx < 0 || sx >= W ? 0.0f
                                                                          : plain[(c * H + sy) * W + sx];
                    ok = out[i] == want;
                }
                if (ok) found = (dy + 2) * 5 + dx + 2;
            }
        ck_assert_msg(found >= 0, "key %d: not a shift", (int)k);
        shifts += !seen[found]++;
    }
    ck_assert_int_ge(shifts, 10);
}
END_TEST

START_TEST(test_noise_stats)
{
    enum { HH = 200, WW = 200 };
    static uint8_t flat[HH * WW];
    static float o[HH * WW];
    static unsigned char scr[1 << 16];
    memset(flat, 128, sizeof flat);
    dlt_augment_cfg a = { .noise_std = 0.1f };
    dlt_augment_sample(&a, 77, flat, 1, HH, WW, NULL, NULL, o, scr);
    double s = 0, s2 = 0;
    for (int i = 0; i < HH * WW; i++) {
        double d = o[i] - 128.0 / 255.0;
        s += d;
        s2 += d * d;
    }
    double mean = s / (HH * WW), sd = sqrt(s2 / (HH * WW) - mean * mean);
    ck_assert_double_eq_tol(mean, 0.0, 2e-3);    /* sd of the mean: 5e-4 */
    ck_assert_double_eq_tol(sd, 0.1, 2e-3);      /* sd of the sd: ~3.5e-4 */
}
END_TEST

/* Everything on at once: deterministic per key, different across epochs,
 * size kept, values finite, cutout leaves zeros. */
START_TEST(test_all_deterministic)
{
    dlt_augment_cfg a = { .crop_pad = 1, .scale_min = 0.2f, .scale_max = 1, .hflip = 0.5f,
                          .rotate = 30, .translate = 0.1f, .brightness = 0.3f, .contrast = 0.3f,
                          .noise_std = 0.02f, .cutout = 3 };
    ck_assert_int_eq(dlt_augment_check(&a, H, W), DLT_OK);
    ck_assert(dlt_augment_active(&a));
    ck_assert(!dlt_augment_active(&(dlt_augment_cfg){ 0 }));
    float again[N], other[N];
    for (int i = 0; i < 4; i++) out[N + i] = -7.0f;
    dlt_augment_sample(&a, dlt_augment_key(1, 0, 5), src, C, H, W, NULL, NULL, out, scratch);
    dlt_augment_sample(&a, dlt_augment_key(1, 0, 5), src, C, H, W, NULL, NULL, again, scratch);
    dlt_augment_sample(&a, dlt_augment_key(1, 1, 5), src, C, H, W, NULL, NULL, other, scratch);
    ck_assert(memcmp(out, again, sizeof again) == 0);
    ck_assert(memcmp(out, other, sizeof other) != 0);
    for (int i = 0; i < 4; i++) ck_assert_float_eq(out[N + i], -7.0f);
    for (int i = 0; i < N; i++) ck_assert(isfinite(out[i]));
    /* cutout alone on an all-white image zeroes between 1 and 9 pixels a channel */
    uint8_t white[N];
    memset(white, 255, sizeof white);
    dlt_augment_cfg cut = { .cutout = 3 };
    dlt_augment_sample(&cut, 3, white, C, H, W, NULL, NULL, out, scratch);
    int zeros = 0;
    for (int i = 0; i < N; i++) zeros += out[i] == 0.0f;
    ck_assert(zeros >= C && zeros <= 9 * C && zeros % C == 0);
    /* brightness/contrast keep pixels in [0, 1] */
    dlt_augment_cfg bc = { .brightness = 1, .contrast = 1 };
    for (uint64_t k = 0; k < 10; k++) {
        dlt_augment_sample(&bc, k, src, C, H, W, NULL, NULL, out, scratch);
        for (int i = 0; i < N; i++) ck_assert(out[i] >= 0.0f && out[i] <= 1.0f);
    }
    dlt_augment_cfg bad = { .scale_min = 0.5f, .scale_max = 0.2f };
    ck_assert_int_eq(dlt_augment_check(&bad, H, W), DLT_ERR_INVALID);
}
END_TEST

static Suite *augment_suite(void)
{
    Suite *s = suite_create("augment");
    TCase *t = tcase_create("invariants");
    tcase_add_checked_fixture(t, setup, NULL);
    tcase_add_test(t, test_plain_is_normalisation);
    tcase_add_test(t, test_flip_twice);
    tcase_add_test(t, test_identities);
    tcase_add_test(t, test_crop_pad_shift);
    tcase_add_test(t, test_noise_stats);
    tcase_add_test(t, test_all_deterministic);
    suite_add_tcase(s, t);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(augment_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed != 0;
}
