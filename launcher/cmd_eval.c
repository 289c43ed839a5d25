/* `dltrain eval CONFIG ckpt=PATH [data=GLOB] [out=FILE.json] [key=value ...]`
 *
 * Mean loss, accuracy and (for classifiers) the confusion matrix of a
 * checkpoint on a data set: data= if given, else the config's data.test,
 * else data.train. Runs on one process or under mpirun: every rank takes
 * its rows of each batch (the loader's split, no shuffle, nothing dropped)
 * and the sums are reduced, so the result is the same for any world size.
 * Rank 0 prints; out= also writes the numbers as one JSON object. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/data.h"
#include "launcher/commands.h"
#include "launcher/infer.h"

typedef struct {
    dlt_dataset_t ds;
    dlt_loader_t ld;
    float *x;          /* (max_local, C, H, W) host */
    int32_t *y;        /* (max_local) */
    double sums[2];    /* loss, correct */
    double *confusion; /* (classes, classes): row = true label, column = predicted */
    double samples;
} eval_state;

static int argmax(const float *z, int k)
{
    int b = 0;
    for (int j = 1; j < k; j++)
        if (z[j] > z[b]) b = j;
    return b;
}

static dlt_status run(dlt_infer *r, eval_state *e, const char *data)
{
    DLT_CHECK(dlt_dataset_open(data, &e->ds));
    int ch, h, w;
    dlt_dataset_shape(e->ds, &ch, &h, &w);
    if (ch != r->input[0] || h != r->input[1] || w != r->input[2])
        return DLT_ERR(DLT_ERR_SHAPE, "%s: images are [%d, %d, %d] but the model takes [%d, %d, %d]",
                       dlt_dataset_path(e->ds), ch, h, w, r->input[0], r->input[1], r->input[2]);
    if (dlt_dataset_classes(e->ds) > r->classes)
        return DLT_ERR(DLT_ERR_SHAPE, "%s: labels go up to %d but the model has %d classes", dlt_dataset_path(e->ds),
                       dlt_dataset_classes(e->ds) - 1, r->classes);
    dlt_loader_cfg lc = {
        .global_batch = r->cfg.batch_size, .rank = r->rank, .world = r->world, .seed = r->cfg.seed,
        .shuffle = 0, .drop_last = 0, .channels = ch, .mean = r->mean, .std = r->std,
    };
    DLT_CHECK(dlt_loader_init(e->ds, &lc, &e->ld));
    int ml = dlt_loader_max_local(e->ld);
    int k = r->classes;
    int64_t kk = dlt_shape_sample_numel(&dlt_model_logits(r->model)->shape);
    e->x = malloc((size_t)ml * (size_t)ch * (size_t)h * (size_t)w * sizeof(float));
    e->y = malloc((size_t)ml * sizeof(int32_t));
    e->confusion = calloc((size_t)k * (size_t)k, sizeof(double));
    if (!e->x || !e->y || !e->confusion) return DLT_ERR(DLT_ERR_NOMEM, "out of memory");
    DLT_CHECK(dlt_loader_start_epoch(e->ld, 0));
    for (;;) {
        int n, global_n;
        int64_t sample0;
        DLT_CHECK(dlt_loader_next(e->ld, e->x, e->y, &n, &sample0, &global_n));
        if (global_n == 0) break;
        if (n == 0) continue;
        DLT_CHECK(dlt_infer_run(r, e->x, e->y, n, &e->sums[0], &e->sums[1]));
        for (int i = 0; i < n; i++) e->confusion[(size_t)e->y[i] * (size_t)k + (size_t)argmax(r->logits + (size_t)i * (size_t)kk, k)] += 1;
        e->samples += n;
    }
    return DLT_OK;
}

