/* `dltrain train CONFIG [key=value ...]`: the data-parallel training loop.
 *
 * Every rank holds a full replica. A global batch of B samples is split by
 * the loader so that rank r computes the gradient of its rows; the loss is
 * scaled by 1/B (not by the local batch), so summing the gradients over ranks
 * gives exactly the gradient of the global mean loss, whatever the number of
 * ranks. After backward the gradient arena is summed with one allreduce (the
 * bucketed, overlapped version comes later) and every rank applies the same
 * optimizer step, so replicas stay identical without further messages.
 *
 * Set-up errors (config, data, model) are agreed across ranks so all leave
 * together with one message. A failure inside the step loop ends the job
 * through dlt_comm_abort so no rank waits forever in a collective. Every
 * buffer is allocated before the first step. */
#include <math.h>
#include <sched.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cblas.h>

#include "comm/comm.h"
#include "core/device.h"
#include "core/model.h"
#include "core/optim.h"
#include "data/data.h"
#include "launcher/commands.h"
#include "launcher/config.h"
#include "launcher/metrics.h"

typedef struct {
    dlt_config cfg;
    dlt_comm_t comm;
    int rank, world;
    dlt_backend *be;
    dlt_dataset_t train_ds, test_ds;
    dlt_loader_t train_ld, test_ld;
    dlt_model *model;
    dlt_optim opt;
    int classes;

    /* staging: host batch, backend batch and per-sample outputs */
    int max_local;
    int64_t sample_numel;
    float *x_host;      /* (max_local, C, H, W) */
    int32_t *y_host;    /* (max_local) */
    float *x_dev;       /* (max_local, C, H, W) backend memory */
    int32_t *y_dev;     /* (max_local) */
    float *out_host;    /* (max_local) per-sample loss or correct */
    float *grad_host;   /* gradient arena staging when the backend is not host memory */

    FILE *jsonl;        /* rank 0 only */
    char run_dir[DLT_PATH_LEN];
} trainer;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* A failure inside the loop: report it from this rank and end the job. */
static _Noreturn void die(trainer *t, const char *what)
{
    fprintf(stderr, "dltrain: error: %s\n", what);
    fflush(stderr);
    if (t->world > 1) dlt_comm_abort(t->comm, 1);
    exit(1);
}

#define STEP_CHECK(t, call)                                                    \
    do {                                                                       \
        if ((call) != DLT_OK) {                                                \
            char msg_[1200];                                                   \
            snprintf(msg_, sizeof msg_, "rank %d: %s", (t)->rank, dlt_last_error()); \
            die((t), msg_);                                                    \
        }                                                                      \
    } while (0)

