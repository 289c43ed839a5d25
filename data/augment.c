/* Per-sample augmentation (augment.h).
 *
 * Design. All geometric parts compose into one inverse affine map from an
 * output pixel (x, y) to a source position (sx, sy), sampled bilinearly with
 * zeros outside the image, so a sample is resampled once however many parts
 * are on. The map is applied in this order from the output back to the
 * source: flip, rotation about the centre, integer shifts (crop padding,
 * translation), the resized-crop box. When nothing rotates, the map is
 * separable (sx depends on x only, sy on y only), which is the fast path:
 * per-column taps and weights are computed once per sample, each needed
 * source row is interpolated horizontally once into a float row (kept while
 * successive output rows use it, which is most rows when a crop is zoomed
 * in), and each output row is one vertical blend of two such rows. The
 * identity map has integral positions and weights exactly 1 and 0, so flips,
 * rotation by 0 and crops without padding reproduce pixels bit-exactly.
 *
 * Random draws: parameter j of a sample is dlt_rand_u01(key, j) with a fixed
 * j per parameter, so switching one part on does not change the draws of
 * another. Noise uses a second key and Box-Muller on counter pairs.
 *
 * Photometric parts act on pixel values v in [0, 255] (brightness scales,
 * contrast blends with the sample's mean, then clamp to [0, 255]); then
 * out = (v/255 + noise - mean[c]) / std[c], the loader's normalisation. */
#include "data/augment.h"

#include <math.h>
#include <string.h>

#include "core/rng.h"

#define AUG_KEY 0x4155474d454e54ULL   /* "AUGMENT" */
#define NOISE_KEY 0x4e4f495345ULL     /* "NOISE" */

/* Slots of the per-sample draws. */
enum { U_FLIP, U_ROT, U_TX, U_TY, U_PX, U_PY, U_BRIGHT, U_CONTRAST, U_CUTX, U_CUTY, U_RRC = 16 };

typedef struct {
    float a, b, e;   /* sx = a*x + b*y + e */
    float c, d, f;   /* sy = c*x + d*y + f */
} affine;

int dlt_augment_active(const dlt_augment_cfg *a)
{
    return a && (a->crop_pad > 0 || a->scale_max > 0 || a->hflip > 0 || a->rotate > 0 ||
                 a->translate > 0 || a->brightness > 0 || a->contrast > 0 || a->noise_std > 0 ||
                 a->cutout > 0);
}

/* Contract (augment.h): every field in range, else DLT_ERR_INVALID naming it. */
dlt_status dlt_augment_check(const dlt_augment_cfg *a, int h, int w)
{
    if (!a) return DLT_OK;
    if (a->crop_pad < 0 || a->crop_pad > 4 * (h > w ? h : w))
        return DLT_ERR(DLT_ERR_INVALID, "augment crop_pad %d must be in 0..4*max(H, W)", a->crop_pad);
    if (a->scale_max > 0 && !(a->scale_min > 0 && a->scale_min <= a->scale_max && a->scale_max <= 1))
        return DLT_ERR(DLT_ERR_INVALID,
                       "augment resized_crop scale [%g, %g] must satisfy 0 < min <= max <= 1",
                       (double)a->scale_min, (double)a->scale_max);
    if ((a->ratio_min || a->ratio_max) && !(a->ratio_min > 0 && a->ratio_min <= a->ratio_max))
        return DLT_ERR(DLT_ERR_INVALID, "augment ratio [%g, %g] must satisfy 0 < min <= max",
                       (double)a->ratio_min, (double)a->ratio_max);
    if (!(a->hflip >= 0 && a->hflip <= 1))
        return DLT_ERR(DLT_ERR_INVALID, "augment hflip %g must be a probability in [0, 1]",
                       (double)a->hflip);
    if (!(a->rotate >= 0 && a->rotate <= 180))
        return DLT_ERR(DLT_ERR_INVALID, "augment rotate %g must be in [0, 180] degrees", (double)a->rotate);
    if (!(a->translate >= 0 && a->translate <= 1))
        return DLT_ERR(DLT_ERR_INVALID, "augment translate %g must be in [0, 1]", (double)a->translate);
    if (!(a->brightness >= 0 && a->brightness <= 1) || !(a->contrast >= 0 && a->contrast <= 1))
        return DLT_ERR(DLT_ERR_INVALID, "augment brightness/contrast must be in [0, 1]");
    if (!(a->noise_std >= 0 && a->noise_std <= 10))
        return DLT_ERR(DLT_ERR_INVALID, "augment noise_std %g must be in [0, 10]", (double)a->noise_std);
    if (a->cutout < 0) return DLT_ERR(DLT_ERR_INVALID, "augment cutout %d must be >= 0", a->cutout);
    return DLT_OK;
}

