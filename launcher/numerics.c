/* Numerical safety: NaN/Inf detection with a stop-or-skip policy, and the
 * stop-signal flag, both decided collectively once per step.
 *
 * Design. Detection costs nothing extra on the happy path: the optimizer
 * already computes the global gradient norm (one sumsq) and fails with
 * DLT_ERR_NUMERIC, touching nothing, when it is not finite; the loss is
 * checked on the host where the trainer already sums it. The one added
 * collective is a 2-double allreduce (signal caught, loss not finite) that
 * lets every rank take the same branch. Only on the failure path do we spend
 * more: a world-sized allreduce to name the lowest rank with a bad loss,
 * and a scan of the gradient arena, parameter by parameter in arena order
 * (backward order: the layer nearest the loss first, where a NaN usually
 * enters backprop), to name the first layer with a non-finite gradient.
 * With ZeRO-1 a rank holds the global gradient only in its pieces, so the
 * ranks sum per-parameter flags to agree on that layer (first_bad_layer).
 *
 * The signal flag is the one piece of process-global state: a handler can
 * reach nothing else. */
#include "launcher/numerics.h"

#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static volatile sig_atomic_t caught_signal;

static void on_signal(int sig)
{
    if (sig == SIGTERM && caught_signal == SIGTERM) {
        /* a second SIGTERM: the user (or Slurm) means it */
        signal(SIGTERM, SIG_DFL);
        raise(SIGTERM);
        return;
    }
    caught_signal = sig;
}

void dlt_signals_install(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGUSR1, &sa, NULL);
}

int dlt_signal_caught(void) { return caught_signal; }

/* The lowest rank whose flag is set, -1 if none. Collective. */
static dlt_status lowest_rank(dlt_comm_t comm, int mine, int *out)
{
    int world = dlt_comm_size(comm), rank = dlt_comm_rank(comm);
    *out = -1;
    double *v = calloc((size_t)world, sizeof *v);
    if (!v) return DLT_ERR(DLT_ERR_NOMEM, "out of memory");
    v[rank] = mine;
    dlt_status st = world > 1 ? dlt_comm_allreduce_f64(comm, v, (size_t)world) : DLT_OK;
    for (int r = 0; st == DLT_OK && r < world; r++)
        if (v[r] > 0) {
            *out = r;
            break;
        }
    free(v);
    return st;
}

/* 1 if a non-finite value lies in host[0, k), the gradient of the
 * parameter at arena offset a, where this rank holds the global gradient:
 * everywhere without a shard; with a ZeRO-1 shard only in its segments
 * (the rest of the arena keeps local values that are no gradient). */
static int nonfinite_in(const float *host, size_t a, size_t k, const dlt_optim_shard *sh)
{
    if (!sh) {
        for (size_t j = 0; j < k; j++)
            if (!isfinite(host[j])) return 1;
        return 0;
    }
    for (size_t s = 0; s < sh->count; s++) {
        size_t lo = sh->off[s] > a ? sh->off[s] : a, hi = sh->off[s] + sh->len[s];
        if (hi > a + k) hi = a + k;
        for (size_t j = lo; j < hi; j++)
            if (!isfinite(host[j - a])) return 1;
    }
    return 0;
}

/* "layer 'fc3' (fc3.weight), 3 of 4 layers": the first parameter, in arena
 * order, whose global gradient holds a NaN or Inf. Collective with a shard:
 * each rank sees only its pieces of the global gradient, so every rank
 * flags the parameters its pieces show bad and one sum over the shards
 * (o->shard->sum, the guarded allreduce) gives every rank the same flags,
 * hence the same answer, the right one even when the overflow lies in
 * another rank's piece. Without a shard the arena is the same global
 * gradient on every rank and no message is needed. */
