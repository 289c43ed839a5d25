/* `dlprep synthetic`: random but learnable image data sets for tests and
 * benchmarks, in the same shard format as real data.
 *
 * Each class k owns, per channel, a sinusoidal grating
 *   g(y, x) = sin(fy*y + fx*x + phase)
 * with its own frequencies and phase; a sample of class k is its grating,
 * shifted by up to 2 pixels in y and x, mixed 70/30 with uniform noise. A
 * small CNN learns 10 classes of 1x28x28 to ~100% test accuracy in two
 * epochs, a linear model only to ~50% (the shifts defeat a fixed template),
 * and a broken training step not at all, which is what tests need.
 *
 * Everything is a pure function of (seed, global sample index), so a data
 * set is reproducible across runs and shard sizes; test samples continue the
 * index after the train samples, so the splits never share a sample. The
 * grating is evaluated from precomputed row/column sines and cosines
 * (sin(a+b) = sin a cos b + cos a sin b), so generation costs two multiplies
 * a pixel and memory O(classes * C * (H + W)). */
#include "data/dlprep/dlprep.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "core/rng.h"

#define SYNTH_KEY 0x53594e5448ULL   /* "SYNTH" */
#define SHIFT 2                      /* max shift in pixels */

typedef struct {
    const dlt_prep_synth_cfg *cfg;
    uint64_t key;
    int64_t index0;   /* global index of the split's sample 0 */
    int gh, gw;       /* grid with margins: H + 2*SHIFT, W + 2*SHIFT */
    float *sy, *cy;   /* (classes, C, gh) sin/cos of fy*y + phase */
    float *sx, *cx;   /* (classes, C, gw) sin/cos of fx*x */
} synth;

static dlt_status synth_fill(void *ctx, int64_t first, int64_t n, uint8_t *images, int64_t *labels)
{
    const synth *s = ctx;
    const dlt_prep_synth_cfg *cfg = s->cfg;
    size_t hw = (size_t)cfg->h * (size_t)cfg->w;
    for (int64_t i = 0; i < n; i++) {
        uint64_t g = (uint64_t)(s->index0 + first + i);
        dlt_rng r = dlt_rng_make(dlt_hash_combine(s->key, g));
        int k = (int)dlt_rng_below(&r, (uint64_t)cfg->classes);
        int dy = (int)dlt_rng_below(&r, 2 * SHIFT + 1), dx = (int)dlt_rng_below(&r, 2 * SHIFT + 1);
        uint64_t noise_key = dlt_rng_u64(&r);
        uint8_t *img = images + (size_t)i * (size_t)cfg->c * hw; /* (C, H, W) */
        for (int c = 0; c < cfg->c; c++) {
            size_t cls = (size_t)k * (size_t)cfg->c + (size_t)c;
            const float *sy = s->sy + cls * (size_t)s->gh, *cy = s->cy + cls * (size_t)s->gh;
            const float *sx = s->sx + cls * (size_t)s->gw, *cx = s->cx + cls * (size_t)s->gw;
            for (int y = 0; y < cfg->h; y++)
                for (int x = 0; x < cfg->w; x++) {
                    size_t p = (size_t)c * hw + (size_t)y * (size_t)cfg->w + (size_t)x;
                    float grating = sy[y + dy] * cx[x + dx] + cy[y + dy] * sx[x + dx];
                    float v = 0.7f * (0.5f + 0.45f * grating) + 0.3f * dlt_rand_u01(noise_key, p);
                    v = v < 0.0f ? 0.0f : v > 1.0f ? 1.0f : v;
                    img[p] = (uint8_t)lrintf(v * 255.0f);
                }
        }
        labels[i] = k;
    }
    return DLT_OK;
}

