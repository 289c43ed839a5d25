/* data/augment: invariants of the per-sample augmentations.
 *
 * No oracle file: each property is exact or statistical by construction.
 * Flipping twice, rotating by (almost) 0 and a resized crop covering the
 * whole image give back the normalised input; a padded random crop is a
 * pure shift with zeros; noise has the asked mean and std; the same key
 * gives the same output and another epoch another one; outputs keep their
 * size (a guard past the end stays untouched) and are finite. The fast
 * separable resampler agrees with a plain double-precision bilinear of the
 * same map (dlt_augment_geometry) within 1e-5. */
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

/* The fast separable path (tables, gathers, fused normalisation) against a
 * plain double-precision bilinear of the same map with zeros outside, then
 * (v/255 - mean)/std, on random images and random resized crops with flips
 * (some also padded and shifted), at 224x224 and at odd sizes. */
START_TEST(test_fast_matches_reference)
{
    static const int dims[3][3] = { { 3, 224, 224 }, { 3, 37, 53 }, { 1, 50, 31 } };
    static const float mean[3] = { 0.485f, 0.456f, 0.406f }, std[3] = { 0.229f, 0.224f, 0.225f };
    static uint8_t img[3 * 224 * 224];
    static float o[3 * 224 * 224];
    static unsigned char scr[1 << 16];
    uint64_t lcg = 12345;
    int flips = 0, zooms = 0;
    double worst = 0;
    for (int d = 0; d < 3; d++) {
        int c = dims[d][0], h = dims[d][1], w = dims[d][2];
        ck_assert(sizeof scr >= dlt_augment_scratch_bytes(c, h, w));
        for (uint64_t k = 0; k < 6; k++) {
            for (int i = 0; i < c * h * w; i++) {
                lcg = lcg * 6364136223846793005ULL + 1442695040888963407ULL;
                img[i] = (uint8_t)(lcg >> 56);
            }
            dlt_augment_cfg a = { .scale_min = 0.08f, .scale_max = 1, .hflip = 0.5f };
            if (k % 3 == 2) a.crop_pad = 3, a.translate = 0.1f;
            uint64_t key = dlt_augment_key(7, (int64_t)d, (int64_t)k);
            dlt_augment_sample(&a, key, img, c, h, w, mean, std, o, scr);
            dlt_augment_map m;
            dlt_augment_geometry(&a, key, h, w, &m);
            ck_assert(m.b == 0 && m.c == 0);
            flips += m.a < 0;
            zooms += fabsf(m.a) < 0.99f;
            for (int ch = 0; ch < c; ch++)
                for (int y = 0; y < h; y++)
                    for (int x = 0; x < w; x++) {
                        double px = (double)m.a * x + m.e, py = (double)m.d * y + m.f;
                        double fx = floor(px), fy = floor(py), v = 0;
                        for (int j = 0; j < 4; j++) {
                            int sx = (int)fx + (j & 1), sy = (int)fy + (j >> 1);
                            double wt = ((j & 1) ? px - fx : 1 - (px - fx)) *
                                        ((j >> 1) ? py - fy : 1 - (py - fy));
                            if (sx >= 0 && sx < w && sy >= 0 && sy < h)
                                v += wt * img[(ch * h + sy) * w + sx];
                        }
                        double ref = (v / 255.0 - mean[ch]) / std[ch];
                        double err = fabs(o[(ch * h + y) * w + x] - ref);
                        worst = err > worst ? err : worst;
                    }
        }
    }
    ck_assert_msg(worst <= 1e-5, "fast path differs from the reference by %g", worst);
    ck_assert_int_ge(flips, 2);
    ck_assert_int_ge(zooms, 12);
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
    tcase_add_test(t, test_fast_matches_reference);
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
