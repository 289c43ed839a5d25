/* A training run's checkpoint policy: where, when, which to keep, resume.
 *
 * Design. Only rank 0 writes (every replica is identical after the
 * optimizer step); the outcome is agreed with dlt_comm_agree so every rank
 * leaves together when the disk is full. Every rank reads at start-up
 * (checkpoints live on a file system all ranks see, like the data), which
 * needs no broadcast of optimizer state. Resuming never depends on the
 * world size: the sampler re-splits the same global batches, so only the
 * global batch must match (checked by dlt_ckpt_load).
 *
 * ZeRO-1 (comm.zero): each rank holds only its shard of the optimizer
 * state, so saving is collective: every rank downloads its shard and
 * rank 0 gathers them into the full arena layout (dlt_zero_gather) before
 * it writes, which keeps the file independent of ranks and of ZeRO.
 * Loading needs nothing: each rank keeps its segments of what it reads.
 *
 * "resume: auto" looks in this run's checkpoint directory; when run_dir was
 * left to its default (a new timestamped directory per launch) it looks in
 * every runs/<name>-*\/checkpoints instead, so re-submitting the same job
 * script continues the newest run. */
#include "launcher/checkpoint.h"

#include <errno.h>
#include <glob.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "launcher/metrics.h"

static int is_dir(const char *p)
{
    struct stat sb;
    return stat(p, &sb) == 0 && S_ISDIR(sb.st_mode);
}

/* Was run_dir derived from the name and the time (config.c's default)? */
static int default_run_dir(const dlt_config *c)
{
    char prefix[200];
    snprintf(prefix, sizeof prefix, "runs/%s-", c->name);
    size_t l = strlen(prefix);
    return !strncmp(c->run_dir, prefix, l) && strlen(c->run_dir + l) == 15 && c->run_dir[l + 8] == '-';
}

/* Newest complete checkpoint for "auto"; *found = 0 if none. */
static dlt_status find_auto(const dlt_ckpt_run *r, const dlt_config *c, char *path, size_t len, int *found)
{
    int warn = r->rank == 0;
    DLT_CHECK(dlt_ckpt_find_latest(r->dir, warn, path, len, found));
    if (*found || c->ckpt_dir[0] || !default_run_dir(c)) return DLT_OK;
    char pat[300];
    snprintf(pat, sizeof pat, "runs/%s-*/checkpoints", c->name);
    glob_t g;
    if (glob(pat, 0, NULL, &g) != 0) return DLT_OK;
    /* timestamped names sort by time: the newest run that has one wins */
    for (size_t i = g.gl_pathc; i-- > 0 && !*found;) {
        dlt_status st = dlt_ckpt_find_latest(g.gl_pathv[i], warn, path, len, found);
        if (st != DLT_OK) {
            globfree(&g);
            return st;
        }
    }
    globfree(&g);
    return DLT_OK;
}

