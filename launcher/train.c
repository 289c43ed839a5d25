/* `dltrain train CONFIG [key=value ...]`: the data-parallel training loop.
 *
 * Every rank holds a full replica. A global batch of B samples is split by
 * the loader so that rank r computes the gradient of its rows; the loss is
 * scaled by 1/B (not by the local batch), so summing the gradients over ranks
 * gives exactly the gradient of the global mean loss, whatever the number of
 * ranks. The gradient arena is summed over ranks in buckets that start
 * while backward still runs (launcher/dist.c; train.accum_steps micro-batches
 * accumulate first) and every rank applies the same optimizer step, so
 * replicas stay identical without further messages. With comm.zero (ZeRO-1,
 * comm/zero.h) the buckets are reduce-scattered instead, each rank steps
 * only its shard of the optimizer state, and the parameters are all-gathered
 * after the step.
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
#include "launcher/checkpoint.h"
#include "launcher/commands.h"
#include "launcher/config.h"
#include "launcher/lossscale.h"
#include "launcher/dryrun.h"
#include "launcher/dist.h"
#include "launcher/fault.h"
#include "launcher/metrics.h"
#include "launcher/numerics.h"
#include "launcher/progress.h"
#include "launcher/staging.h"
#include "launcher/tboard.h"
#include "launcher/text_train.h"

typedef struct {
    dlt_config cfg;
    dlt_comm_t comm;
    int rank, world;
    dlt_backend *be;
    dlt_dataset_t train_ds, test_ds;
    dlt_loader_t train_ld, test_ld;
    dlt_model *model;
    dlt_optim opt;
    dlt_zero *zero;     /* comm.zero on more than one rank: opt holds this rank's shard */
    int classes;

    /* batches: two slots of host and backend buffers, loss sums on the
     * device (launcher/staging.c) */
    int max_local;
    int64_t sample_numel;
    dlt_staging stg;

    FILE *jsonl;        /* rank 0 only */
    dlt_dist *dist;     /* bucketed gradient reduction (launcher/dist.c) */
    dlt_tboard *tb;     /* rank 0 only: TensorBoard events */
    dlt_progress prog;  /* rank 0: live bar on a terminal, else plain lines */
    dlt_fault fault;    /* DLTRAIN_FAULT, for the failure tests */
    dlt_text_data *text; /* token shards (launcher/text_train.c); NULL: images */
    int label_numel;    /* int32 targets per sample: 1, or L for per-token losses */
    dlt_freeze *freeze; /* freeze.layers; NULL: none */
    dlt_ckpt_run ck;    /* checkpoints, resume, init_from (launcher/ckpt_run.c) */
    dlt_train_pos pos;  /* where training stands; a resume restores it */
    dlt_numerics num;   /* NaN/Inf policy and time breakdown (launcher/numerics.c) */
    dlt_lossscale ls;   /* train.precision fp16: dynamic loss scale (launcher/lossscale.c) */
    int stop;           /* a rank caught SIGTERM/SIGUSR1: checkpoint and exit 0 */
    int dry_run;        /* --dry-run (launcher/dryrun.c) */
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
    if (t->world > 1) {
        /* peers waiting for this rank learn why, and answer, before the abort */
        char silent[256];
        dlt_comm_notify_failure(t->comm, what, silent, sizeof silent);
        if (silent[0])
            fprintf(stderr, "dltrain: rank %d: no word from rank %s: dead or hung; ending the job\n", t->rank,
                    silent);
        fflush(stderr);
        dlt_dist_abort(t->dist);   /* NCCL first, then MPI (STYLE: no rank left hanging) */
        dlt_comm_abort(t->comm, 1);
    }
    exit(1);
}

#define STEP_CHECK(t, call)                                                    \
    do {                                                                       \
        if ((call) != DLT_OK) {                                                \
            char msg_[1200];                                                   \
            if ((t)->world > 1) /* a world of one names no rank */      \
                snprintf(msg_, sizeof msg_, "rank %d: %s", (t)->rank, dlt_last_error()); \
            else                                                       \
                snprintf(msg_, sizeof msg_, "%s", dlt_last_error());   \
            die((t), msg_);                                                    \
        }                                                                      \
    } while (0)