static dlt_status open_data(trainer *t)
{
    dlt_config *c = &t->cfg;
    DLT_CHECK(dlt_dataset_open(c->train_data, &t->train_ds));
    int ch, h, w;
    dlt_dataset_shape(t->train_ds, &ch, &h, &w);
    if (c->n_input > 0) {
        int want[3] = { ch, h, w };
        int ok = c->n_input == 3;
        for (int i = 0; ok && i < 3; i++) ok = c->input[i] == want[i];
        if (!ok) {
            char got[64] = "", exp[64] = "";
            for (int i = 0; i < c->n_input; i++)
                snprintf(exp + strlen(exp), sizeof exp - strlen(exp), "%s%d", i ? ", " : "", c->input[i]);
            snprintf(got, sizeof got, "%d, %d, %d", ch, h, w);
            return DLT_ERR(DLT_ERR_SHAPE, "%s: images are [%s] per sample but model.input in %s is [%s]",
                           dlt_dataset_path(t->train_ds), got, c->path, exp);
        }
    }
    if (c->n_mean > 1 && c->n_mean != ch)
        return DLT_ERR(DLT_ERR_CONFIG, "%s: data.mean has %d values but the images have %d channels",
                       c->path, c->n_mean, ch);
    if (c->n_std > 1 && c->n_std != ch)
        return DLT_ERR(DLT_ERR_CONFIG, "%s: data.std has %d values but the images have %d channels",
                       c->path, c->n_std, ch);
    t->classes = dlt_dataset_classes(t->train_ds);
    if (c->test_data[0]) {
        DLT_CHECK(dlt_dataset_open(c->test_data, &t->test_ds));
        int tc, th, tw;
        dlt_dataset_shape(t->test_ds, &tc, &th, &tw);
        if (tc != ch || th != h || tw != w)
            return DLT_ERR(DLT_ERR_SHAPE, "%s: images are [%d, %d, %d] but the training data %s has [%d, %d, %d]",
                           dlt_dataset_path(t->test_ds), tc, th, tw, dlt_dataset_path(t->train_ds), ch, h, w);
        if (dlt_dataset_classes(t->test_ds) > t->classes) t->classes = dlt_dataset_classes(t->test_ds);
    }

    /* mean/std: one value broadcast to every channel */
    static float mean[4], std[4];
    for (int i = 0; i < ch && i < 4; i++) {
        mean[i] = c->n_mean ? c->mean[c->n_mean > 1 ? i : 0] : 0.0f;
        std[i] = c->n_std ? c->std[c->n_std > 1 ? i : 0] : 1.0f;
    }
    dlt_loader_cfg lc = {
        .global_batch = c->batch_size, .rank = t->rank, .world = t->world, .seed = c->seed,
        .shuffle = 1, .drop_last = 1, .channels = ch, .mean = mean, .std = std,
    };
    DLT_CHECK(dlt_loader_init(t->train_ds, &lc, &t->train_ld));
    if (dlt_loader_steps(t->train_ld) == 0)
        return DLT_ERR(DLT_ERR_CONFIG, "%s: train.batch_size %d is larger than the %lld training samples",
                       c->path, c->batch_size, (long long)dlt_dataset_size(t->train_ds));
    t->max_local = dlt_loader_max_local(t->train_ld);
    if (t->test_ds) {
        lc.shuffle = 0;
        lc.drop_last = 0;
        DLT_CHECK(dlt_loader_init(t->test_ds, &lc, &t->test_ld));
        if (dlt_loader_max_local(t->test_ld) > t->max_local) t->max_local = dlt_loader_max_local(t->test_ld);
    }
    t->sample_numel = (int64_t)ch * h * w;
    return DLT_OK;
}

static dlt_status build_model(trainer *t)
{
    dlt_config *c = &t->cfg;
    int ch, h, w;
    dlt_dataset_shape(t->train_ds, &ch, &h, &w);
    dlt_model_cfg mc = {
        .layers = c->layers, .n_layers = c->n_layers, .loss = c->loss,
        .input = { 3, { ch, h, w } }, .n_classes = t->classes, .max_batch = t->max_local, .seed = c->seed,
    };
    DLT_CHECK(dlt_model_build(&mc, t->be, &t->model));
    const dlt_tensor *logits = dlt_model_logits(t->model);
    int64_t k = dlt_shape_sample_numel(&logits->shape);
    if (k < t->classes)
        return DLT_ERR(DLT_ERR_SHAPE, "%s: the model outputs %lld values per sample but %s has %d classes",
                       c->path, (long long)k, dlt_dataset_path(t->train_ds), t->classes);

    size_t n_params;
    dlt_model_params(t->model, &n_params);
    dlt_backend *be = t->be;
    DLT_CHECK(be->alloc(be, (size_t)t->max_local * (size_t)t->sample_numel * sizeof(float), (void **)&t->x_dev));
    DLT_CHECK(be->alloc(be, (size_t)t->max_local * sizeof(int32_t), (void **)&t->y_dev));
    t->x_host = malloc((size_t)t->max_local * (size_t)t->sample_numel * sizeof(float));
    t->y_host = malloc((size_t)t->max_local * sizeof(int32_t));
    t->out_host = malloc((size_t)t->max_local * sizeof(float));
    t->grad_host = malloc(n_params * sizeof(float));
    if (!t->x_host || !t->y_host || !t->out_host || !t->grad_host)
        return DLT_ERR(DLT_ERR_NOMEM, "out of host memory for batch buffers");

    dlt_optim *o = &t->opt;
    memset(o, 0, sizeof *o);
    o->h = (dlt_opt_hparams){
        .kind = (dlt_opt_kind)dlt_opt_kind_parse(c->optimizer), .lr = c->lr, .weight_decay = c->weight_decay,
        .momentum = c->momentum, .nesterov = c->nesterov, .beta1 = c->beta1, .beta2 = c->beta2,
        .alpha = c->alpha, .eps = c->eps,
    };
    int64_t steps = dlt_loader_steps(t->train_ld) * c->epochs;
    if (c->max_steps > 0 && c->max_steps < steps) steps = c->max_steps;
    o->sched = (dlt_sched){
        .kind = (dlt_sched_kind)dlt_sched_kind_parse(c->schedule), .lr = c->lr, .lr_min = c->lr_min,
        .step_size = c->step_size, .gamma = c->gamma, .total_steps = steps, .warmup_steps = c->warmup_steps,
    };
    o->clip_norm = c->clip_norm;
    DLT_CHECK(dlt_optim_init(o, be, n_params));
    return DLT_OK;
}

