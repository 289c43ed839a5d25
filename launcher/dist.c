/* Data-parallel glue of the trainer (see dist.h).
 *
 * The model calls our grad-ready hook after each layer's backward with the
 * length of the final prefix of the gradient arena; on the last micro-batch
 * of a step that is handed to the buckets (comm/bucket.c), which start the
 * reduction of every complete bucket at once and drive those in flight.
 * Earlier micro-batches only accumulate into the arena: gradient
 * accumulation communicates once per optimizer step.
 *
 * On a CUDA backend the buckets use NCCL (comm/nccl/, inside
 * libdltcuda.so). The program does not link NCCL: its functions are looked
 * up in the library that defines the backend's functions (dladdr on the
 * backend's destroy pointer, as core/device.c does), so a CPU-only run
 * never loads it. The NCCL communicator is bootstrapped the usual way: a
 * unique id from rank 0, broadcast over MPI.
 *
 * ZeRO-1 (comm.zero, comm/zero.h) changes only which collectives the
 * buckets run: reduce-scatter per bucket (NCCL: ncclReduceScatter) and,
 * after the optimizer, one all-gather of the parameters (dlt_dist_gather).
 *
 * The overlap trace (rank 0, JSON lines) keeps the times of one step in
 * memory and writes them after the reduction, so writing does not disturb
 * what it measures. Times are seconds since dlt_dist_init. */
#include "launcher/dist.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "comm/bucket.h"
#include "comm/nccl/nccl.h"
#include "core/device.h"

typedef struct {
    double t;
    int layer;
    size_t ready;
} layer_ev;

struct dlt_dist {
    dlt_comm_t comm;
    int rank, world;
    dlt_model *model;
    dlt_buckets_t buckets;       /* NULL in a world of one */
    size_t bucket_floats;

    /* NCCL (CUDA backend only) */
    dlt_nccl_t nccl;
    dlt_nccl_allreduce_start_fn nccl_start;
    dlt_nccl_wait_all_fn nccl_wait;
    dlt_nccl_free_fn nccl_free;
    dlt_nccl_abort_fn nccl_abort;
    dlt_nccl_shard_start_fn nccl_rs, nccl_ag;   /* ZeRO-1 only */
    dlt_zero *zero;              /* ZeRO-1 plan (the trainer's), NULL: allreduce */

    int armed;                   /* this backward is the step's last micro-batch */
    int64_t step;
    double t0, t_begin, t_bwd_end;

    FILE *trace;                 /* rank 0 with comm.trace set */
    layer_ev *ev;                /* (n_layers) this step's layer times */
    int n_ev;

    double timeout_s;            /* comm.timeout_s, for NCCL */
    int64_t steps;               /* statistics for comm.json */
    double backward_s, wait_s, comm_s;
    double gather_s;             /* ZeRO-1: the parameter all-gathers */
};

/* Looks up `name` in the shared object that implements backend be. */
static void *backend_sym(const dlt_backend *be, const char *name)
{
    Dl_info info;
    void *fn;
    memcpy(&fn, &be->destroy, sizeof fn);
    if (!fn || !dladdr(fn, &info) || !info.dli_fname) return NULL;
    void *h = dlopen(info.dli_fname, RTLD_NOW | RTLD_LOCAL | RTLD_NOLOAD);
    if (!h) return NULL;
    void *sym = dlsym(h, name);
    dlclose(h); /* drops only our reference: the library stays loaded */
    return sym;
}

#define LOOKUP(be, var, symbol)                                                        \
    do {                                                                               \
        void *s_ = backend_sym((be), (symbol));                                        \
        if (!s_)                                                                       \
            return DLT_ERR(DLT_ERR_DEVICE, "backend %s has no %s (rebuild libdltcuda.so)", \
                           (be)->name, (symbol));                                      \
        memcpy(&(var), &s_, sizeof s_);                                                \
    } while (0)

/* Hash of the resolved config as dlt_config_write prints it, run_dir left
 * out: its default holds the start time, which may differ by a second. */
static dlt_status config_hash(const dlt_config *cfg, uint64_t *out)
{
    dlt_config *copy = malloc(sizeof *copy);
    if (!copy) return DLT_ERR(DLT_ERR_NOMEM, "out of memory hashing the config");
    *copy = *cfg;
    copy->run_dir[0] = '\0';
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f) {
        free(copy);
        return DLT_ERR(DLT_ERR_NOMEM, "out of memory hashing the config");
    }
    dlt_config_write(copy, f);
    fclose(f);
    *out = dlt_hash_bytes(DLT_HASH_INIT, text, len);
    free(text);
    free(copy);
    return DLT_OK;
}