static dlt_status first_bad_layer(dlt_model *m, const dlt_optim *o, char *buf, size_t len)
{
    int np = dlt_model_n_params(m);
    size_t cap = 0, n;
    const float *base = dlt_model_grads(m, &n);
    for (int i = 0; i < np; i++) {
        size_t k = (size_t)dlt_shape_numel(&dlt_model_param(m, i)->shape);
        if (k > cap) cap = k;
    }
    float *host = malloc((cap ? cap : 1) * sizeof *host);
    double *bad = calloc(np > 0 ? (size_t)np : 1, sizeof *bad); /* (np) 1: that gradient is not finite */
    dlt_status st = host && bad ? DLT_OK : DLT_ERR(DLT_ERR_NOMEM, "out of memory naming the non-finite layer");
    dlt_backend *be = dlt_model_layer(m, 0)->be;
    for (int i = 0; st == DLT_OK && i < np; i++) {
        const dlt_param *p = dlt_model_param(m, i);
        size_t k = (size_t)dlt_shape_numel(&p->shape);
        /* an unreadable gradient counts as finite: the name is a hint */
        if (be->download(be, host, p->g, k * sizeof *host) == DLT_OK)
            bad[i] = nonfinite_in(host, (size_t)(p->g - base), k, o->shard);
    }
    /* every rank takes part, even one out of memory, so none is left waiting */
    if (o->shard && np > 0) {
        if (st != DLT_OK && bad) memset(bad, 0, (size_t)np * sizeof *bad);
        double zero = 0;
        dlt_status s2 = o->shard->sum(o->shard->ctx, bad ? bad : &zero, bad ? (size_t)np : 1);
        if (st == DLT_OK) st = s2;
    }
    int nbad = 0, first = -1, layers = 0;
    char cur[DLT_NAME_LEN] = "", counted[DLT_NAME_LEN] = "";
    for (int i = 0; st == DLT_OK && i < np; i++) {
        const dlt_param *p = dlt_model_param(m, i);
        char layer[DLT_NAME_LEN];
        snprintf(layer, sizeof layer, "%s", p->name);
        char *dot = strrchr(layer, '.');
        if (dot) *dot = '\0';
        if (strcmp(layer, cur)) layers++;
        snprintf(cur, sizeof cur, "%s", layer);
        if (bad[i] == 0 || !strcmp(counted, layer)) continue;
        snprintf(counted, sizeof counted, "%s", layer);
        nbad++;
        if (first < 0) {
            first = i;
            snprintf(buf, len, "layer '%s' (%s)", layer, p->name);
        }
    }
    free(host);
    free(bad);
    if (st != DLT_OK) return st;
    if (first < 0) {
        snprintf(buf, len, "none (the gradients are finite)");
    } else {
        size_t l = strlen(buf);
        snprintf(buf + l, len - l, ", %d of %d layers", nbad, layers);
    }
    return DLT_OK;
}

dlt_status dlt_numerics_step(dlt_numerics *nm, dlt_comm_t comm, dlt_model *m, dlt_optim *o, int64_t step,
                             double local_loss, double *grad_norm, int *applied, int *stop)
{
    int world = dlt_comm_size(comm), rank = dlt_comm_rank(comm);
    nm->steps++;
    int loss_bad = !isfinite(local_loss);
    double flags[2] = { caught_signal != 0, loss_bad };
    if (world > 1) DLT_CHECK(dlt_comm_allreduce_f64(comm, flags, 2));
    *stop = flags[0] > 0;
    *applied = 0;

    size_t n;
    float *w = dlt_model_params(m, &n);
    float *g = dlt_model_grads(m, &n);
    if (flags[1] == 0) {
        dlt_status st = dlt_optim_step(o, w, g, grad_norm);
        if (st == DLT_OK) {
            nm->skips = 0;
            *applied = 1;
            return DLT_OK;
        }
        if (st != DLT_ERR_NUMERIC) return st;
    } else {
        *grad_norm = NAN;
    }

    /* Not finite, on every rank alike. Gather what a user needs to know. */
    int bad_rank;
    DLT_CHECK(lowest_rank(comm, loss_bad, &bad_rank));
    char where[256], layer[160];
    if (bad_rank >= 0)
        snprintf(where, sizeof where, "loss not finite first on rank %d", bad_rank);
    else
        snprintf(where, sizeof where, "every rank's loss finite, grad norm %s", isnan(*grad_norm) ? "nan" : "inf");
    DLT_CHECK(first_bad_layer(m, o, layer, sizeof layer));
    const char *what = strncmp(layer, "none", 4) ? "the gradients are not finite" : "the loss is not finite";

    if (nm->skip && nm->skips + 1 < nm->max_skips) {
        nm->skips++;
        nm->skipped++;
        if (rank == 0 || nm->all_ranks_report) {
            char who[24] = "";
            if (rank) snprintf(who, sizeof who, "rank %d: ", rank);
            fprintf(stderr, "dltrain: %swarning: step %lld skipped: not finite (%s; first non-finite gradient: %s); "
                    "%d in a row of train.max_skips %d\n", who, (long long)step, where, layer, nm->skips,
                    nm->max_skips);
            fflush(stderr);
        }
        return DLT_OK;
    }
    if (nm->skip)
        return DLT_ERR(DLT_ERR_NUMERIC, "step %lld: %s for %d steps in a row "
                       "(train.max_skips %d; %s; first non-finite gradient in backward order: %s); "
                       "check the data or lower optimizer.lr / set optimizer.clip_norm",
                       (long long)step, what, nm->skips + 1, nm->max_skips, where, layer);
    return DLT_ERR(DLT_ERR_NUMERIC, "step %lld: %s (%s; first non-finite gradient in "
                   "backward order: %s); check the data or lower optimizer.lr / set optimizer.clip_norm, "
                   "or train.nonfinite=skip", (long long)step, what, where, layer);
}

void dlt_numerics_times(dlt_numerics *nm, double data_wait, double out[DLT_TIME_N])
{
    double k = nm->steps > 0 ? (double)nm->steps : 1.0;
    nm->time[DLT_TIME_DATA] = data_wait;
    for (int i = 0; i < DLT_TIME_N; i++) {
        out[i] = nm->time[i] / k;
        nm->time[i] = 0;
    }
    nm->steps = 0;
}