/* Copies a backend buffer through host memory into an MPI collective and back. */
static dlt_status bcast_arena(trainer *t, float *arena, size_t n)
{
    if (n == 0 || t->world == 1) return DLT_OK;
    float *host = malloc(n * sizeof *host);
    if (!host) return DLT_ERR(DLT_ERR_NOMEM, "out of memory broadcasting parameters");
    dlt_status st = t->be->download(t->be, host, arena, n * sizeof *host);
    if (st == DLT_OK) st = dlt_comm_bcast(t->comm, host, n * sizeof *host, 0);
    if (st == DLT_OK) st = t->be->upload(t->be, arena, host, n * sizeof *host);
    free(host);
    return st;
}

static dlt_status open_run_dir(trainer *t)
{
    dlt_config *c = &t->cfg;
    /* the loader fills the default runs/<name>-<time>; only rank 0 writes */
    snprintf(t->run_dir, sizeof t->run_dir, "%s", c->run_dir);
    if (t->rank != 0) return DLT_OK;
    DLT_CHECK(dlt_mkdirs(t->run_dir));
    char path[DLT_PATH_LEN + 32];
    snprintf(path, sizeof path, "%s/config.yaml", t->run_dir);
    FILE *f = fopen(path, "w");
    if (!f) return DLT_ERR(DLT_ERR_IO, "%s: cannot write", path);
    dlt_config_write(c, f);
    fclose(f);
    snprintf(path, sizeof path, "%s/metrics.jsonl", t->run_dir);
    t->jsonl = fopen(path, "w");
    if (!t->jsonl) return DLT_ERR(DLT_ERR_IO, "%s: cannot write", path);
    return DLT_OK;
}

/* Threads per rank: train.threads, else this process's CPUs shared among the
 * ranks of the node. OpenMP and OpenBLAS get the same count; more threads
 * than cores make both libraries spin against each other. */
static void set_threads(trainer *t)
{
    int n = t->cfg.threads;
    if (n <= 0) {
        cpu_set_t set;
        int cpus = sched_getaffinity(0, sizeof set, &set) == 0 ? CPU_COUNT(&set) : 1;
        int local = dlt_comm_local_size(t->comm);
        n = cpus / (local > 0 ? local : 1);
        if (n < 1) n = 1;
    }
    omp_set_num_threads(n);
    openblas_set_num_threads(n);
}

static dlt_status setup(trainer *t, int argc, char **argv)
{
    if (argc < 1) return DLT_ERR(DLT_ERR_INVALID, "usage: dltrain train CONFIG [key=value ...]");
    DLT_CHECK(dlt_config_load(argv[0], argv + 1, argc - 1, &t->cfg));
    set_threads(t);
    DLT_CHECK(dlt_device_open(t->cfg.device, dlt_comm_local_rank(t->comm), &t->be));
    DLT_CHECK(open_data(t));
    DLT_CHECK(build_model(t));
    return open_run_dir(t);
}

