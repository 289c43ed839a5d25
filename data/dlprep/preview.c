/* `dlprep preview` and `dlprep scan`: look at and time the input pipeline.
 *
 *   dlprep preview CONFIG.yaml|SHARDS OUT.png [--n 64] [--epoch E]
 *   dlprep scan SHARDS [--batch 64] [--threads T] [--prefetch D]
 *               [--augment flip,rrc,crop,rotate,jitter,noise,cutout]
 *               [--shuffle-block N] [--max-steps S] [--cache-mb M] [--max-open F]
 *
 * preview draws the first n samples of an epoch's training order as the
 * network sees them, after the config's data.augment.* (shards alone: no
 * augmentation), without the mean/std normalisation so the picture shows
 * pixels; one tile per sample in a near-square grid with a 2-pixel gap,
 * grey images as grey, the first three channels as RGB. It reads the YAML
 * with the trainer's own config loader, so the keys mean exactly what they
 * mean in training.
 *
 * scan reads one epoch through the real loader (streaming reader, sampler,
 * prefetch threads, augmentation) and prints one line: samples, seconds,
 * samples/s, MiB/s of decoded pixels, peak resident memory and blocks read.
 * It is what bench/loader.sh times and what the streaming memory test runs
 * under an address-space limit; it also proves every chunk decodes. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "data/data.h"
#include "data/dlprep/dlprep.h"
#include "launcher/config.h"

static int usage(const char *msg, const char *arg)
{
    fprintf(stderr, "dlprep: ");
    fprintf(stderr, msg, arg);
    fprintf(stderr, " (see dlprep --help)\n");
    return 2;
}

static int fail(void)
{
    fprintf(stderr, "dlprep: %s\n", dlt_last_error());
    return 1;
}

/* "--name V" or "--name=V" at argv[*i]; advances *i past the value. */
static const char *opt(int argc, char **argv, int *i, const char *name)
{
    size_t l = strlen(name);
    if (strncmp(argv[*i], name, l)) return NULL;
    if (argv[*i][l] == '=') return argv[*i] + l + 1;
    if (argv[*i][l] || *i + 1 >= argc) return NULL;
    return argv[++*i];
}

static int is_yaml(const char *p)
{
    size_t l = strlen(p);
    return (l > 5 && !strcmp(p + l - 5, ".yaml")) || (l > 4 && !strcmp(p + l - 4, ".yml"));
}