static dlt_status open_data(trainer *t)
{
    dlt_config *c = &t->cfg;
    t->label_numel = 1;
    if (dlt_text_wanted(c)) {
        DLT_CHECK(dlt_text_open(c, t->rank, t->world, &t->text));
        t->classes = dlt_text_classes(t->text);
        t->max_local = dlt_text_max_local(t->text);
        t->sample_numel = dlt_text_sample_numel(t->text);
        t->label_numel = dlt_text_label_numel(t->text);
        return DLT_OK;
    }
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
    /* data.augment.* (training only; the loader copies it) */
    dlt_augment_cfg aug = c->augment;
    if (c->n_aug_scale && c->n_aug_scale != 2)
        return DLT_ERR(DLT_ERR_CONFIG, "%s: data.augment.resized_crop needs [min, max]", c->path);
    if (c->n_aug_ratio && c->n_aug_ratio != 2)
        return DLT_ERR(DLT_ERR_CONFIG, "%s: data.augment.ratio needs [min, max]", c->path);
    if (c->n_aug_scale) aug.scale_min = c->aug_scale[0], aug.scale_max = c->aug_scale[1];
    if (c->n_aug_ratio) aug.ratio_min = c->aug_ratio[0], aug.ratio_max = c->aug_ratio[1];
    dlt_loader_cfg lc = {
        .global_batch = c->batch_size, .rank = t->rank, .world = t->world, .seed = c->seed,
        .shuffle = 1, .drop_last = !strcmp(c->last_batch, "drop"), .channels = ch, .mean = mean,
        .std = std, .pad_last = !strcmp(c->last_batch, "pad"), .shuffle_block = c->shuffle_block,
        .prefetch = c->prefetch, .threads = c->data_threads, .augment = &aug, .host_mem = t->be,
    };
    DLT_CHECK(dlt_loader_init(t->train_ds, &lc, &t->train_ld));
    if (dlt_loader_steps(t->train_ld) == 0)
        return DLT_ERR(DLT_ERR_CONFIG, "%s: train.batch_size %d is larger than the %lld training samples",
                       c->path, c->batch_size, (long long)dlt_dataset_size(t->train_ds));
    t->max_local = dlt_loader_max_local(t->train_ld);
    if (t->test_ds) {
        lc.shuffle = 0;
        lc.drop_last = 0;
        lc.pad_last = 0;
        lc.augment = NULL; /* evaluation: normalisation only */
        DLT_CHECK(dlt_loader_init(t->test_ds, &lc, &t->test_ld));
        if (dlt_loader_max_local(t->test_ld) > t->max_local) t->max_local = dlt_loader_max_local(t->test_ld);
    }
    t->sample_numel = (int64_t)ch * h * w;
    return DLT_OK;
}

/* The batch source: token shards (text_train.c) or images (data/). Batches
 * of a per-token loss count their targets, not their samples: *count is the
 * global number of counted targets of the batch (one small allreduce),
 * which scales the loss so the gradient is the mean over all targets
 * whatever the number of ranks. */
static int64_t data_steps(trainer *t)
{
    return t->text ? dlt_text_steps(t->text, 0) : dlt_loader_steps(t->train_ld);
}

static dlt_status data_start(trainer *t, int test, int64_t epoch)
{
    DLT_CHECK(dlt_staging_reset(&t->stg));
    if (t->text) return dlt_text_start_epoch(t->text, test, epoch, t->model);
    return dlt_loader_start_epoch(test ? t->test_ld : t->train_ld, epoch);
}