/* Scratch of the separable path: per-column taps (x0, x1 as int, wx0, wx1
 * as float), two horizontally interpolated rows, and per-row taps. */
size_t dlt_augment_scratch_bytes(int c, int h, int w)
{
    return (size_t)w * (2 * sizeof(int) + 2 * sizeof(float)) + 2 * (size_t)w * sizeof(float) +
           (size_t)h * (2 * sizeof(int) + 2 * sizeof(float)) + 64;
}

uint64_t dlt_augment_key(uint64_t seed, int64_t epoch, int64_t sample)
{
    return dlt_hash_combine(dlt_hash_combine(dlt_hash_combine(seed, AUG_KEY), (uint64_t)epoch),
                            (uint64_t)sample);
}

/* torchvision's RandomResizedCrop box: up to 10 tries of (area, log-ratio),
 * else the largest centred box with the ratio clamped. */
static void rrc_box(const dlt_augment_cfg *a, uint64_t key, int h, int w, float *bx, float *by,
                    float *bw, float *bh)
{
    float rmin = a->ratio_min > 0 ? a->ratio_min : 3.0f / 4.0f;
    float rmax = a->ratio_max > 0 ? a->ratio_max : 4.0f / 3.0f;
    float area = (float)h * (float)w;
    for (int t = 0; t < 10; t++) {
        float s = a->scale_min + (a->scale_max - a->scale_min) * dlt_rand_u01(key, U_RRC + 4 * t);
        float lr = logf(rmin) + (logf(rmax) - logf(rmin)) * dlt_rand_u01(key, U_RRC + 4 * t + 1);
        float r = expf(lr);
        int cw = (int)lrintf(sqrtf(area * s * r)), ch = (int)lrintf(sqrtf(area * s / r));
        if (cw > 0 && cw <= w && ch > 0 && ch <= h) {
            *bx = (float)(int)(dlt_rand_u01(key, U_RRC + 4 * t + 2) * (float)(w - cw + 1));
            *by = (float)(int)(dlt_rand_u01(key, U_RRC + 4 * t + 3) * (float)(h - ch + 1));
            *bw = (float)cw;
            *bh = (float)ch;
            return;
        }
    }
    float in = (float)w / (float)h;
    int cw = w, ch = h;
    if (in < rmin) ch = (int)lrintf((float)w / rmin);
    else if (in > rmax) cw = (int)lrintf((float)h * rmax);
    *bx = (float)((w - cw) / 2);
    *by = (float)((h - ch) / 2);
    *bw = (float)cw;
    *bh = (float)ch;
}