/* Contract (dlprep.h): the preview command; returns the exit status. */
int dlt_prep_cmd_preview(int argc, char **argv)
{
    const char *pos[2] = { NULL, NULL };
    int npos = 0;
    long n = 64, epoch = 0;
    for (int i = 0; i < argc; i++) {
        const char *v;
        char *end;
        if ((v = opt(argc, argv, &i, "--n"))) {
            n = strtol(v, &end, 10);
            if (*end || n < 1 || n > 4096) return usage("--n must be in 1..4096, got '%s'", v);
        } else if ((v = opt(argc, argv, &i, "--epoch"))) {
            epoch = strtol(v, &end, 10);
            if (*end || epoch < 0) return usage("--epoch must be >= 0, got '%s'", v);
        } else if (argv[i][0] == '-' && argv[i][1] == '-') {
            return usage("unknown option '%s' for preview", argv[i]);
        } else if (npos < 2) {
            pos[npos++] = argv[i];
        } else {
            return usage("unexpected argument '%s'", argv[i]);
        }
    }
    if (npos != 2) return usage("preview needs CONFIG.yaml or SHARDS, and OUT.png%s", "");

    static dlt_config cfg;
    dlt_augment_cfg aug = { 0 };
    const char *shards = pos[0];
    uint64_t seed = 42;
    if (is_yaml(pos[0])) {
        if (dlt_config_load(pos[0], NULL, 0, &cfg) != DLT_OK) return fail();
        shards = cfg.train_data;
        seed = cfg.seed;
        aug = cfg.augment;
        if (cfg.n_aug_scale == 2) aug.scale_min = cfg.aug_scale[0], aug.scale_max = cfg.aug_scale[1];
        if (cfg.n_aug_ratio == 2) aug.ratio_min = cfg.aug_ratio[0], aug.ratio_max = cfg.aug_ratio[1];
    }
    dlt_dataset_t ds;
    if (dlt_dataset_open(shards, &ds) != DLT_OK) return fail();
    int c, h, w;
    dlt_dataset_shape(ds, &c, &h, &w);
    int64_t total = dlt_dataset_size(ds);
    if (n > total) n = (long)total;
    if (dlt_augment_check(&aug, h, w) != DLT_OK) {
        dlt_dataset_close(ds);
        return fail();
    }
    int cols = (int)ceil(sqrt((double)n)), rows = (int)((n + cols - 1) / cols), gap = 2;
    int gw = cols * (w + gap) + gap, gh = rows * (h + gap) + gap;
    size_t sb = (size_t)c * (size_t)h * (size_t)w;
    int64_t *perm = malloc((size_t)total * sizeof *perm);
    uint8_t *raw = malloc(sb), *grid = malloc((size_t)gw * (size_t)gh * 3);
    float *x = malloc(sb * sizeof *x);
    void *scratch = malloc(dlt_augment_scratch_bytes(c, h, w));
    int rc = 0;
    if (!perm || !raw || !grid || !x || !scratch) {
        fprintf(stderr, "dlprep: out of memory for a %dx%d preview\n", gw, gh);
        rc = 1;
        goto done;
    }
    memset(grid, 40, (size_t)gw * (size_t)gh * 3);
    dlt_sampler_permutation(seed, epoch, total, perm);
    for (long i = 0; i < n; i++) {
        if (dlt_dataset_read(ds, &perm[i], 1, raw, NULL) != DLT_OK) {
            rc = fail();
            goto done;
        }
        dlt_augment_sample(&aug, dlt_augment_key(seed, epoch, perm[i]), raw, c, h, w, NULL, NULL, x,
                           scratch);
        int ox = gap + (int)(i % cols) * (w + gap), oy = gap + (int)(i / cols) * (h + gap);
        for (int y = 0; y < h; y++)
            for (int xx = 0; xx < w; xx++)
                for (int k = 0; k < 3; k++) {
                    int ch = c >= 3 ? k : c == 1 ? 0 : k;
                    float v = ch < c ? x[((size_t)ch * h + y) * w + xx] : 0.0f;
                    v = v < 0 ? 0 : v > 1 ? 1 : v;
                    grid[(((size_t)(oy + y)) * gw + (size_t)(ox + xx)) * 3 + k] = (uint8_t)lrintf(v * 255.0f);
                }
    }
    if (dlt_prep_png_write(pos[1], gw, gh, grid) != DLT_OK) {
        rc = fail();
        goto done;
    }
    printf("preview: %ld samples of [%d, %d, %d] from %s%s -> %s (%dx%d)\n", n, c, h, w,
           dlt_dataset_path(ds), dlt_augment_active(&aug) ? ", augmented" : "", pos[1], gw, gh);
done:
    free(perm);
    free(raw);
    free(grid);
    free(x);
    free(scratch);
    dlt_dataset_close(ds);
    return rc;
}

