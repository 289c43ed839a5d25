/* `dltrain train CONFIG --dry-run`: check everything, train nothing.
 *
 * Design. The trainer runs its normal set-up (config, data, model: so the
 * checks are exactly the ones a real run makes, and memory really is
 * allocated once), then calls dlt_dry_run instead of opening the run
 * directory. This file only reports: shard by shard sizes read from the
 * HDF5 headers, how the global batch splits over the ranks and what
 * happens to the last partial batch, the model table with memory per
 * buffer, and the rank-to-device map gathered from every rank. Nothing is
 * written. */
#include "launcher/dryrun.h"

#include <glob.h>
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/device.h"

int dlt_train_flags(int argc, char **argv, int *dry_run)
{
    static char resume[DLT_PATH_LEN + 32]; /* argv entries must outlive the call */
    int out = 0;
    *dry_run = 0;
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--dry-run")) {
            *dry_run = 1;
        } else if (!strcmp(argv[i], "--resume") && i + 1 < argc) {
            snprintf(resume, sizeof resume, "checkpoint.resume=%s", argv[++i]);
            argv[out++] = resume;
        } else if (!strncmp(argv[i], "--resume=", 9)) {
            snprintf(resume, sizeof resume, "checkpoint.resume=%s", argv[i] + 9);
            argv[out++] = resume;
        } else {
            argv[out++] = argv[i];
        }
    }
    return out;
}

/* Samples of one shard from its header ("images" or "tokens"); -1 if unreadable. */
static long long shard_samples(const char *path)
{
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) return -1;
    const char *name = H5Lexists(f, "images", H5P_DEFAULT) > 0 ? "images" : "tokens";
    long long n = -1;
    hid_t d = H5Lexists(f, name, H5P_DEFAULT) > 0 ? H5Dopen2(f, name, H5P_DEFAULT) : -1;
    if (d >= 0) {
        hid_t sp = H5Dget_space(d);
        hsize_t dims[8];
        if (H5Sget_simple_extent_ndims(sp) >= 1 && H5Sget_simple_extent_ndims(sp) <= 8) {
            H5Sget_simple_extent_dims(sp, dims, NULL);
            n = (long long)dims[0];
        }
        H5Sclose(sp);
        H5Dclose(d);
    }
    H5Fclose(f);
    return n;
}

static void print_shards(const char *what, const char *pattern)
{
    glob_t g;
    if (glob(pattern, 0, NULL, &g) != 0) {
        printf("  %s: %s: no files\n", what, pattern);
        return;
    }
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    printf("  %s: %s: %zu shard%s\n", what, pattern, g.gl_pathc, g.gl_pathc == 1 ? "" : "s");
    for (size_t i = 0; i < g.gl_pathc; i++) printf("    %s: %lld samples\n", g.gl_pathv[i], shard_samples(g.gl_pathv[i]));
    globfree(&g);
}

/* How a set of n samples splits into global batches of b over w ranks;
 * policy: data.last_batch (drop | pad | partial), or "eval". */
static void print_split(const char *what, int64_t n, int b, int w, const char *policy)
{
    int64_t full = n / b, rest = n % b;
    printf("  %s: %lld samples = %lld batches of %d", what, (long long)n, (long long)full, b);
    if (rest && !strcmp(policy, "drop"))
        printf(" + %lld samples dropped each epoch (data.last_batch drop; a different %lld each epoch, "
               "reshuffled)\n", (long long)rest, (long long)rest);
    else if (rest && !strcmp(policy, "pad"))
        printf(" + a last batch of %lld padded to %d (data.last_batch pad)\n", (long long)rest, b);
    else if (rest && !strcmp(policy, "partial"))
        printf(" + a last batch of %lld (data.last_batch partial; its step averages over %lld)\n",
               (long long)rest, (long long)rest);
    else if (rest)
        printf(" + a last batch of %lld (evaluated in full)\n", (long long)rest);
    else
        printf(", no partial batch\n");
    if (b % w)
        printf("    per rank: %d or %d samples (uneven; the loss is scaled by the global batch, so the gradient "
               "is the same)\n", b / w, b / w + 1);
    else
        printf("    per rank: %d samples\n", b / w);
}

dlt_status dlt_dry_run(const dlt_config *c, dlt_comm_t comm, dlt_backend *be, dlt_dataset_t train,
                       dlt_dataset_t test, dlt_loader_t train_ld, dlt_model *m)
{
    int rank = dlt_comm_rank(comm), world = dlt_comm_size(comm);
    char dev[256];
    dlt_device_describe(be, dev, sizeof dev);
    char *table = NULL;
    dlt_status st = dlt_comm_rank_table(comm, dev, "", &table);
    if (rank != 0) {
        free(table);
        return st;
    }
    printf("dry run of %s (nothing is trained or written)\n\n", c->path);
    printf("config (resolved):\n");
    dlt_config_write(c, stdout);

    int ch, h, w;
    dlt_dataset_shape(train, &ch, &h, &w);
    printf("\ndata: samples [%d, %d, %d], %d classes, %d rank%s\n", ch, h, w, dlt_dataset_classes(train), world,
           world == 1 ? "" : "s");
    print_shards("train", c->train_data);
    if (test) print_shards("test", c->test_data);
    print_split("train", dlt_dataset_size(train), c->batch_size, world, c->last_batch);
    if (test) print_split("test", dlt_dataset_size(test), c->batch_size, world, "eval");
    int64_t spe = dlt_loader_steps(train_ld) / (c->accum_steps > 0 ? c->accum_steps : 1);
    int64_t total = spe * c->epochs;
    if (c->max_steps > 0 && c->max_steps < total) total = c->max_steps;
    printf("  %lld optimizer steps per epoch, %lld steps in all\n", (long long)spe, (long long)total);

    printf("\nmodel:\n");
    dlt_model_describe(m, stdout);
    size_t np;
    dlt_model_params(m, &np);
    double batch_mib = (double)dlt_loader_max_local(train_ld) * ch * h * w * 4.0 / 1048576.0;
    printf("  input batch buffer: %.2f MiB; optimizer state: %s\n", batch_mib,
           !strcmp(c->optimizer, "sgd") && c->momentum == 0.0f ? "none"
           : (!strcmp(c->optimizer, "adam") || !strcmp(c->optimizer, "adamw")) ? "2 x parameters"
                                                                               : "1-2 x parameters");

    printf("\nranks:\n%s", table ? table : "");
    if (st != DLT_OK) printf("  problem: %s\n", dlt_last_error());
    printf("\ndry run: ok\n");
    fflush(stdout);
    free(table);
    return st;
}
