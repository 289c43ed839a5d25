/* Per-sample augmentation (augment.h).
 *
 * Design. All geometric parts compose into one inverse affine map from an
 * output pixel (x, y) to a source position (sx, sy), sampled bilinearly with
 * zeros outside the image, so a sample is resampled once however many parts
 * are on. The map is applied in this order from the output back to the
 * source: flip, rotation about the centre, integer shifts (crop padding,
 * translation), the resized-crop box. When nothing rotates, the map is
 * separable (sx depends on x only, sy on y only), which is the fast path and
 * the one the loader's random resized crop + flip takes: per-column and
 * per-row source indices and weights are computed once per sample (the flip
 * is just a decreasing column index), each needed source row is widened to
 * float and resampled horizontally once (two gathers a pixel) into a small
 * per-thread scratch row, kept while successive output rows use it (most
 * rows when a crop is zoomed in), and each output row is one vertical blend
 * of two such rows with the normalisation folded into the blend weights.
 * The loops are plain C that -O3 -march=native vectorises. A map that moves
 * whole pixels only (identity, flips, padded crops, translations) has
 * weights exactly 1 and 0 and is normalised separately, as the loader does
 * without augmentation, so those reproduce pixels bit-exactly. Rotation
 * takes the general path: per-pixel bilinear taps.
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
#include <stdint.h>
#include <string.h>

#include "core/rng.h"

#define AUG_KEY 0x4155474d454e54ULL   /* "AUGMENT" */
#define NOISE_KEY 0x4e4f495345ULL     /* "NOISE" */

/* Slots of the per-sample draws. */
enum { U_FLIP, U_ROT, U_TX, U_TY, U_PX, U_PY, U_BRIGHT, U_CONTRAST, U_CUTX, U_CUTY, U_RRC = 16 };

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

/* Scratch of the separable path (resample_separable), each array aligned to
 * 64 bytes: column taps xi, xw0, xw1 (W), row taps yi, yw0, yw1 (H), the
 * zero-padded source row (W + 2) and two horizontally resampled rows (W). */
static size_t al64(size_t n) { return (n + 63) & ~(size_t)63; }