/* Contract: see dist.h. */
dlt_status dlt_dist_check_start(dlt_comm_t c, const dlt_config *cfg, dlt_backend *be)
{
    uint64_t h_cfg = 0, h_bin = 0;
    /* local failures are agreed first so every rank enters the same collectives */
    dlt_status st = config_hash(cfg, &h_cfg);
    if (st == DLT_OK) st = dlt_hash_file("/proc/self/exe", &h_bin);
    char bus[64] = "";
    if (st == DLT_OK && strcmp(be->name, "cpu") != 0) {
        dlt_nccl_bus_id_fn bus_id = NULL;
        void *s = backend_sym(be, DLT_NCCL_BUS_ID_SYMBOL);
        memcpy(&bus_id, &s, sizeof s);
        st = bus_id ? bus_id(be, bus, sizeof bus)
                    : DLT_ERR(DLT_ERR_DEVICE, "backend %s has no %s (rebuild libdltcuda.so)",
                              be->name, DLT_NCCL_BUS_ID_SYMBOL);
    }
    DLT_CHECK(dlt_comm_agree(c, st));
    DLT_CHECK(dlt_comm_check_same(c, "config", h_cfg));
    DLT_CHECK(dlt_comm_check_same(c, "binary (/proc/self/exe)", h_bin));

    char desc[256];
    dlt_device_describe(be, desc, sizeof desc);
    char *table = NULL;
    st = dlt_comm_rank_table(c, desc, bus, &table);
    if (table && dlt_comm_rank(c) == 0) {
        printf("%s", table);
        fflush(stdout);
    }
    free(table);
    return st;
}

/* The model's grad-ready hook. */
static dlt_status on_grad_ready(void *user, int layer, size_t n_ready)
{
    dlt_dist *d = user;
    if (!d->armed) return DLT_OK;
    double t = dlt_buckets_now();
    if (d->trace && d->n_ev < dlt_model_n_layers(d->model))
        d->ev[d->n_ev++] = (layer_ev){ t - d->t0, layer, n_ready };
    if (layer == 0) d->t_bwd_end = t;
    return d->buckets ? dlt_buckets_ready(d->buckets, n_ready) : DLT_OK;
}

static dlt_status dev_start(void *ctx, float *buf, size_t n)
{
    dlt_dist *d = ctx;
    return d->nccl_start(d->nccl, buf, n);
}

static dlt_status dev_reduce_scatter(void *ctx, float *buf, size_t n)
{
    dlt_dist *d = ctx;
    return d->nccl_rs(d->nccl, buf, n);
}

static dlt_status dev_all_gather(void *ctx, float *buf, size_t n)
{
    dlt_dist *d = ctx;
    return d->nccl_ag(d->nccl, buf, n);
}

static dlt_status dev_wait(void *ctx)
{
    dlt_dist *d = ctx;
    return d->nccl_wait(d->nccl);
}

/* NCCL communicator over all ranks on the GPU of be. Collective. */
static dlt_status nccl_setup(dlt_dist *d, dlt_backend *be)
{
    dlt_nccl_unique_id_fn unique_id;
    dlt_nccl_init_fn init;
    LOOKUP(be, unique_id, DLT_NCCL_UNIQUE_ID_SYMBOL);
    LOOKUP(be, init, DLT_NCCL_INIT_SYMBOL);
    LOOKUP(be, d->nccl_start, DLT_NCCL_ALLREDUCE_START_SYMBOL);
    LOOKUP(be, d->nccl_wait, DLT_NCCL_WAIT_ALL_SYMBOL);
    LOOKUP(be, d->nccl_free, DLT_NCCL_FREE_SYMBOL);
    LOOKUP(be, d->nccl_abort, DLT_NCCL_ABORT_SYMBOL);
    if (d->zero) {
        LOOKUP(be, d->nccl_rs, DLT_NCCL_REDUCE_SCATTER_START_SYMBOL);
        LOOKUP(be, d->nccl_ag, DLT_NCCL_ALL_GATHER_START_SYMBOL);
    }
    unsigned char id[DLT_NCCL_ID_BYTES] = { 0 };
    dlt_status st = d->rank == 0 ? unique_id(id) : DLT_OK;
    DLT_CHECK(dlt_comm_agree(d->comm, st));
    DLT_CHECK(dlt_comm_bcast(d->comm, id, sizeof id, 0));
    return init(be, id, d->world, d->rank, d->timeout_s, &d->nccl);
}