/* Draws each class's frequencies and phase and tabulates the gratings. */
static dlt_status synth_init(synth *s, const dlt_prep_synth_cfg *cfg)
{
    s->cfg = cfg;
    s->key = dlt_hash_combine(cfg->seed, SYNTH_KEY);
    s->gh = cfg->h + 2 * SHIFT;
    s->gw = cfg->w + 2 * SHIFT;
    size_t kc = (size_t)cfg->classes * (size_t)cfg->c;
    s->sy = malloc(kc * (size_t)s->gh * sizeof(float));
    s->cy = malloc(kc * (size_t)s->gh * sizeof(float));
    s->sx = malloc(kc * (size_t)s->gw * sizeof(float));
    s->cx = malloc(kc * (size_t)s->gw * sizeof(float));
    if (!s->sy || !s->cy || !s->sx || !s->cx)
        return DLT_ERR(DLT_ERR_NOMEM, "out of memory for %d classes", cfg->classes);
    /* Classes draw from a stream of their own, so adding samples never changes them. */
    dlt_rng r = dlt_rng_make(dlt_hash_combine(s->key, UINT64_MAX));
    for (size_t kcix = 0; kcix < kc; kcix++) {
        /* Between one period per 20 pixels and one per 4, in either direction. */
        double fy = (0.3 + 1.3 * dlt_rng_uniform(&r)) * (dlt_rng_below(&r, 2) ? 1 : -1);
        double fx = (0.3 + 1.3 * dlt_rng_uniform(&r)) * (dlt_rng_below(&r, 2) ? 1 : -1);
        double phase = 6.283185307179586 * dlt_rng_uniform(&r);
        for (int y = 0; y < s->gh; y++) {
            s->sy[kcix * (size_t)s->gh + (size_t)y] = (float)sin(fy * y + phase);
            s->cy[kcix * (size_t)s->gh + (size_t)y] = (float)cos(fy * y + phase);
        }
        for (int x = 0; x < s->gw; x++) {
            s->sx[kcix * (size_t)s->gw + (size_t)x] = (float)sin(fx * x);
            s->cx[kcix * (size_t)s->gw + (size_t)x] = (float)cos(fx * x);
        }
    }
    return DLT_OK;
}

static void synth_free(synth *s)
{
    free(s->sy);
    free(s->cy);
    free(s->sx);
    free(s->cx);
}

/* Contract (dlprep.h): writes cfg->n train samples and cfg->test_n test
 * samples (none if 0) to out->outdir; DLT_ERR_INVALID for a bad cfg. */
dlt_status dlt_prep_synthetic(const dlt_prep_out *out, const dlt_prep_synth_cfg *cfg)
{
    if (cfg->n < 1 || cfg->test_n < 0 || cfg->classes < 1 || cfg->c < 1 || cfg->h < 1 || cfg->w < 1)
        return DLT_ERR(DLT_ERR_INVALID, "synthetic: n, classes and shape must be positive");
    dlt_status st = DLT_OK;
    synth s = { 0 };
    char **names = calloc((size_t)cfg->classes, sizeof *names);
    char source[256];
    if (!names) return DLT_ERR(DLT_ERR_NOMEM, "out of memory for %d class names", cfg->classes);
    DLT_CHECK_GOTO(synth_init(&s, cfg), st, done);
    for (int k = 0; k < cfg->classes; k++) {
        names[k] = malloc(24);
        if (!names[k]) {
            st = DLT_ERR(DLT_ERR_NOMEM, "out of memory for class names");
            goto done;
        }
        snprintf(names[k], 24, "class-%d", k);
    }
    snprintf(source, sizeof source, "dlprep synthetic --seed %llu --classes %d (%s)",
             (unsigned long long)cfg->seed, cfg->classes, "grating + noise");
    const char *splits[2] = { "train", "test" };
    int64_t counts[2] = { cfg->n, cfg->test_n };
    for (int i = 0; i < 2; i++) {
        if (counts[i] == 0) continue;
        s.index0 = i == 0 ? 0 : cfg->n;
        dlt_prep_split sp = {
            /* .split       = */ splits[i],
            /* .n           = */ counts[i],
            /* .c, .h, .w   = */ cfg->c, cfg->h, cfg->w,
            /* .class_names = */ (const char *const *)names,
            /* .n_classes   = */ cfg->classes,
            /* .source      = */ source,
            /* .fill        = */ synth_fill,
            /* .ctx         = */ &s,
        };
        int shards = 0;
        DLT_CHECK_GOTO(dlt_prep_write_split(out, &sp, &shards), st, done);
        printf("dlprep: %s: %lld samples of [%d, %d, %d], %d classes, in %d shard(s) %s/%s-*.h5\n",
               splits[i], (long long)counts[i], cfg->c, cfg->h, cfg->w, cfg->classes, shards,
               out->outdir, splits[i]);
    }
done:
    for (int k = 0; names && k < cfg->classes; k++) free(names[k]);
    free(names);
    synth_free(&s);
    return st;
}