/* The inverse map of this sample (see the file comment for the order). */
static affine sample_map(const dlt_augment_cfg *a, uint64_t key, int h, int w)
{
    float bx = 0, by = 0, bw = (float)w, bh = (float)h;
    if (a->scale_max > 0) rrc_box(a, key, h, w, &bx, &by, &bw, &bh);
    float sx = bw / (float)w, sy = bh / (float)h;
    /* integer shifts in output pixels: crop padding and translation */
    float shx = 0, shy = 0;
    if (a->crop_pad > 0) {
        int span = 2 * a->crop_pad + 1;
        shx += (float)((int)(dlt_rand_u01(key, U_PX) * (float)span) - a->crop_pad);
        shy += (float)((int)(dlt_rand_u01(key, U_PY) * (float)span) - a->crop_pad);
    }
    if (a->translate > 0) {
        shx -= rintf((2 * dlt_rand_u01(key, U_TX) - 1) * a->translate * (float)w);
        shy -= rintf((2 * dlt_rand_u01(key, U_TY) - 1) * a->translate * (float)h);
    }
    /* x1 = flip(x); (x2, y2) = R^-1 (x1 - cx, y - cy) + c; x3 = x2 + shx;
     * src = b0 + (x3 + 0.5) * s - 0.5. Written as an affine in (x, y). */
    float fa = 1, fe = 0;
    if (a->hflip > 0 && dlt_rand_u01(key, U_FLIP) < a->hflip) {
        fa = -1;
        fe = (float)(w - 1);
    }
    float cs = 1, sn = 0;
    if (a->rotate > 0) {
        double th = (2.0 * dlt_rand_u01(key, U_ROT) - 1.0) * a->rotate * (3.14159265358979323846 / 180.0);
        cs = (float)cos(th);
        sn = (float)sin(th);
    }
    float cx = 0.5f * (float)(w - 1), cy = 0.5f * (float)(h - 1);
    /* x2 = cs*(x1-cx) + sn*(y-cy) + cx ; y2 = -sn*(x1-cx) + cs*(y-cy) + cy, x1 = fa*x + fe */
    affine m;
    float ax = cs * fa, bxy = sn, ex = cs * (fe - cx) - sn * cy + cx;
    float cyx = -sn * fa, dy = cs, fy = -sn * (fe - cx) - cs * cy + cy;
    if (a->rotate <= 0) { /* keep the identity exact */
        ax = fa;
        bxy = 0;
        ex = fe;
        cyx = 0;
        dy = 1;
        fy = 0;
    }
    float ox = bx + 0.5f * sx - 0.5f, oy = by + 0.5f * sy - 0.5f;
    m.a = ax * sx;
    m.b = bxy * sx;
    m.e = (ex + shx) * sx + ox;
    m.c = cyx * sy;
    m.d = dy * sy;
    m.f = (fy + shy) * sy + oy;
    return m;
}

/* Taps of one axis: position p -> indices i0, i1 clamped into [0, n) and
 * weights, a weight 0 where the tap falls outside (zero padding). */
static void taps(float p, int n, int *i0, int *i1, float *w0, float *w1)
{
    float fl = floorf(p);
    int k = (int)fl;
    float f = p - fl;
    *w0 = (k >= 0 && k < n) ? 1.0f - f : 0.0f;
    *w1 = (k + 1 >= 0 && k + 1 < n) ? f : 0.0f;
    *i0 = k < 0 ? 0 : k >= n ? n - 1 : k;
    *i1 = k + 1 < 0 ? 0 : k + 1 >= n ? n - 1 : k + 1;
}

/* Separable resampling of all channels: dst (C, H, W) pixel values. */
static void resample_separable(const affine *m, const uint8_t *src, int c, int h, int w, float *dst,
                               void *scratch)
{
    int *xi0 = scratch, *xi1 = xi0 + w;
    float *xw0 = (float *)(xi1 + w), *xw1 = xw0 + w;
    float *rowa = xw1 + w, *rowb = rowa + w;   /* (W) horizontally interpolated rows */
    int *yi0 = (int *)(rowb + w), *yi1 = yi0 + h;
    float *yw0 = (float *)(yi1 + h), *yw1 = yw0 + h;
    for (int x = 0; x < w; x++) taps(m->a * (float)x + m->e, w, &xi0[x], &xi1[x], &xw0[x], &xw1[x]);
    for (int y = 0; y < h; y++) taps(m->d * (float)y + m->f, h, &yi0[y], &yi1[y], &yw0[y], &yw1[y]);
    for (int ch = 0; ch < c; ch++) {
        const uint8_t *s = src + (size_t)ch * (size_t)h * (size_t)w; /* (H, W) */
        float *d = dst + (size_t)ch * (size_t)h * (size_t)w;         /* (H, W) */
        int ra = -1, rb = -1;  /* source rows held in rowa, rowb */
        for (int y = 0; y < h; y++) {
            int r0 = yi0[y], r1 = yi1[y];
            /* bring rows r0 and r1 into (rowa, rowb), reusing what is there */
            if (ra != r0) {
                if (rb == r0) {
                    float *t = rowa;
                    rowa = rowb;
                    rowb = t;
                    ra = rb;
                    rb = -1;
                } else {
                    const uint8_t *sr = s + (size_t)r0 * (size_t)w;
                    for (int x = 0; x < w; x++) rowa[x] = xw0[x] * sr[xi0[x]] + xw1[x] * sr[xi1[x]];
                    ra = r0;
                }
            }
            if (rb != r1) {
                const uint8_t *sr = s + (size_t)r1 * (size_t)w;
                for (int x = 0; x < w; x++) rowb[x] = xw0[x] * sr[xi0[x]] + xw1[x] * sr[xi1[x]];
                rb = r1;
            }
            float w0 = yw0[y], w1 = yw1[y];
            float *o = d + (size_t)y * (size_t)w;
            for (int x = 0; x < w; x++) o[x] = w0 * rowa[x] + w1 * rowb[x];
        }
    }
}