/* Opens rank 0's overlap trace (comm.trace or env DLT_COMM_TRACE). Called
 * after the collective set-up: a failure here is rank 0's alone, and
 * returning before NCCL's or the buckets' collectives would leave the other
 * ranks matching them against the caller's dlt_comm_agree. */
static dlt_status open_trace(dlt_dist *d, const dlt_config *cfg)
{
    const char *trace = cfg->comm_trace[0] ? cfg->comm_trace : getenv("DLT_COMM_TRACE");
    if (d->rank != 0 || !trace || !trace[0]) return DLT_OK;
    d->trace = fopen(trace, "w");
    if (!d->trace) return DLT_ERR(DLT_ERR_IO, "%s: cannot write the comm trace", trace);
    d->ev = calloc((size_t)dlt_model_n_layers(d->model), sizeof *d->ev);
    if (!d->ev) return DLT_ERR(DLT_ERR_NOMEM, "out of memory for the comm trace");
    return DLT_OK;
}

/* Contract: see dist.h. */
size_t dlt_dist_bucket_floats(const dlt_config *cfg)
{
    double floats = (double)cfg->bucket_mb * 1048576.0 / sizeof(float);
    return cfg->bucket_mb > 0 ? (floats < 1 ? 1 : (size_t)floats) : 0;
}

/* Contract: see dist.h. */
dlt_status dlt_dist_init(dlt_comm_t c, const dlt_config *cfg, dlt_backend *be, dlt_model *m,
                         dlt_zero *zero, dlt_dist **out)
{
    *out = NULL;
    dlt_dist *d = calloc(1, sizeof *d);
    if (!d) return DLT_ERR(DLT_ERR_NOMEM, "out of memory");
    d->comm = c;
    d->rank = dlt_comm_rank(c);
    d->world = dlt_comm_size(c);
    d->model = m;
    d->zero = zero;
    d->t0 = dlt_buckets_now();
    d->timeout_s = cfg->comm_timeout_s > 0 ? cfg->comm_timeout_s : 60.0;
    *out = d; /* freed by the caller on failure too */

    dlt_model_set_grad_hook(m, on_grad_ready, d);
    if (d->world == 1) return open_trace(d, cfg);

    d->bucket_floats = dlt_dist_bucket_floats(cfg);
    size_t n;
    float *g = dlt_model_grads(m, &n);
    dlt_bucket_device_ops ops = { .ctx = d, .start = dev_start, .wait_all = dev_wait,
                                  .reduce_scatter = dev_reduce_scatter, .all_gather = dev_all_gather };
    int on_gpu = strcmp(be->name, "cpu") != 0;
    if (on_gpu) DLT_CHECK(nccl_setup(d, be));
    if (zero) {
        if (dlt_zero_arena(zero) != n || dlt_zero_world(zero) != d->world)
            return DLT_ERR(DLT_ERR_INVALID, "ZeRO plan of %zu floats over %d ranks for an arena of %zu over %d",
                           dlt_zero_arena(zero), dlt_zero_world(zero), n, d->world);
        DLT_CHECK(dlt_buckets_init_zero(c, g, zero, on_gpu ? &ops : NULL, &d->buckets));
    } else {
        DLT_CHECK(dlt_buckets_init(c, g, n, d->bucket_floats, on_gpu ? &ops : NULL, &d->buckets));
    }
    return open_trace(d, cfg);
}

/* Contract: see dist.h. */
dlt_status dlt_dist_begin(dlt_dist *d, int64_t step, int last)
{
    d->armed = last;
    d->step = step;
    if (!last) return DLT_OK;
    d->n_ev = 0;
    d->t_begin = d->t_bwd_end = dlt_buckets_now();
    return d->buckets ? dlt_buckets_begin(d->buckets) : DLT_OK;
}