dlt_status dlt_ckpt_run_start(dlt_ckpt_run *r, const dlt_ckpt_src *src, dlt_comm_t comm, dlt_train_pos *pos)
{
    const dlt_config *c = src->cfg;
    memset(r, 0, sizeof *r);
    r->src = *src;
    r->comm = comm;
    r->rank = dlt_comm_rank(comm);
    if (c->ckpt_dir[0])
        snprintf(r->dir, sizeof r->dir, "%s", c->ckpt_dir);
    else
        snprintf(r->dir, sizeof r->dir, "%s/checkpoints", c->run_dir);
    memset(pos, 0, sizeof *pos);
    pos->best = pos->best_ckpt = NAN;

    char path[sizeof r->resumed_from];
    int found = 0;
    if (!strcmp(c->resume, "auto")) {
        DLT_CHECK(find_auto(r, c, path, sizeof path, &found));
        if (!found && r->rank == 0) printf("resume: no complete checkpoint in %s, starting fresh\n", r->dir);
    } else if (c->resume[0] && is_dir(c->resume)) {
        DLT_CHECK(dlt_ckpt_find_latest(c->resume, r->rank == 0, path, sizeof path, &found));
        if (!found)
            return DLT_ERR(DLT_ERR_IO, "checkpoint.resume: %s holds no complete checkpoint", c->resume);
    } else if (c->resume[0]) {
        snprintf(path, sizeof path, "%s", c->resume);
        char man[DLT_PATH_LEN + 16];
        size_t l = strlen(path);
        if (l > 3 && !strcmp(path + l - 3, ".h5")) l -= 3;
        snprintf(man, sizeof man, "%.*s.manifest", (int)l, path);
        /* a named file must be whole; one without a manifest is taken as is */
        FILE *mf = fopen(man, "r");
        if (mf) {
            fclose(mf);
            DLT_CHECK(dlt_ckpt_verify(path));
        }
        found = 1;
    }
    if (found) {
        DLT_CHECK(dlt_ckpt_load(path, src, pos));
        snprintf(r->resumed_from, sizeof r->resumed_from, "%s", path);
        if (r->rank == 0) {
            printf("resumed from %s: step %lld, epoch %lld\n", path, (long long)pos->step, (long long)pos->epoch + 1);
            fflush(stdout);
        }
        return DLT_OK;
    }
    if (!c->init_from[0]) return DLT_OK;
    int loaded, kept;
    FILE *summary = r->rank == 0 ? stdout : NULL;
    if (summary) printf("init_from %s:\n", c->init_from);
    DLT_CHECK(dlt_ckpt_load_weights(c->init_from, src->model, 0, &loaded, &kept, summary));
    if (loaded == 0)
        return DLT_ERR(DLT_ERR_INVALID, "model.init_from %s: no layer of this model (same name and shape) is in "
                       "that checkpoint", c->init_from);
    if (summary) {
        printf("init_from: %d parameters loaded, %d initialised\n", loaded, kept);
        fflush(stdout);
    }
    return DLT_OK;
}

/* ZeRO-1, collective: rank 0 receives the optimizer state of every rank in
 * full layout, full[k] (host, malloc'ed, the caller frees; NULL elsewhere
 * and for unused arenas). Local failures are agreed before the gathers so
 * no rank waits in one alone. */
static dlt_status gather_opt(dlt_ckpt_run *r, float *full[2])
{
    dlt_optim *o = r->src.opt;
    dlt_zero *z = r->src.zero;
    size_t n = dlt_zero_arena(z), mine = dlt_optim_state_floats(o);
    float *arena[2] = { o->s1, o->s2 };
    float *packed = malloc((mine ? mine : 1) * sizeof *packed);
    dlt_status st = packed ? DLT_OK : DLT_ERR(DLT_ERR_NOMEM, "checkpoint: out of host memory");
    for (int k = 0; k < 2 && st == DLT_OK && r->rank == 0; k++)
        if (arena[k] && !(full[k] = malloc((n ? n : 1) * sizeof *full[k])))
            st = DLT_ERR(DLT_ERR_NOMEM, "checkpoint: out of host memory for the optimizer state");
    st = dlt_comm_agree(r->comm, st);
    for (int k = 0; k < 2 && st == DLT_OK; k++) {
        if (!arena[k]) continue; /* alike on every rank: the same optimizer */
        dlt_status dl = o->be->download(o->be, packed, arena[k], mine * sizeof *packed);
        st = dlt_comm_agree(r->comm, dl);
        if (st == DLT_OK) st = dlt_zero_gather(z, packed, full[k], 0);
    }
    free(packed);
    return st;
}

/* Collective: rank 0 writes file (in_dir: a file of the checkpoint
 * directory, created if need be, and pruned to checkpoint.keep when prune);
 * every rank returns rank 0's outcome. */
static dlt_status save_agreed(dlt_ckpt_run *r, const dlt_train_pos *pos, const char *file, int in_dir, int prune)
{
    dlt_ckpt_src src = r->src;
    float *full[2] = { NULL, NULL };
    dlt_status st = DLT_OK;
    if (src.zero && src.opt) {
        st = gather_opt(r, full);
        src.opt_full[0] = full[0];
        src.opt_full[1] = full[1];
    }
    if (r->rank == 0 && st == DLT_OK) {
        if (in_dir) st = dlt_mkdirs(r->dir);
        if (st == DLT_OK) st = dlt_ckpt_save(&src, pos, file);
        if (st == DLT_OK && prune) st = dlt_ckpt_prune(r->dir, r->src.cfg->ckpt_keep);
    }
    free(full[0]);
    free(full[1]);
    return dlt_comm_agree(r->comm, st);
}