static void report(dlt_infer *r, eval_state *e, const char *ckpt, const char *data, const char *out)
{
    int k = r->classes, classifier = !strcmp(r->cfg.loss, "softmax_cross_entropy");
    double loss = e->sums[0] / e->samples, acc = e->sums[1] / e->samples;
    printf("eval %s on %s: %.0f samples, loss %.6f", ckpt, data, e->samples, loss);
    if (classifier) printf(", accuracy %.4f", acc);
    printf("\n");
    if (classifier) {
        printf("confusion matrix (rows: true class, columns: predicted):\n      ");
        for (int j = 0; j < k; j++) printf(" %6d", j);
        printf("\n");
        for (int i = 0; i < k; i++) {
            const char *name = dlt_dataset_class_name(e->ds, i);
            printf("%5d:", i);
            for (int j = 0; j < k; j++) printf(" %6.0f", e->confusion[(size_t)i * (size_t)k + (size_t)j]);
            if (name) printf("  %s", name);
            printf("\n");
        }
    }
    fflush(stdout);
    if (!out) return;
    FILE *f = fopen(out, "w");
    if (!f) {
        fprintf(stderr, "dltrain: warning: %s: cannot write\n", out);
        return;
    }
    fprintf(f, "{\"checkpoint\": \"%s\", \"data\": \"%s\", \"samples\": %.0f, \"loss\": %.8g", ckpt, data,
            e->samples, loss);
    if (classifier) {
        fprintf(f, ", \"accuracy\": %.8g, \"confusion\": [", acc);
        for (int i = 0; i < k; i++) {
            fprintf(f, "%s[", i ? ", " : "");
            for (int j = 0; j < k; j++) fprintf(f, "%s%.0f", j ? ", " : "", e->confusion[(size_t)i * (size_t)k + (size_t)j]);
            fprintf(f, "]");
        }
        fprintf(f, "]");
    }
    fprintf(f, "}\n");
    fclose(f);
}

int dlt_cmd_eval(int argc, char **argv)
{
    dlt_comm_t comm;
    if (dlt_comm_init(&argc, &argv, &comm) != DLT_OK) {
        fprintf(stderr, "dltrain: error: %s\n", dlt_last_error());
        return 1;
    }
    static const char *const names[] = { "ckpt", "data", "out" };
    const char *v[3];
    argc = dlt_infer_options(argc, argv, names, v, 3);
    static dlt_infer r; /* holds a config: large */
    memset(&r, 0, sizeof r);
    eval_state e;
    memset(&e, 0, sizeof e);
    dlt_status st = argc < 1 ? DLT_ERR(DLT_ERR_INVALID, "usage: dltrain eval CONFIG ckpt=PATH [data=GLOB] "
                                                       "[out=FILE.json] [key=value ...]")
                             : dlt_infer_open(&r, comm, argv[0], argv + 1, argc - 1, v[0], 256);
    const char *data = v[1] ? v[1] : r.cfg.test_data[0] ? r.cfg.test_data : r.cfg.train_data;
    if (st == DLT_OK) st = run(&r, &e, data);
    st = dlt_comm_agree(comm, st);
    if (st == DLT_OK) {
        st = dlt_comm_allreduce_f64(comm, e.sums, 2);
        if (st == DLT_OK) st = dlt_comm_allreduce_f64(comm, &e.samples, 1);
        if (st == DLT_OK) st = dlt_comm_allreduce_f64(comm, e.confusion, (size_t)r.classes * (size_t)r.classes);
    }
    if (st != DLT_OK) {
        if (r.rank == 0) fprintf(stderr, "dltrain: error: %s\n", dlt_last_error());
    } else if (r.rank == 0) {
        report(&r, &e, v[0], data, v[2]);
    }
    if (e.ld) dlt_loader_free(e.ld);
    if (e.ds) dlt_dataset_close(e.ds);
    free(e.x);
    free(e.y);
    free(e.confusion);
    dlt_infer_close(&r);
    dlt_comm_free(comm);
    return st == DLT_OK ? 0 : 1;
}
