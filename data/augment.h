/* Per-sample image augmentation: uint8 (C, H, W) in, normalised float
 * (C, H, W) out, the same shape.
 *
 * Every random choice is a pure function of (seed, epoch, sample index):
 * the same sample in the same epoch gets the same crop whatever the rank,
 * thread or prefetch depth, so runs are reproducible and resumable. Random
 * parts (each off at its zero value), applied in this order:
 *   geometry, one bilinear resampling: random resized crop (zoom), random
 *     crop with zero padding, translation, rotation, horizontal flip;
 *   photometric: brightness and contrast factors, Gaussian noise;
 *   normalisation (pixel/255 - mean[c]) / std[c] (always);
 *   cutout: a square set to 0 (the normalised mean).
 * Evaluation passes no augmentation (NULL), which is normalisation only. */
#ifndef DLT_AUGMENT_H
#define DLT_AUGMENT_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

typedef struct {
    int crop_pad;          /* random crop of the image padded by this many zero pixels a side */
    float scale_min;       /* random resized crop: area fraction in [scale_min, scale_max]; */
    float scale_max;       /*   0, 0: off */
    float ratio_min;       /* aspect ratio range (w/h, log-uniform); 0, 0: [3/4, 4/3] */
    float ratio_max;
    float hflip;           /* probability of a horizontal flip */
    float rotate;          /* uniform angle in [-rotate, +rotate] degrees */
    float translate;       /* shift up to this fraction of W and H, each direction */
    float brightness;      /* pixel factor uniform in [1-b, 1+b] */
    float contrast;        /* blend with the image mean, factor uniform in [1-c, 1+c] */
    float noise_std;       /* Gaussian noise, std in pixel/255 units */
    int cutout;            /* side of a zeroed square at a random centre; 0: off */
} dlt_augment_cfg;

/* 1 if any random part of a is on (a may be NULL). */
int dlt_augment_active(const dlt_augment_cfg *a);

/* DLT_ERR_INVALID with the key at fault if a value is out of range. */
dlt_status dlt_augment_check(const dlt_augment_cfg *a, int h, int w);

/* Bytes of scratch dlt_augment_sample needs for (C, H, W) images. */
size_t dlt_augment_scratch_bytes(int c, int h, int w);

/* One sample: src (C, H, W) uint8 -> dst (C, H, W) float. a NULL: only
 * normalisation. mean/std (C) or NULL for 0/1. key = dlt_augment_key(...).
 * scratch has dlt_augment_scratch_bytes bytes. Never allocates. */
void dlt_augment_sample(const dlt_augment_cfg *a, uint64_t key, const uint8_t *src, int c, int h,
                        int w, const float *mean, const float *std, float *dst, void *scratch);

/* The inverse geometric map of one sample: output pixel (x, y) reads the
 * source bilinearly at (a*x + b*y + e, c*x + d*y + f), pixel centres at
 * integers, zeros outside. b = c = 0 unless it rotates. a NULL: identity.
 * (What dlt_augment_sample resamples with; tests check against it.) */
typedef struct {
    float a, b, e;
    float c, d, f;
} dlt_augment_map;
void dlt_augment_geometry(const dlt_augment_cfg *a, uint64_t key, int h, int w, dlt_augment_map *m);

/* The per-sample key: (seed, epoch, index of the sample in the data set). */
uint64_t dlt_augment_key(uint64_t seed, int64_t epoch, int64_t sample);

#endif