/* --augment list -> cfg; 0 on an unknown name. */
static int parse_augment(const char *s, dlt_augment_cfg *a)
{
    char buf[256];
    snprintf(buf, sizeof buf, "%s", s);
    for (char *t = strtok(buf, ","); t; t = strtok(NULL, ",")) {
        if (!strcmp(t, "flip")) a->hflip = 0.5f;
        else if (!strcmp(t, "rrc")) a->scale_min = 0.08f, a->scale_max = 1.0f;
        else if (!strcmp(t, "crop")) a->crop_pad = 4;
        else if (!strcmp(t, "rotate")) a->rotate = 15;
        else if (!strcmp(t, "jitter")) a->brightness = 0.4f, a->contrast = 0.4f;
        else if (!strcmp(t, "noise")) a->noise_std = 0.05f;
        else if (!strcmp(t, "cutout")) a->cutout = 8;
        else if (strcmp(t, "none")) return 0;
    }
    return 1;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Contract (dlprep.h): the scan command; returns the exit status. */
int dlt_prep_cmd_scan(int argc, char **argv)
{
    const char *shards = NULL;
    long batch = 64, threads = 1, prefetch = 2, block = 0, max_steps = 0, cache_mb = 0, max_open = 0;
    dlt_augment_cfg aug = { 0 };
    struct { const char *name; long *v; long lo, hi; } nums[] = {
        { "--batch", &batch, 1, 1 << 20 },       { "--threads", &threads, 0, 64 },
        { "--prefetch", &prefetch, 0, 64 },      { "--shuffle-block", &block, 0, 1L << 40 },
        { "--max-steps", &max_steps, 0, 1L << 40 }, { "--cache-mb", &cache_mb, 0, 1 << 20 },
        { "--max-open", &max_open, 0, 1 << 20 },
    };
    for (int i = 0; i < argc; i++) {
        const char *v = NULL;
        int done = 0;
        for (size_t k = 0; k < sizeof nums / sizeof nums[0] && !done; k++) {
            if (!(v = opt(argc, argv, &i, nums[k].name))) continue;
            char *end;
            *nums[k].v = strtol(v, &end, 10);
            if (*end || *nums[k].v < nums[k].lo || *nums[k].v > nums[k].hi)
                return usage("bad value '%s' for a scan option", v);
            done = 1;
        }
        if (done) continue;
        if ((v = opt(argc, argv, &i, "--augment"))) {
            if (!parse_augment(v, &aug))
                return usage("--augment takes flip,rrc,crop,rotate,jitter,noise,cutout,none; got '%s'", v);
        } else if (argv[i][0] == '-' && argv[i][1] == '-') {
            return usage("unknown option '%s' for scan", argv[i]);
        } else if (!shards) {
            shards = argv[i];
        } else {
            return usage("unexpected argument '%s'", argv[i]);
        }
    }
    if (!shards) return usage("scan needs SHARDS (a glob)%s", "");
    dlt_dataset_t ds;
    if (dlt_dataset_open(shards, &ds) != DLT_OK) return fail();
    int c, h, w;
    dlt_dataset_shape(ds, &c, &h, &w);
    dlt_loader_t l = NULL;
    int rc = 0;
    float mean[4] = { 0.5f, 0.5f, 0.5f, 0.5f }, std[4] = { 0.25f, 0.25f, 0.25f, 0.25f };
    dlt_loader_cfg lc = { .global_batch = (int)batch, .world = 1, .seed = 1, .shuffle = 1,
                          .channels = c, .mean = c <= 4 ? mean : NULL, .std = c <= 4 ? std : NULL,
                          .shuffle_block = block, .prefetch = threads ? (int)prefetch : 0,
                          .threads = (int)threads, .augment = &aug };
    if ((cache_mb || max_open) &&
        dlt_dataset_set_limits(ds, (int)max_open, (size_t)cache_mb << 20) != DLT_OK) {
        rc = fail();
        goto done;
    }
    if (dlt_loader_init(ds, &lc, &l) != DLT_OK || dlt_loader_start_epoch(l, 0) != DLT_OK) {
        rc = fail();
        goto done;
    }
    int64_t samples = 0, steps = 0;
    double t0 = now_s();
    for (;;) {
        const float *x;
        const int32_t *y;
        int n, gn;
        int64_t s0;
        if (dlt_loader_next_ref(l, &x, &y, &n, &s0, &gn) != DLT_OK) {
            rc = fail();
            goto done;
        }
        if (gn == 0) break;
        samples += n;
        if (max_steps && ++steps >= max_steps) break;
    }
    double dt = now_s() - t0;
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("scan: %lld samples of [%d, %d, %d] in %.3f s: %.0f samples/s, %.1f MiB/s, "
           "peak RSS %.0f MiB, blocks read %lld, threads %ld\n",
           (long long)samples, c, h, w, dt, (double)samples / dt,
           (double)samples * (double)c * h * w / dt / 1048576.0, (double)ru.ru_maxrss / 1024.0,
           (long long)dlt_dataset_blocks_read(ds), threads);
done:
    dlt_loader_free(l);
    dlt_dataset_close(ds);
    return rc;
}