dlt_status dlt_ckpt_run_save(dlt_ckpt_run *r, const dlt_train_pos *pos, const char *name, char *path, size_t len)
{
    char file[sizeof r->dir + 64];
    if (name)
        snprintf(file, sizeof file, "%s/%s.h5", r->dir, name);
    else
        snprintf(file, sizeof file, "%s/ckpt-%08lld.h5", r->dir, (long long)pos->step);
    dlt_status st = save_agreed(r, pos, file, 1, !name);
    if (st != DLT_OK) {
        char why[768]; /* the message is formatted into the buffer it quotes */
        snprintf(why, sizeof why, "%s", dlt_last_error());
        return DLT_ERR(st, "checkpoint not written (earlier ones are intact): %s", why);
    }
    if (path) snprintf(path, len, "%s", file);
    return DLT_OK;
}

dlt_status dlt_ckpt_run_save_file(dlt_ckpt_run *r, const dlt_train_pos *pos, const char *file)
{
    return save_agreed(r, pos, file, 0, 0);
}

dlt_status dlt_ckpt_run_step(dlt_ckpt_run *r, const dlt_train_pos *pos)
{
    int64_t every = r->src.cfg->ckpt_every;
    if (every <= 0 || pos->step % every != 0) return DLT_OK;
    return dlt_ckpt_run_save(r, pos, NULL, NULL, 0);
}

dlt_status dlt_ckpt_run_eval(dlt_ckpt_run *r, dlt_train_pos *pos, double loss, double accuracy)
{
    const char *m = r->src.cfg->ckpt_best;
    if (!m[0]) return DLT_OK;
    int maximize = !strcmp(m, "accuracy");
    double v = maximize ? accuracy : loss;
    if (isnan(v) || !(isnan(pos->best_ckpt) || (maximize ? v > pos->best_ckpt : v < pos->best_ckpt)))
        return DLT_OK;
    pos->best_ckpt = v;
    char path[sizeof r->dir + 64];
    DLT_CHECK(dlt_ckpt_run_save(r, pos, "best", path, sizeof path));
    if (r->rank == 0) printf("checkpoint: %s (eval %s %.4f)\n", path, m, v);
    return DLT_OK;
}

dlt_status dlt_jsonl_truncate(const char *path, int64_t step)
{
    FILE *f = fopen(path, "r");
    if (!f) return errno == ENOENT ? DLT_OK : DLT_ERR(DLT_ERR_IO, "%s: cannot read: %s", path, strerror(errno));
    char tmp[DLT_PATH_LEN + 16];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *o = fopen(tmp, "w");
    if (!o) {
        fclose(f);
        return DLT_ERR(DLT_ERR_IO, "%s: cannot write: %s", tmp, strerror(errno));
    }
    char *line = NULL;
    size_t cap = 0;
    while (getline(&line, &cap, f) > 0) {
        const char *s = strstr(line, "\"step\":");
        long long v;
        if (s && sscanf(s + 7, " %lld", &v) == 1 && v > step) continue;
        fputs(line, o);
    }
    free(line);
    fclose(f);
    int bad = fclose(o) != 0;
    if (bad || rename(tmp, path) != 0) {
        remove(tmp);
        return DLT_ERR(DLT_ERR_IO, "%s: cannot rewrite", path);
    }
    return DLT_OK;
}

dlt_status dlt_loader_skip(dlt_loader_t l, int64_t k, float *x, int32_t *y)
{
    for (int64_t i = 0; i < k; i++) {
        int n, global_n;
        int64_t sample0;
        DLT_CHECK(dlt_loader_next(l, x, y, &n, &sample0, &global_n));
        if (global_n == 0) break;
    }
    return DLT_OK;
}