/* Writes this step's trace lines. */
static void write_trace(dlt_dist *d, double t_done)
{
    FILE *f = d->trace;
    long long s = (long long)d->step;
    fprintf(f, "{\"step\": %lld, \"event\": \"backward_start\", \"t\": %.6f}\n", s, d->t_begin - d->t0);
    for (int i = 0; i < d->n_ev; i++) {
        const dlt_layer *l = dlt_model_layer(d->model, d->ev[i].layer);
        fprintf(f, "{\"step\": %lld, \"event\": \"layer\", \"layer\": %d, \"name\": \"%s\", "
                   "\"ready\": %zu, \"t\": %.6f}\n",
                s, d->ev[i].layer, l->spec->name, d->ev[i].ready, d->ev[i].t);
    }
    int nb = d->buckets ? dlt_buckets_count(d->buckets) : 0;
    for (int i = 0; i < nb; i++) {
        size_t off, len;
        double t1, t2;
        dlt_buckets_range(d->buckets, i, &off, &len);
        dlt_buckets_times(d->buckets, i, &t1, &t2);
        fprintf(f, "{\"step\": %lld, \"event\": \"bucket_start\", \"bucket\": %d, \"offset\": %zu, "
                   "\"floats\": %zu, \"t\": %.6f}\n",
                s, i, off, len, t1 - d->t0);
        fprintf(f, "{\"step\": %lld, \"event\": \"bucket_end\", \"bucket\": %d, \"t\": %.6f}\n", s, i,
                t2 - d->t0);
    }
    fprintf(f, "{\"step\": %lld, \"event\": \"backward_end\", \"t\": %.6f}\n", s, d->t_bwd_end - d->t0);
    fprintf(f, "{\"step\": %lld, \"event\": \"reduced\", \"t\": %.6f}\n", s, t_done - d->t0);
}

/* Seconds during which at least one bucket's reduction was in flight this
 * step: the union of the buckets' [start, end] intervals (they start in
 * order, so one pass merges them). */
static double comm_busy(dlt_buckets_t b)
{
    double busy = 0, lo = 0, hi = -1;
    for (int i = 0; i < dlt_buckets_count(b); i++) {
        double t1, t2;
        dlt_buckets_times(b, i, &t1, &t2);
        if (t1 > hi) {
            if (hi > lo) busy += hi - lo;
            lo = t1;
            hi = t2;
        } else if (t2 > hi) {
            hi = t2;
        }
    }
    return busy + (hi > lo ? hi - lo : 0);
}

/* Contract: see dist.h. */
dlt_status dlt_dist_finish(dlt_dist *d)
{
    double t = dlt_buckets_now();
    if (d->buckets) DLT_CHECK(dlt_buckets_finish(d->buckets));
    double t_done = dlt_buckets_now();
    d->steps++;
    d->backward_s += d->t_bwd_end - d->t_begin;
    d->wait_s += t_done - t;
    if (d->buckets) d->comm_s += comm_busy(d->buckets);
    if (d->trace) write_trace(d, t_done);
    d->armed = 0;
    return DLT_OK;
}

/* Contract: see dist.h. */
dlt_status dlt_dist_gather(dlt_dist *d)
{
    if (!d->zero || !d->buckets) return DLT_OK;
    size_t n;
    double t = dlt_buckets_now();
    DLT_CHECK(dlt_buckets_gather(d->buckets, dlt_model_params(d->model, &n)));
    d->gather_s += dlt_buckets_now() - t;
    return DLT_OK;
}

/* Contract: dist.h. */
void dlt_dist_abort(dlt_dist *d)
{
    if (d && d->nccl && d->nccl_abort) d->nccl_abort(d->nccl);
}

/* Contract: see dist.h. */
void dlt_dist_free(dlt_dist *d, const char *run_dir)
{
    if (!d) return;
    if (d->rank == 0 && run_dir && run_dir[0] && d->steps > 0) {
        char path[DLT_PATH_LEN + 32];
        snprintf(path, sizeof path, "%s/comm.json", run_dir);
        FILE *f = fopen(path, "w");
        if (f) {
            size_t n;
            dlt_model_grads(d->model, &n);
            fprintf(f, "{\"world\": %d, \"grad_floats\": %zu, \"buckets\": %d, \"bucket_floats\": %zu, "
                       "\"steps\": %lld, \"backward_s_per_step\": %.6f, \"wait_s_per_step\": %.6f, "
                       "\"comm_s_per_step\": %.6f, \"comm_thread\": %d, \"zero\": %d, "
                       "\"gather_s_per_step\": %.6f}\n",
                    d->world, n, d->buckets ? dlt_buckets_count(d->buckets) : 0, d->bucket_floats,
                    (long long)d->steps, d->backward_s / (double)d->steps, d->wait_s / (double)d->steps,
                    d->comm_s / (double)d->steps, d->buckets ? dlt_buckets_threaded(d->buckets) : 0, d->zero != NULL,
                    d->gather_s / (double)d->steps);
            fclose(f);
        }
    }
    if (d->trace) fclose(d->trace);
    if (d->nccl && d->nccl_free) d->nccl_free(d->nccl);
    dlt_buckets_free(d->buckets);
    free(d->ev);
    free(d);
}