size_t dlt_augment_scratch_bytes(int c, int h, int w)
{
    size_t W = (size_t)w, H = (size_t)h;
    return 3 * al64(W * 4) + 3 * al64(H * 4) + al64((W + 2) * 4) + 2 * al64(W * 4) + 64;
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

/* Contract (augment.h); the order of the parts is in the file comment. */
void dlt_augment_geometry(const dlt_augment_cfg *a, uint64_t key, int h, int w, dlt_augment_map *out)
{
    static const dlt_augment_cfg none;
    if (!a) a = &none;
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
    dlt_augment_map m;
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
    *out = m;
}

/* Taps of one axis of the general path: position p -> indices i0, i1
 * clamped into [0, n) and weights, a weight 0 where the tap falls outside
 * (zero padding). */
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

/* Taps of one axis of the separable path, for outputs i in [0, m) at
 * source positions a*i + e of a line of n pixels. Positions are evaluated in
 * double, so the weights do not depend on how the compiler contracts a*i + e
 * (the reference in the tests does the same). The line is read zero-padded:
 * index 0 and n + 1 are zeros, pixel k is at k + 1; output i blends padded
 * pixels idx[i] and idx[i] + 1 with w0[i], w1[i], so taps straddling an edge
 * need no branch, and taps wholly outside get weights 0. Returns 1 if every
 * weight is exactly 0 or 1 (the map only moves whole pixels). */
static int axis_taps(double a, double e, int m, int n, int32_t *idx, float *w0, float *w1)
{
    int whole = 1;
    for (int i = 0; i < m; i++) {
        double p = a * (double)i + e, fl = floor(p);
        float f = (float)(p - fl);
        if (fl < -1.0 || fl > (double)(n - 1)) {
            idx[i] = 0;
            w0[i] = w1[i] = 0.0f;
        } else {
            idx[i] = (int32_t)fl + 1;
            w0[i] = 1.0f - f;
            w1[i] = f;
        }
        whole &= w1[i] == 0.0f && (w0[i] == 0.0f || w0[i] == 1.0f);
    }
    return whole;
}

/* The separable path's tables and rows, carved out of the caller's scratch. */
typedef struct {
    int32_t *xi, *yi;      /* (W), (H) padded indices */
    float *xw0, *xw1;      /* (W) */
    float *yw0, *yw1;      /* (H) */
    float *line;           /* (W + 2) one source row as floats, zero-padded */
    float *row[2];         /* (W) horizontally resampled rows */
    int key[2];            /* padded source row held by row[k]; -1: none */
    int last;              /* row[] slot used last */
} sep;

static void sep_layout(sep *t, void *scratch, int h, int w)
{
    uintptr_t p = ((uintptr_t)scratch + 63) & ~(uintptr_t)63;
    size_t W = al64((size_t)w * 4), H = al64((size_t)h * 4);
    t->xi = (int32_t *)p;
    t->xw0 = (float *)(p += W);
    t->xw1 = (float *)(p += W);
    t->yi = (int32_t *)(p += W);
    t->yw0 = (float *)(p += H);
    t->yw1 = (float *)(p += H);
    t->line = (float *)(p += H);
    t->row[0] = (float *)(p += al64(((size_t)w + 2) * 4));
    t->row[1] = (float *)(p + W);
}

/* out (W) = w0 * line[idx] + w1 * line[idx + 1]: the horizontal pass, a
 * loop of two gathers and a blend that -O3 -march=native vectorises (the
 * flip is only a decreasing idx). */
static void hpass(const float *restrict line, const int32_t *restrict idx, const float *restrict w0,
                  const float *restrict w1, float *restrict out, int w)
{
    for (int x = 0; x < w; x++) out[x] = w0[x] * line[idx[x]] + w1[x] * line[idx[x] + 1];
}

/* out (W) = a0 * ra + a1 * rb + bias: the vertical pass with the
 * normalisation folded into a0, a1 and bias. */
static void vpass(const float *restrict ra, const float *restrict rb, float a0, float a1, float bias,
                  float *restrict out, int w)
{
    for (int x = 0; x < w; x++) out[x] = a0 * ra[x] + a1 * rb[x] + bias;
}

/* The horizontally resampled padded source row r of plane s (H, W), from
 * the two-row cache: successive output rows of an upscaling crop mostly
 * reuse both rows, so each source row is resampled about once a plane. */
static const float *sep_row(sep *t, const uint8_t *s, int h, int w, int r)
{
    for (int k = 0; k < 2; k++)
        if (t->key[k] == r) {
            t->last = k;
            return t->row[k];
        }
    int k = 1 - t->last;
    float *o = t->row[k];
    if (r == 0 || r == h + 1) {
        memset(o, 0, (size_t)w * sizeof *o);
    } else {
        const uint8_t *restrict sr = s + (size_t)(r - 1) * (size_t)w;
        float *restrict ln = t->line + 1;
        for (int x = 0; x < w; x++) ln[x] = (float)sr[x];
        hpass(t->line, t->xi, t->xw0, t->xw1, o, w);
    }
    t->key[k] = r;
    t->last = k;
    return o;
}

/* Separable resampling of all channels into dst (C, H, W): pixel values,
 * or, when norm, already normalised ((v/255 - mean) / std folded into the
 * vertical weights). The tables in t are filled. */
static void resample_separable(sep *t, const uint8_t *src, int c, int h, int w, int norm,
                               const float *mean, const float *std, float *dst)
{
    size_t hw = (size_t)h * (size_t)w;
    t->line[0] = t->line[w + 1] = 0.0f;
    for (int ch = 0; ch < c; ch++) {
        const uint8_t *s = src + (size_t)ch * hw;  /* (H, W) */
        float *d = dst + (size_t)ch * hw;          /* (H, W) */
        float sd = std ? std[ch] : 1.0f, mu = mean ? mean[ch] : 0.0f;
        float scale = norm ? (float)(1.0 / (255.0 * (double)sd)) : 1.0f;
        float bias = norm ? (float)(-(double)mu / (double)sd) : 0.0f;
        t->key[0] = t->key[1] = -1;
        t->last = 1;
        for (int y = 0; y < h; y++) {
            int r = t->yi[y];
            float w0 = t->yw0[y], w1 = t->yw1[y];
            const float *ra = sep_row(t, s, h, w, r);
            const float *rb = w1 != 0.0f ? sep_row(t, s, h, w, r + 1) : ra;
            vpass(ra, rb, w0 * scale, w1 * scale, bias, d + (size_t)y * (size_t)w, w);
        }
    }
}

/* General (rotated) resampling, bilinear with zeros outside: pixel values. */
static void resample_general(const dlt_augment_map *m, const uint8_t *src, int c, int h, int w,
                             float *dst)
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
    dlt_augment_map m;
    dlt_augment_geometry(a, key, h, w, &m);
    int photometric = a->brightness > 0 || a->contrast > 0;
    int normalised = 0;   /* dst already normalised by the fused vertical pass */
    if (m.b == 0 && m.c == 0) {
        sep t;
        sep_layout(&t, scratch, h, w);
        int whole = axis_taps(m.a, m.e, w, w, t.xi, t.xw0, t.xw1);
        whole &= axis_taps(m.d, m.f, h, h, t.yi, t.yw0, t.yw1);
        /* Whole-pixel maps keep the separate normalisation below, so flips,
         * pad crops and identities equal the loader's plain normalisation
         * bit for bit; photometric parts need pixel values first. */
        normalised = !whole && !photometric;
        resample_separable(&t, src, c, h, w, normalised, mean, std, dst);
    } else {
        resample_general(&m, src, c, h, w, dst);
    }

    if (photometric) {
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
    for (int ch = 0; ch < c && !normalised; ch++) {
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