/* Runs the evaluation set; every rank gets the global mean loss and accuracy. */
static void evaluate(trainer *t, double *loss, double *acc)
{
    dlt_backend *be = t->be;
    double sums[3] = { 0, 0, 0 }; /* loss, correct, samples */
    STEP_CHECK(t, dlt_loader_start_epoch(t->test_ld, 0));
    for (;;) {
        int n, global_n;
        int64_t sample0;
        STEP_CHECK(t, dlt_loader_next(t->test_ld, t->x_host, t->y_host, &n, &sample0, &global_n));
        if (global_n == 0) break;
        if (n == 0) continue;
        STEP_CHECK(t, be->upload(be, t->x_dev, t->x_host, (size_t)n * (size_t)t->sample_numel * sizeof(float)));
        STEP_CHECK(t, be->upload(be, t->y_dev, t->y_host, (size_t)n * sizeof(int32_t)));
        dlt_step_ctx ctx = { .train = 0, .seed = t->cfg.seed, .sample0 = sample0, .labels = t->y_dev };
        dlt_model_out out;
        STEP_CHECK(t, dlt_model_forward(t->model, t->x_dev, n, &ctx, &out));
        STEP_CHECK(t, be->download(be, t->out_host, out.loss, (size_t)n * sizeof(float)));
        for (int i = 0; i < n; i++) sums[0] += t->out_host[i];
        if (out.correct) {
            STEP_CHECK(t, be->download(be, t->out_host, out.correct, (size_t)n * sizeof(float)));
            for (int i = 0; i < n; i++) sums[1] += t->out_host[i];
        }
        sums[2] += n;
    }
    STEP_CHECK(t, dlt_comm_allreduce_f64(t->comm, sums, 3));
    *loss = sums[0] / sums[2];
    *acc = sums[1] / sums[2];
}

typedef struct {
    double loss, correct, samples; /* this rank's sums since the last log */
    double t0, wait;               /* window start, seconds spent in the loader */
} window;

/* One optimizer step on the next batch; returns 0 at the end of the epoch. */
static int train_step(trainer *t, int64_t step, window *win, double *grad_norm, int classifier)
{
    dlt_backend *be = t->be;
    int n, global_n;
    int64_t sample0;
    double tw = now_s();
    STEP_CHECK(t, dlt_loader_next(t->train_ld, t->x_host, t->y_host, &n, &sample0, &global_n));
    win->wait += now_s() - tw;
    if (global_n == 0) return 0;

    dlt_step_ctx ctx = { .train = 1, .seed = t->cfg.seed, .step = step, .sample0 = sample0, .labels = t->y_dev };
    size_t n_params;
    float *w = dlt_model_params(t->model, &n_params);
    float *g = dlt_model_grads(t->model, &n_params);
    if (n > 0) {
        STEP_CHECK(t, be->upload(be, t->x_dev, t->x_host, (size_t)n * (size_t)t->sample_numel * sizeof(float)));
        STEP_CHECK(t, be->upload(be, t->y_dev, t->y_host, (size_t)n * sizeof(int32_t)));
        dlt_model_out out;
        STEP_CHECK(t, dlt_model_forward(t->model, t->x_dev, n, &ctx, &out));
        STEP_CHECK(t, dlt_model_backward(t->model, n, &ctx, 1.0f / (float)global_n));
        STEP_CHECK(t, be->download(be, t->out_host, out.loss, (size_t)n * sizeof(float)));
        for (int i = 0; i < n; i++) win->loss += t->out_host[i];
        if (classifier && out.correct) {
            STEP_CHECK(t, be->download(be, t->out_host, out.correct, (size_t)n * sizeof(float)));
            for (int i = 0; i < n; i++) win->correct += t->out_host[i];
        }
        win->samples += n;
    } else {
        STEP_CHECK(t, be->fill(be, g, n_params, 0.0f));
    }

    if (t->world > 1) {
        if (!strcmp(be->name, "cpu")) {
            STEP_CHECK(t, dlt_comm_allreduce_f32(t->comm, g, n_params));
        } else {
            STEP_CHECK(t, be->download(be, t->grad_host, g, n_params * sizeof(float)));
            STEP_CHECK(t, dlt_comm_allreduce_f32(t->comm, t->grad_host, n_params));
            STEP_CHECK(t, be->upload(be, g, t->grad_host, n_params * sizeof(float)));
        }
    }
    /* The summed gradient is identical on every rank, so this check needs no
     * message: every rank stops at the same step. */
    dlt_status st = dlt_optim_step(&t->opt, w, g, grad_norm);
    if (st == DLT_ERR_NUMERIC) {
        char msg[256];
        snprintf(msg, sizeof msg, "step %lld: the gradients are not finite (norm %s, this rank's loss sum %s); "
                 "check the data or lower optimizer.lr / set optimizer.clip_norm",
                 (long long)step, isnan(*grad_norm) ? "nan" : "inf", isfinite(win->loss) ? "finite" : "not finite");
        die(t, msg);
    }
    STEP_CHECK(t, st);
    return 1;
}