/* The staging's data source (dlt_fetch_fn, launcher/staging.h). */
static dlt_status data_next(void *user, int test, float *x_host, int32_t *y_host, const float **x,
                            const int32_t **y, dlt_staged_batch *b)
{
    trainer *t = user;
    if (!t->text) {
        /* by reference: uploaded straight from the loader's (page-locked) buffer, no copy */
        DLT_CHECK(dlt_loader_next_ref(test ? t->test_ld : t->train_ld, x, y, &b->n, &b->sample0, &b->global_n));
        b->count = b->global_n;
        return DLT_OK;
    }
    int64_t local;
    DLT_CHECK(dlt_text_next(t->text, test, x_host, y_host, &b->n, &b->sample0, &b->global_n, &local));
    *x = x_host;
    *y = y_host;
    b->count = (double)local;
    if (b->global_n > 0 && t->world > 1) DLT_CHECK(dlt_comm_allreduce_f64(t->comm, &b->count, 1));
    return DLT_OK;
}

static dlt_status build_model(trainer *t)
{
    dlt_config *c = &t->cfg;
    int ch = 0, h = 0, w = 0;
    if (!t->text) dlt_dataset_shape(t->train_ds, &ch, &h, &w);
    dlt_model_cfg mc = {
        .layers = c->layers, .n_layers = c->n_layers, .loss = c->loss,
        .input = { 3, { ch, h, w } }, .n_classes = t->classes, .max_batch = t->max_local, .seed = c->seed,
    };
    if (t->text) mc.input = dlt_text_input(t->text);
    DLT_CHECK(dlt_model_build(&mc, t->be, &t->model));
    DLT_CHECK(dlt_freeze_init(c, t->model, &t->freeze));
    const dlt_tensor *logits = dlt_model_logits(t->model);
    int64_t k = dlt_shape_sample_numel(&logits->shape);
    if (k < t->classes)
        return DLT_ERR(DLT_ERR_SHAPE, "%s: the model outputs %lld values per sample but %s has %d classes",
                       c->path, (long long)k, t->text ? c->train_data : dlt_dataset_path(t->train_ds), t->classes);

    size_t n_params;
    dlt_model_params(t->model, &n_params);
    dlt_backend *be = t->be;
    DLT_CHECK(dlt_staging_init(&t->stg, be, t->max_local, t->sample_numel, t->label_numel, data_next, t));

    dlt_optim *o = &t->opt;
    memset(o, 0, sizeof *o);
    o->h = (dlt_opt_hparams){
        .kind = (dlt_opt_kind)dlt_opt_kind_parse(c->optimizer), .lr = c->lr, .weight_decay = c->weight_decay,
        .momentum = c->momentum, .nesterov = c->nesterov, .beta1 = c->beta1, .beta2 = c->beta2,
        .alpha = c->alpha, .eps = c->eps,
    };
    /* an optimizer step takes train.accum_steps loader batches */
    int64_t steps = data_steps(t) / c->accum_steps * c->epochs;
    if (steps == 0)
        return DLT_ERR(DLT_ERR_CONFIG, "%s: train.accum_steps %d is more than the %lld batches of an epoch",
                       c->path, c->accum_steps, (long long)data_steps(t));
    if (c->max_steps > 0 && c->max_steps < steps) steps = c->max_steps;
    o->sched = (dlt_sched){
        .kind = (dlt_sched_kind)dlt_sched_kind_parse(c->schedule), .lr = c->lr, .lr_min = c->lr_min,
        .step_size = c->step_size, .gamma = c->gamma, .total_steps = steps, .warmup_steps = c->warmup_steps,
    };
    o->clip_norm = c->clip_norm;
    if (c->zero && t->world > 1) { /* before the resume, which loads only this shard */
        DLT_CHECK(dlt_zero_init(t->comm, n_params, dlt_dist_bucket_floats(c), &t->zero));
        o->shard = dlt_zero_shard(t->zero);
    }
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
    /* a resumed run continues the file, minus steps past its checkpoint */
    if (t->pos.step > 0) DLT_CHECK(dlt_jsonl_truncate(path, t->pos.step));
    t->jsonl = fopen(path, t->pos.step > 0 ? "a" : "w");
    if (!t->jsonl) return DLT_ERR(DLT_ERR_IO, "%s: cannot write", path);
    DLT_CHECK(dlt_tboard_open(t->run_dir, &t->tb));
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

/* Resume or model.init_from (launcher/ckpt_run.c), before the run dir opens. */
static dlt_status start_checkpoints(trainer *t)
{
    int ch = 1, h = 1, w = (int)t->sample_numel; /* token models: (1, 1, L) */
    if (!t->text) dlt_dataset_shape(t->train_ds, &ch, &h, &w);
    dlt_ckpt_src src = { .model = t->model, .opt = &t->opt, .zero = t->zero, .cfg = &t->cfg, .world = t->world,
                         .input = { ch, h, w }, .classes = t->classes };
    /* under fault injection every rank reports a non-finite step, so the
     * tests can check that all name the same layer */
    t->num = (dlt_numerics){ .skip = !strcmp(t->cfg.nonfinite, "skip"), .max_skips = t->cfg.max_skips,
                             .all_ranks_report = t->fault.kind != DLT_FAULT_NONE };
    dlt_signals_install();
    DLT_CHECK(dlt_ckpt_run_start(&t->ck, &src, t->comm, &t->pos));
    t->num.skips = t->pos.skips;
    return DLT_OK;
}

static dlt_status setup(trainer *t, int argc, char **argv)
{
    if (argc < 1) return DLT_ERR(DLT_ERR_INVALID, "usage: dltrain train CONFIG [key=value ...]");
    DLT_CHECK(dlt_config_load(argv[0], argv + 1, argc - 1, &t->cfg));
    dlt_comm_set_timeout(t->comm, t->cfg.comm_timeout_s);
    DLT_CHECK(dlt_fault_from_env(&t->fault));
    set_threads(t);
    DLT_CHECK(dlt_device_open(t->cfg.device, dlt_comm_local_rank(t->comm), &t->be));
    DLT_CHECK(dlt_device_set_precision(t->be, t->cfg.precision));
    dlt_lossscale_init(&t->ls, t->cfg.precision, t->be);
    DLT_CHECK(open_data(t));
    DLT_CHECK(build_model(t));
    if (t->dry_run) return dlt_dry_run(&t->cfg, t->comm, t->be, t->train_ds, t->test_ds, t->train_ld, t->model);
    DLT_CHECK(start_checkpoints(t));
    return open_run_dir(t);
}

/* Runs the evaluation set; every rank gets the global mean loss and accuracy. */
static void evaluate(trainer *t, double *loss, double *acc)
{
    double sums[DLT_SUM_N]; /* loss, correct, samples: summed on the device, read once */
    dlt_comm_set_where(t->comm, -1, "eval");
    STEP_CHECK(t, data_start(t, 1, 0));
    for (;;) {
        dlt_staged_batch b;
        float *x;
        int32_t *y;
        STEP_CHECK(t, dlt_staging_next(&t->stg, 1, &b, &x, &y));
        if (b.global_n == 0) break;
        if (b.n == 0) continue;
        dlt_step_ctx ctx = { .train = 0, .seed = t->cfg.seed, .sample0 = b.sample0, .labels = y,
                             .labels_host = dlt_staging_labels_host(&t->stg) };
        dlt_model_out out;
        STEP_CHECK(t, dlt_model_forward(t->model, x, b.n, &ctx, &out));
        STEP_CHECK(t, dlt_staging_add(&t->stg, DLT_SUMS_EVAL, &out, b.n, 1));
    }
    STEP_CHECK(t, dlt_staging_take(&t->stg, DLT_SUMS_EVAL, sums));
    STEP_CHECK(t, dlt_comm_allreduce_f64(t->comm, sums, 3));
    *loss = sums[0] / sums[2];
    *acc = sums[1] / sums[2];
}

typedef struct {
    double t0, wait; /* window start, seconds spent in the loader (the sums are in t->stg) */
} window;

/* One optimizer step on the next batch; returns 0 at the end of the epoch. */
static int train_step(trainer *t, int64_t step, window *win, double *grad_norm, int classifier)
{
    dlt_backend *be = t->be;
    size_t n_params;
    float *g = dlt_model_grads(t->model, &n_params);
    /* Gradient accumulation: K micro-batches add into the gradient arena,
     * each scaled by 1 / (K * global micro-batch) so the sum is the mean
     * over the whole global batch; only the last one's backward starts the
     * bucketed reduction (dist.c). An epoch ending mid-step drops the partial
     * step; the next one starts from zeroed gradients. */
    const int accum = t->cfg.accum_steps;
    STEP_CHECK(t, dlt_staging_step_begin(&t->stg)); /* a skipped step is taken out of the sums */
    for (int micro = 0; micro < accum; micro++) {
        const int last = micro == accum - 1;
        dlt_staged_batch b;
        float *x;
        int32_t *y;
        double tw = now_s();
        dlt_comm_set_where(t->comm, step, "data");
        STEP_CHECK(t, dlt_staging_next(&t->stg, 0, &b, &x, &y));
        win->wait += now_s() - tw;
        if (b.global_n == 0) return 0;

        dlt_step_ctx ctx = { .train = 1, .seed = t->cfg.seed, .step = step, .sample0 = b.sample0, .labels = y,
                             .labels_host = dlt_staging_labels_host(&t->stg) };
        if (b.n > 0) {
            dlt_model_out out;
            STEP_CHECK(t, dlt_fault_maybe(&t->fault, t->rank, step));
            if (dlt_fault_nan(&t->fault, t->rank, step)) STEP_CHECK(t, be->fill(be, x, 1, NAN));
            dlt_comm_set_where(t->comm, step, "forward");
            double tk = now_s();
            STEP_CHECK(t, dlt_model_forward(t->model, x, b.n, &ctx, &out));
            tk = dlt_tick(&t->num.time[DLT_TIME_FORWARD], tk);
            dlt_comm_set_where(t->comm, step, "backward");
            STEP_CHECK(t, dlt_dist_begin(t->dist, step, last));
            float scale = dlt_lossscale_factor(&t->ls) / ((float)(b.count > 0 ? b.count : 1) * (float)accum);
            STEP_CHECK(t, micro ? dlt_model_backward_accumulate(t->model, b.n, &ctx, scale)
                                : dlt_model_backward(t->model, b.n, &ctx, scale));
            dlt_tick(&t->num.time[DLT_TIME_BACKWARD], tk);
            STEP_CHECK(t, dlt_staging_add(&t->stg, DLT_SUMS_TRAIN, &out, b.n, classifier));
        } else {
            STEP_CHECK(t, dlt_dist_begin(t->dist, step, last));
            if (micro == 0) STEP_CHECK(t, be->fill(be, g, n_params, 0.0f));
        }
        /* the next batch loads and uploads while this one computes on a GPU */
        tw = now_s();
        dlt_comm_set_where(t->comm, step, "data");
        STEP_CHECK(t, dlt_staging_prefetch(&t->stg));
        win->wait += now_s() - tw;
    }

    dlt_comm_set_where(t->comm, step, "allreduce");
    double tk = now_s();
    STEP_CHECK(t, dlt_dist_finish(t->dist));
    int overflow;
    if (t->zero && t->ls.on) { /* a rank holds only its pieces of the sum: decide on the global norm */
        double ss;
        STEP_CHECK(t, dlt_optim_grad_sumsq(&t->opt, g, &ss));
        STEP_CHECK(t, dlt_lossscale_unscale_ss(&t->ls, be, g, n_params, ss, &overflow));
    } else {
        STEP_CHECK(t, dlt_lossscale_unscale(&t->ls, be, g, n_params, &overflow));
    }
    if (overflow) { /* fp16: skip the step at a lower scale, alike on every rank */
        STEP_CHECK(t, dlt_staging_step_undo(&t->stg));
        return 1;
    }
    tk = dlt_tick(&t->num.time[DLT_TIME_COMM], tk);
    /* numerics.c: one tiny allreduce agrees on stop signals and non-finite
     * losses, then the optimizer steps or skips, alike on every rank. */
    dlt_comm_set_where(t->comm, step, "optimizer");
    int applied;
    double step_loss; /* 0 on a GPU: the gradient norm check covers it (staging.c) */
    STEP_CHECK(t, dlt_staging_step_loss(&t->stg, &step_loss));
    STEP_CHECK(t, dlt_freeze_before(t->freeze));
    dlt_status st = dlt_numerics_step(&t->num, t->comm, t->model, &t->opt, step, step_loss, grad_norm,
                                      &applied, &t->stop);
    if (st == DLT_OK) STEP_CHECK(t, dlt_freeze_after(t->freeze));
    if (st == DLT_OK && applied) { /* ZeRO-1: every rank's updated pieces to all */
        dlt_comm_set_where(t->comm, step, "allgather");
        STEP_CHECK(t, dlt_dist_gather(t->dist));
    }
    if (st == DLT_ERR_NUMERIC) { /* agreed on every rank: one message, all leave */
        if (t->rank == 0) fprintf(stderr, "dltrain: error: %s\n", dlt_last_error());
        else if (t->num.all_ranks_report) fprintf(stderr, "dltrain: rank %d: error: %s\n", t->rank, dlt_last_error());
        dlt_comm_free(t->comm);
        exit(1);
    }
    STEP_CHECK(t, st);
    if (!applied) STEP_CHECK(t, dlt_staging_step_undo(&t->stg)); /* not in the logged loss */
    dlt_tick(&t->num.time[DLT_TIME_OPTIM], tk);
    return 1;
}

static void log_train(trainer *t, int64_t step, int64_t epoch, window *win, double grad_norm, int classifier)
{
    double s[DLT_SUM_N]; /* loss, correct, samples: the one read-back of the window */
    dlt_comm_set_where(t->comm, step, "log");
    STEP_CHECK(t, dlt_staging_take(&t->stg, DLT_SUMS_TRAIN, s));
    STEP_CHECK(t, dlt_comm_allreduce_f64(t->comm, s, 3));
    double dt = now_s() - win->t0;
    dlt_record r = {
        .split = "train", .step = step, .epoch = epoch, .loss = s[0] / s[2],
        .accuracy = classifier ? s[1] / s[2] : NAN, .samples_per_s = s[2] / dt,
        .lr = t->opt.h.lr, .grad_norm = grad_norm, .data_wait = win->wait / dt,
    };
    double times[DLT_TIME_N];
    dlt_numerics_times(&t->num, win->wait, times);
    r.time_breakdown = times;
    dlt_progress_train(&t->prog, &r);
    if (t->rank == 0) {
        dlt_record_write(t->jsonl, &r);
        dlt_tboard_log(&t->tb, &r, dlt_lossscale_factor(&t->ls));
    }
    *win = (window){ .t0 = now_s() };
}

/* Rank 0: the optimizer state's bytes per rank, and the whole of it. */
static void print_opt_state(trainer *t)
{
    int arenas = (t->opt.s1 != NULL) + (t->opt.s2 != NULL);
    size_t per = dlt_optim_state_floats(&t->opt) * sizeof(float) * (size_t)arenas;
    size_t whole = t->opt.n * sizeof(float) * (size_t)arenas, most = per;
    for (int p = 0; t->zero && p < t->world; p++) {
        size_t b = dlt_zero_floats(t->zero, p) * sizeof(float) * (size_t)arenas;
        if (b > most) most = b;
    }
    printf("optimizer state: %zu bytes on rank 0 (at most %zu per rank, %zu in all, %s)\n", per, most, whole,
           t->zero ? "ZeRO-1: sharded over ranks" : "replicated on every rank");
}

static void train_loop(trainer *t)
{
    dlt_config *c = &t->cfg;
    int classifier = !strcmp(c->loss, "softmax_cross_entropy");
    int64_t step = t->pos.step, steps_per_epoch = data_steps(t) / c->accum_steps;
    int64_t total = steps_per_epoch * c->epochs;
    if (c->max_steps > 0 && c->max_steps < total) total = c->max_steps;
    double best = t->pos.best, last_eval_loss = NAN, last_eval_acc = NAN;
    int bad_epochs = t->pos.bad_epochs, stopped_early = 0;
    int64_t timed_samples = 0;
    double t_start = now_s(), t_timed = 0, t_timed0 = 0;

    if (t->rank == 0) {
        printf("dltrain: %s, %d rank%s, backend %s, global batch %d, %lld steps/epoch, %lld steps\n", c->name,
               t->world, t->world > 1 ? "s" : "", t->be->name, c->batch_size * c->accum_steps, (long long)steps_per_epoch,
               (long long)total);
        dlt_model_describe(t->model, stdout);
        print_opt_state(t);
        printf("run dir: %s\n", t->run_dir);
        fflush(stdout);
    }
    /* epochs shown: those the run will reach (train.max_steps may end it early) */
    dlt_progress_init(&t->prog, stdout, t->rank == 0, c->log_progress, classifier, total,
                      (total + steps_per_epoch - 1) / steps_per_epoch, c->batch_size, step);

    window win = { .t0 = now_s() };
    double grad_norm = NAN;
    /* a resumed run re-enters its epoch where the checkpoint left it */
    int64_t epoch = t->pos.epoch, in_epoch = t->pos.epoch_step;
    if (t->pos.evaluated) epoch++, in_epoch = 0;
    for (; epoch < c->epochs && step < total && !stopped_early && !t->stop; epoch++, in_epoch = 0) {
        STEP_CHECK(t, data_start(t, 0, epoch));
        if (t->text) dlt_text_skip(t->text, 0, in_epoch * c->accum_steps);
        else {
            float *sx;
            int32_t *sy;
            STEP_CHECK(t, dlt_staging_scratch(&t->stg, &sx, &sy));
            STEP_CHECK(t, dlt_loader_skip(t->train_ld, in_epoch * c->accum_steps, sx, sy));
        }
        while (step < total && train_step(t, step, &win, &grad_norm, classifier)) {
            step++;
            /* throughput excludes the first steps (caches, page faults) */
            if (step == 5) t_timed0 = now_s();
            if (step > 5) timed_samples += (int64_t)c->batch_size * c->accum_steps;
            if (step % c->log_every == 0 || step == total) log_train(t, step, epoch, &win, grad_norm, classifier);
            dlt_progress_step(&t->prog, step, epoch);
            t->pos = (dlt_train_pos){ .step = step, .epoch = epoch, .epoch_step = ++in_epoch, .best = best,
                                      .bad_epochs = bad_epochs, .best_ckpt = t->pos.best_ckpt, .skips = t->num.skips };
            if (t->stop) break;
            STEP_CHECK(t, dlt_ckpt_run_step(&t->ck, &t->pos));
        }
        dlt_progress_end_line(&t->prog);
        int last = step >= total;
        if (!t->stop && (t->test_ld || (t->text && dlt_text_has_test(t->text))) && c->eval_every_epochs > 0 && ((epoch + 1) % c->eval_every_epochs == 0 || last)) {
            double te = now_s();
            evaluate(t, &last_eval_loss, &last_eval_acc);
            t_timed0 += now_s() - te; /* evaluation is not training throughput */
            if (t->rank == 0) {
                dlt_record r = { .split = "eval", .step = step, .epoch = epoch, .loss = last_eval_loss,
                                 .accuracy = classifier ? last_eval_acc : NAN, .samples_per_s = NAN,
                                 .lr = NAN, .grad_norm = NAN, .data_wait = NAN };
                dlt_progress_eval(&t->prog, &r);
                if (t->text) dlt_text_report_eval(t->text, last_eval_loss, last_eval_acc, stdout);
                dlt_record_write(t->jsonl, &r);
                dlt_tboard_log(&t->tb, &r, NAN);
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
            t->pos.evaluated = 1;
            t->pos.best = best;
            t->pos.bad_epochs = bad_epochs;
            STEP_CHECK(t, dlt_ckpt_run_eval(&t->ck, &t->pos, last_eval_loss, classifier ? last_eval_acc : NAN));
        }
    }
    if (t->stop) { /* SIGTERM/SIGUSR1 on some rank: save where we are and leave cleanly */
        char path[DLT_PATH_LEN + 64];
        STEP_CHECK(t, dlt_ckpt_run_save(&t->ck, &t->pos, NULL, path, sizeof path));
        if (t->rank == 0)
            printf("stopped by a signal at step %lld: checkpoint %s; continue with checkpoint.resume=auto\n",
                   (long long)step, path);
        return;
    }
    t_timed = now_s() - t_timed0;
    double sps = step > 5 && t_timed > 0 ? (double)timed_samples / t_timed : NAN;
    double elapsed = now_s() - t_start;

    char model_path[DLT_PATH_LEN + 32];
    snprintf(model_path, sizeof model_path, "%s/model.h5", t->run_dir);
    /* a full checkpoint (eval, predict, resume); collective: ZeRO gathers the optimizer state */
    STEP_CHECK(t, dlt_ckpt_run_save_file(&t->ck, &t->pos, model_path));
    if (t->rank == 0) {
        char path[DLT_PATH_LEN + 32];
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
    if (dlt_comm_check_launch(t.comm) != DLT_OK) {
        fprintf(stderr, "dltrain: error: %s\n", dlt_last_error());
        dlt_comm_free(t.comm);
        return 1;
    }

    argc = dlt_train_flags(argc, argv, &t.dry_run);
    dlt_status st = dlt_comm_agree(t.comm, setup(&t, argc, argv));
    if (st != DLT_OK) {
        if (t.rank == 0) fprintf(stderr, "dltrain: error: %s\n", dlt_last_error());
        dlt_comm_free(t.comm);
        return 1;
    }
    if (t.dry_run) {
        dlt_comm_free(t.comm);
        return 0;
    }
    size_t n;
    float *p = dlt_model_params(t.model, &n);
    STEP_CHECK(&t, bcast_arena(&t, p, n));
    p = dlt_model_state(t.model, &n);
    STEP_CHECK(&t, bcast_arena(&t, p, n));
    /* same config and binary everywhere, the rank table, then buckets/NCCL */
    st = dlt_dist_check_start(t.comm, &t.cfg, t.be);
    if (st == DLT_OK) st = dlt_comm_agree(t.comm, dlt_dist_init(t.comm, &t.cfg, t.be, t.model, t.zero, &t.dist));
    if (st != DLT_OK) {
        if (t.rank == 0) fprintf(stderr, "dltrain: error: %s\n", dlt_last_error());
        dlt_dist_free(t.dist, NULL);
        dlt_comm_free(t.comm);
        return 1;
    }

    train_loop(&t);

    if (t.jsonl) fclose(t.jsonl);
    dlt_tboard_close(t.tb);
    dlt_dist_free(t.dist, t.run_dir);
    dlt_optim_free(&t.opt);
    dlt_zero_free(t.zero);
    dlt_model_free(t.model);
    dlt_staging_free(&t.stg); /* first: its uploads may read the loaders' buffers */
    if (t.test_ld) dlt_loader_free(t.test_ld);
    if (t.train_ld) dlt_loader_free(t.train_ld);
    if (t.test_ds) dlt_dataset_close(t.test_ds);
    if (t.train_ds) dlt_dataset_close(t.train_ds);
    dlt_text_free(t.text);
    dlt_freeze_free(t.freeze);
    t.be->destroy(t.be);
    dlt_comm_free(t.comm);
    return 0;
}