/* General (rotated) resampling, bilinear with zeros outside. */
static void resample_general(const affine *m, const uint8_t *src, int c, int h, int w, float *dst)
{
    size_t hw = (size_t)h * (size_t)w;
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            int x0, x1, y0, y1;
            float wx0, wx1, wy0, wy1;
            taps(m->a * (float)x + m->b * (float)y + m->e, w, &x0, &x1, &wx0, &wx1);
            taps(m->c * (float)x + m->d * (float)y + m->f, h, &y0, &y1, &wy0, &wy1);
            for (int ch = 0; ch < c; ch++) {
                const uint8_t *s = src + (size_t)ch * hw;
                float top = wx0 * s[y0 * w + x0] + wx1 * s[y0 * w + x1];
                float bot = wx0 * s[y1 * w + x0] + wx1 * s[y1 * w + x1];
                dst[(size_t)ch * hw + (size_t)y * (size_t)w + (size_t)x] = wy0 * top + wy1 * bot;
            }
        }
}

/* Contract (augment.h). */
void dlt_augment_sample(const dlt_augment_cfg *a, uint64_t key, const uint8_t *src, int c, int h,
                        int w, const float *mean, const float *std, float *dst, void *scratch)
{
    size_t hw = (size_t)h * (size_t)w, n = (size_t)c * hw;
    static const dlt_augment_cfg none;
    if (!a) a = &none;
    affine m = sample_map(a, key, h, w);
    if (m.b == 0 && m.c == 0)
        resample_separable(&m, src, c, h, w, dst, scratch);
    else
        resample_general(&m, src, c, h, w, dst);

    if (a->brightness > 0 || a->contrast > 0) {
        float bf = 1.0f + a->brightness * (2 * dlt_rand_u01(key, U_BRIGHT) - 1);
        float cf = 1.0f + a->contrast * (2 * dlt_rand_u01(key, U_CONTRAST) - 1);
        double sum = 0;
        for (size_t i = 0; i < n; i++) sum += dst[i];
        float mu = (float)(sum / (double)n) * bf;
        for (size_t i = 0; i < n; i++) {
            float v = (dst[i] * bf - mu) * cf + mu;
            dst[i] = v < 0 ? 0 : v > 255 ? 255 : v;
        }
    }
    for (int ch = 0; ch < c; ch++) {
        float mu = mean ? mean[ch] : 0.0f, sd = std ? std[ch] : 1.0f;
        float *d = dst + (size_t)ch * hw;
        for (size_t i = 0; i < hw; i++) d[i] = (d[i] / 255.0f - mu) / sd;
    }
    if (a->noise_std > 0) {
        uint64_t nk = dlt_hash_combine(key, NOISE_KEY);
        for (size_t i = 0; i < n; i += 2) {
            float u1 = 1.0f - dlt_rand_u01(nk, i), u2 = dlt_rand_u01(nk, i + 1);
            float r = a->noise_std * sqrtf(-2.0f * logf(u1)), t = 6.28318530718f * u2;
            size_t ch0 = i / hw, ch1 = (i + 1) / hw;
            dst[i] += r * cosf(t) / (std ? std[ch0] : 1.0f);
            if (i + 1 < n) dst[i + 1] += r * sinf(t) / (std ? std[ch1] : 1.0f);
        }
    }
    if (a->cutout > 0) {
        int cx = (int)(dlt_rand_u01(key, U_CUTX) * (float)w), cy = (int)(dlt_rand_u01(key, U_CUTY) * (float)h);
        int x0 = cx - a->cutout / 2, y0 = cy - a->cutout / 2;
        int x1 = x0 + a->cutout, y1 = y0 + a->cutout;
        x0 = x0 < 0 ? 0 : x0;
        y0 = y0 < 0 ? 0 : y0;
        x1 = x1 > w ? w : x1;
        y1 = y1 > h ? h : y1;
        for (int ch = 0; ch < c; ch++)
            for (int y = y0; y < y1; y++)
                if (x1 > x0) memset(dst + (size_t)ch * hw + (size_t)y * (size_t)w + x0, 0, (size_t)(x1 - x0) * sizeof(float));
    }
}