static void log_train(trainer *t, int64_t step, int64_t epoch, window *win, double grad_norm, int classifier)
{
    double s[3] = { win->loss, win->correct, win->samples };
    STEP_CHECK(t, dlt_comm_allreduce_f64(t->comm, s, 3));
    double dt = now_s() - win->t0;
    dlt_record r = {
        .split = "train", .step = step, .epoch = epoch, .loss = s[0] / s[2],
        .accuracy = classifier ? s[1] / s[2] : NAN, .samples_per_s = s[2] / dt,
        .lr = t->opt.h.lr, .grad_norm = grad_norm, .data_wait = win->wait / dt,
    };
    if (t->rank == 0) {
        printf("epoch %lld step %lld loss %.4f", (long long)epoch + 1, (long long)step, r.loss);
        if (classifier) printf(" acc %.4f", r.accuracy);
        printf(" lr %.3g %.0f samples/s\n", r.lr, r.samples_per_s);
        fflush(stdout);
        dlt_record_write(t->jsonl, &r);
    }
    *win = (window){ .t0 = now_s() };
}

static void train_loop(trainer *t)
{
    dlt_config *c = &t->cfg;
    int classifier = !strcmp(c->loss, "softmax_cross_entropy");
    int64_t step = 0, steps_per_epoch = dlt_loader_steps(t->train_ld);
    int64_t total = steps_per_epoch * c->epochs;
    if (c->max_steps > 0 && c->max_steps < total) total = c->max_steps;
    double best = NAN, last_eval_loss = NAN, last_eval_acc = NAN;
    int bad_epochs = 0, stopped_early = 0;
    int64_t timed_samples = 0;
    double t_start = now_s(), t_timed = 0, t_timed0 = 0;

    if (t->rank == 0) {
        printf("dltrain: %s, %d rank%s, backend %s, global batch %d, %lld steps/epoch, %lld steps\n", c->name,
               t->world, t->world > 1 ? "s" : "", t->be->name, c->batch_size, (long long)steps_per_epoch,
               (long long)total);
        dlt_model_describe(t->model, stdout);
        printf("run dir: %s\n", t->run_dir);
        fflush(stdout);
    }

    window win = { .t0 = now_s() };
    double grad_norm = NAN;
    int64_t epoch = 0;
    for (; epoch < c->epochs && step < total && !stopped_early; epoch++) {
        STEP_CHECK(t, dlt_loader_start_epoch(t->train_ld, epoch));
        while (step < total && train_step(t, step, &win, &grad_norm, classifier)) {
            step++;
            /* throughput excludes the first steps (caches, page faults) */
            if (step == 5) t_timed0 = now_s();
            if (step > 5) timed_samples += c->batch_size;
            if (step % c->log_every == 0 || step == total) log_train(t, step, epoch, &win, grad_norm, classifier);
        }
        int last = step >= total;
        if (t->test_ld && c->eval_every_epochs > 0 && ((epoch + 1) % c->eval_every_epochs == 0 || last)) {
            double te = now_s();
            evaluate(t, &last_eval_loss, &last_eval_acc);
            t_timed0 += now_s() - te; /* evaluation is not training throughput */
            if (t->rank == 0) {
                printf("epoch %lld eval loss %.4f%s", (long long)epoch + 1, last_eval_loss, classifier ? "" : "\n");
                if (classifier) printf(" acc %.4f\n", last_eval_acc);
                fflush(stdout);
                dlt_record r = { .split = "eval", .step = step, .epoch = epoch, .loss = last_eval_loss,
                                 .accuracy = classifier ? last_eval_acc : NAN, .samples_per_s = NAN,
                                 .lr = NAN, .grad_norm = NAN, .data_wait = NAN };
                dlt_record_write(t->jsonl, &r);
            }
            if (c->early_metric[0]) {
                int maximize = !strcmp(c->early_metric, "accuracy");
                double v = maximize ? last_eval_acc : last_eval_loss;
                if (isnan(best) || (maximize ? v > best + c->early_min_delta : v < best - c->early_min_delta)) {
                    best = v;
                    bad_epochs = 0;
                } else if (++bad_epochs >= c->early_patience) {
                    stopped_early = 1;
                    if (t->rank == 0)
                        printf("early stopping: eval %s has not improved for %d epochs (best %.4f)\n",
                               c->early_metric, bad_epochs, best);
                }
            }
        }
    }
    t_timed = now_s() - t_timed0;
    double sps = step > 5 && t_timed > 0 ? (double)timed_samples / t_timed : NAN;
    double elapsed = now_s() - t_start;

    if (t->rank == 0) {
        char path[DLT_PATH_LEN + 32];
        snprintf(path, sizeof path, "%s/model.h5", t->run_dir);
        STEP_CHECK(t, dlt_weights_save(t->model, path));
        printf("done: %lld steps in %.1f s, %.0f samples/s", (long long)step, elapsed, sps);
        if (!isnan(last_eval_loss)) printf(", eval loss %.4f", last_eval_loss);
        if (classifier && !isnan(last_eval_acc)) printf(", eval accuracy %.4f", last_eval_acc);
        printf("\n");
        snprintf(path, sizeof path, "%s/summary.json", t->run_dir);
        FILE *f = fopen(path, "w");
        if (f) {
            fprintf(f, "{\"steps\": %lld, \"epochs\": %lld, \"world\": %d, \"batch_size\": %d, \"threads\": %d, "
                       "\"time_s\": %.3f, \"samples_per_s\": %.3f, \"flops_per_sample\": %.6g",
                    (long long)step, (long long)epoch, t->world, c->batch_size, omp_get_max_threads(), elapsed,
                    isnan(sps) ? 0.0 : sps, dlt_model_flops(t->model));
            if (!isnan(last_eval_loss)) fprintf(f, ", \"eval_loss\": %.6f", last_eval_loss);
            if (classifier && !isnan(last_eval_acc)) fprintf(f, ", \"eval_accuracy\": %.6f", last_eval_acc);
            fprintf(f, "}\n");
            fclose(f);
        }
    }
}

int dlt_cmd_train(int argc, char **argv)
{
    static trainer t; /* large (layer specs); one per process */
    memset(&t, 0, sizeof t);
    if (dlt_comm_init(&argc, &argv, &t.comm) != DLT_OK) {
        fprintf(stderr, "dltrain: error: %s\n", dlt_last_error());
        return 1;
    }
    t.rank = dlt_comm_rank(t.comm);
    t.world = dlt_comm_size(t.comm);

    dlt_status st = dlt_comm_agree(t.comm, setup(&t, argc, argv));
    if (st != DLT_OK) {
        if (t.rank == 0) fprintf(stderr, "dltrain: error: %s\n", dlt_last_error());
        dlt_comm_free(t.comm);
        return 1;
    }
    size_t n;
    float *p = dlt_model_params(t.model, &n);
    STEP_CHECK(&t, bcast_arena(&t, p, n));
    p = dlt_model_state(t.model, &n);
    STEP_CHECK(&t, bcast_arena(&t, p, n));

    train_loop(&t);

    if (t.jsonl) fclose(t.jsonl);
    dlt_optim_free(&t.opt);
    dlt_model_free(t.model);
    if (t.test_ld) dlt_loader_free(t.test_ld);
    dlt_loader_free(t.train_ld);
    if (t.test_ds) dlt_dataset_close(t.test_ds);
    dlt_dataset_close(t.train_ds);
    t.be->free(t.be, t.x_dev);
    t.be->free(t.be, t.y_dev);
    free(t.x_host);
    free(t.y_host);
    free(t.out_host);
    free(t.grad_host);
    t.be->destroy(t.be);
    dlt_comm_free(t.comm);
    return 0;
}
