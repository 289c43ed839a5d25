/* The token-data path of the trainer (see text_train.h) and layer freezing.
 *
 * Design. The training shards decide the layout and the task the config's
 * data.task names decides the targets: lm reads a stream layout in
 * "streams" order (row b of every batch continues the text of the previous
 * step's row b, so a stateful LSTM carries its state across batches, reset
 * at each epoch and evaluation) and any other layout shuffled; mlm and
 * classify shuffle. Evaluation masks with a fixed epoch (0), so every
 * evaluation scores the same masked positions and the numbers are
 * comparable across epochs. Baselines for the report are computed once from
 * the training rows: the unigram distribution of the targets (add-one
 * smoothed) scored on the evaluation targets, the most frequent target, the
 * majority class. */
#include "launcher/text_train.h"

#include <hdf5.h>
#include <glob.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "data/text.h"
#include "data/tokens.h"

struct dlt_text_data {
    dlt_tokens_t ds[2];               /* train, test (NULL: none) */
    dlt_tokens_loader_t ld[2];
    dlt_text_task task;
    int classes, L, max_local;
    double base_xent, base_acc;       /* baselines on the evaluation set (NAN: none) */
};

int dlt_text_wanted(const dlt_config *c)
{
    if (!strcmp(c->data_format, "tokens")) return 1;
    if (!strcmp(c->data_format, "images")) return 0;
    glob_t g;
    int found = 0;
    if (glob(c->train_data, 0, NULL, &g) == 0 && g.gl_pathc > 0) {
        H5E_auto2_t fn;
        void *data;
        H5Eget_auto2(H5E_DEFAULT, &fn, &data);
        H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
        hid_t f = H5Fopen(g.gl_pathv[0], H5F_ACC_RDONLY, H5P_DEFAULT);
        if (f >= 0) {
            found = H5Lexists(f, "tokens", H5P_DEFAULT) > 0;
            H5Fclose(f);
        }
        H5Eset_auto2(H5E_DEFAULT, fn, data);
    }
    globfree(&g);
    return found;
}

/* Target of position i of row r under the task, without masking: what the
 * baselines score. -1: not a target. */
static int32_t plain_target(dlt_tokens_t ds, dlt_text_task task, int64_t r, int i)
{
    const int32_t *t = dlt_tokens_row(ds, r);
    int L = dlt_tokens_seq_len(ds);
    if (task == DLT_TEXT_TASK_MLM) return t[i] >= DLT_TOK_N_SPECIAL ? t[i] : -1;
    int32_t next = i + 1 < L ? t[i + 1] : dlt_tokens_is_stream(ds) && r + 1 < dlt_tokens_size(ds)
                                              ? dlt_tokens_row(ds, r + 1)[0] : -1;
    return next == DLT_TOK_PAD ? -1 : next;
}

static void baselines(struct dlt_text_data *d)
{
    d->base_xent = d->base_acc = NAN;
    dlt_tokens_t tr = d->ds[0], te = d->ds[1] ? d->ds[1] : d->ds[0];
    int k = d->classes;
    double *cnt = calloc((size_t)k, sizeof *cnt);
    if (!cnt) return;
    double total = 0;
    for (int64_t r = 0; r < dlt_tokens_size(tr); r++) {
        if (d->task == DLT_TEXT_TASK_CLASSIFY) {
            cnt[dlt_tokens_label(tr, r)]++;
            total++;
            continue;
        }
        for (int i = 0; i < d->L; i++) {
            int32_t y = plain_target(tr, d->task, r, i);
            if (y >= 0 && y < k) cnt[y]++, total++;
        }
    }
    int best = 0;
    for (int j = 1; j < k; j++)
        if (cnt[j] > cnt[best]) best = j;
    double xent = 0, hits = 0, n = 0;
    for (int64_t r = 0; r < dlt_tokens_size(te); r++) {
        int m = d->task == DLT_TEXT_TASK_CLASSIFY ? 1 : d->L;
        for (int i = 0; i < m; i++) {
            int32_t y = d->task == DLT_TEXT_TASK_CLASSIFY ? dlt_tokens_label(te, r) : plain_target(te, d->task, r, i);
            if (y < 0 || y >= k) continue;
            xent -= log((cnt[y] + 1) / (total + k));
            hits += y == best;
            n++;
        }
    }
    if (n > 0) {
        d->base_xent = xent / n;
        d->base_acc = hits / n;
    }
    free(cnt);
}

static dlt_status open_split(struct dlt_text_data *d, const dlt_config *c, int test, int rank, int world)
{
    const char *glob_pat = test ? c->test_data : c->train_data;
    DLT_CHECK(dlt_tokens_open(glob_pat, &d->ds[test]));
    dlt_tokens_t ds = d->ds[test];
    if (test) {
        if (dlt_tokens_seq_len(ds) != d->L)
            return DLT_ERR(DLT_ERR_SHAPE, "%s: rows of %d tokens but the training data %s has %d",
                           dlt_tokens_path(ds), dlt_tokens_seq_len(ds), dlt_tokens_path(d->ds[0]), d->L);
    } else {
        d->L = dlt_tokens_seq_len(ds);
    }
    if (d->task == DLT_TEXT_TASK_CLASSIFY && dlt_tokens_classes(ds) == 0)
        return DLT_ERR(DLT_ERR_CONFIG, "%s: data.task is classify but %s has no dataset 'labels' (write it with "
                       "dlprep text --layout sentences --labels lexname|pos)", c->path, dlt_tokens_path(ds));
    dlt_tokens_loader_cfg lc = {
        .global_batch = c->batch_size, .rank = rank, .world = world, .seed = c->seed,
        .order = test ? DLT_TOKENS_SEQUENTIAL : DLT_TOKENS_SHUFFLE, .drop_last = !test, .task = d->task,
        .mask_prob = c->mask_prob, .mask_epoch = test ? 0 : -1,
    };
    if (d->task == DLT_TEXT_TASK_LM && dlt_tokens_is_stream(ds)) lc.order = DLT_TOKENS_STREAMS;
    DLT_CHECK(dlt_tokens_loader_init(ds, &lc, &d->ld[test]));
    if (dlt_tokens_loader_steps(d->ld[test]) == 0)
        return DLT_ERR(DLT_ERR_CONFIG, "%s: train.batch_size %d is larger than the %lld rows of %s", c->path,
                       c->batch_size, (long long)dlt_tokens_size(ds), dlt_tokens_path(ds));
    int ml = dlt_tokens_loader_max_local(d->ld[test]);
    if (ml > d->max_local) d->max_local = ml;
    return DLT_OK;
}

dlt_status dlt_text_open(const dlt_config *c, int rank, int world, dlt_text_data **out)
{
    struct dlt_text_data *d = calloc(1, sizeof *d);
    if (!d) return DLT_ERR(DLT_ERR_NOMEM, "out of memory");
    d->task = !strcmp(c->text_task, "mlm") ? DLT_TEXT_TASK_MLM
            : !strcmp(c->text_task, "classify") ? DLT_TEXT_TASK_CLASSIFY : DLT_TEXT_TASK_LM;
    dlt_status st = open_split(d, c, 0, rank, world);
    if (st == DLT_OK && c->test_data[0]) st = open_split(d, c, 1, rank, world);
    if (st == DLT_OK) {
        int v = dlt_tokens_vocab_size(d->ds[0]);
        if (d->ds[1] && dlt_tokens_vocab_size(d->ds[1]) != v)
            st = DLT_ERR(DLT_ERR_CONFIG, "%s: vocab_size %d but the training data %s has %d (different vocabularies?)",
                         dlt_tokens_path(d->ds[1]), dlt_tokens_vocab_size(d->ds[1]), dlt_tokens_path(d->ds[0]), v);
        d->classes = v;
        if (d->task == DLT_TEXT_TASK_CLASSIFY) {
            d->classes = dlt_tokens_classes(d->ds[0]);
            if (d->ds[1] && dlt_tokens_classes(d->ds[1]) > d->classes) d->classes = dlt_tokens_classes(d->ds[1]);
        }
    }
    if (st != DLT_OK) {
        dlt_text_free(d);
        return st;
    }
    baselines(d);
    *out = d;
    return DLT_OK;
}

void dlt_text_free(dlt_text_data *d)
{
    if (!d) return;
    for (int i = 0; i < 2; i++) {
        dlt_tokens_loader_free(d->ld[i]);
        dlt_tokens_close(d->ds[i]);
    }
    free(d);
}

dlt_shape dlt_text_input(const dlt_text_data *d) { return (dlt_shape){ 1, { d->L } }; }
int dlt_text_classes(const dlt_text_data *d) { return d->classes; }
int dlt_text_max_local(const dlt_text_data *d) { return d->max_local; }
int64_t dlt_text_sample_numel(const dlt_text_data *d) { return d->L; }
int dlt_text_label_numel(const dlt_text_data *d) { return d->task == DLT_TEXT_TASK_CLASSIFY ? 1 : d->L; }
int dlt_text_has_test(const dlt_text_data *d) { return d->ld[1] != NULL; }
int64_t dlt_text_steps(const dlt_text_data *d, int test) { return d->ld[test] ? dlt_tokens_loader_steps(d->ld[test]) : 0; }

dlt_status dlt_text_start_epoch(dlt_text_data *d, int test, int64_t epoch, dlt_model *m)
{
    if (m) dlt_model_reset_state(m);
    return dlt_tokens_loader_start_epoch(d->ld[test], epoch);
}

void dlt_text_skip(dlt_text_data *d, int test, int64_t k) { dlt_tokens_loader_skip(d->ld[test], k); }

dlt_status dlt_text_next(dlt_text_data *d, int test, float *x, int32_t *y, int *n, int64_t *sample0,
                         int *global_n, int64_t *count)
{
    return dlt_tokens_loader_next(d->ld[test], x, y, n, sample0, global_n, count);
}

void dlt_text_report_eval(const dlt_text_data *d, double loss, double acc, FILE *f)
{
    if (d->task == DLT_TEXT_TASK_CLASSIFY) {
        fprintf(f, "eval: accuracy %.4f (majority class %.4f)\n", acc, d->base_acc);
    } else {
        fprintf(f, "eval: %s loss %.4f perplexity %.2f (unigram: loss %.4f perplexity %.2f), accuracy %.4f "
                "(most frequent token %.4f)\n", d->task == DLT_TEXT_TASK_LM ? "next-token" : "masked-token",
                loss, exp(loss), d->base_xent, exp(d->base_xent), acc, d->base_acc);
    }
    fflush(f);
}

/* ------------------------------------------------------------- freezing */

struct dlt_freeze {
    dlt_backend *be;
    int n;
    const dlt_param **p;   /* (n) frozen parameters */
    float **saved;         /* (n) their values, backend memory */
    int taken;
};

/* Does layer name match one item of the comma-separated list? */
static int matches(const char *list, const char *name)
{
    for (const char *p = list; *p;) {
        while (*p == ',' || *p == ' ') p++;
        size_t len = strcspn(p, ", ");
        if (len == 0) break;
        int prefix = p[len - 1] == '*';
        size_t cmp = prefix ? len - 1 : len;
        if (!strncmp(p, name, cmp) && (prefix || name[cmp] == '\0')) return 1;
        p += len;
    }
    return 0;
}

dlt_status dlt_freeze_init(const dlt_config *c, dlt_model *m, dlt_freeze **out)
{
    *out = NULL;
    if (!c->freeze[0]) return DLT_OK;
    /* every item must name something, so a typo is not silently ignored */
    char items[sizeof c->freeze];
    snprintf(items, sizeof items, "%s", c->freeze);
    char *save = NULL;
    for (char *tok = strtok_r(items, ", ", &save); tok; tok = strtok_r(NULL, ", ", &save)) {
        int hit = 0;
        for (int i = 0; i < dlt_model_n_layers(m) && !hit; i++)
            hit = matches(tok, dlt_model_layer(m, i)->spec->name);
        if (!hit) return DLT_ERR(DLT_ERR_CONFIG, "%s: freeze.layers: no layer is named '%s'", c->path, tok);
    }
    struct dlt_freeze *f = calloc(1, sizeof *f);
    int np = dlt_model_n_params(m);
    if (f) f->p = calloc((size_t)(np ? np : 1), sizeof *f->p);
    if (f) f->saved = calloc((size_t)(np ? np : 1), sizeof *f->saved);
    if (!f || !f->p || !f->saved) {
        dlt_freeze_free(f);
        return DLT_ERR(DLT_ERR_NOMEM, "out of memory");
    }
    for (int li = 0; li < dlt_model_n_layers(m); li++) {
        dlt_layer *l = dlt_model_layer(m, li);
        if (!matches(c->freeze, l->spec->name)) continue;
        f->be = l->be;
        for (int k = 0; k < l->n_params; k++) {
            const dlt_param *p = &l->params[k];
            size_t bytes = (size_t)dlt_shape_numel(&p->shape) * sizeof(float);
            dlt_status st = f->be->alloc(f->be, bytes, (void **)&f->saved[f->n]);
            if (st != DLT_OK) {
                dlt_freeze_free(f);
                return st;
            }
            f->p[f->n++] = p;
        }
    }
    if (f->n == 0) {
        dlt_freeze_free(f);
        return DLT_OK;
    }
    *out = f;
    return DLT_OK;
}

dlt_status dlt_freeze_before(dlt_freeze *f)
{
    if (!f || f->taken) return DLT_OK;
    for (int i = 0; i < f->n; i++)
        DLT_CHECK(f->be->copy(f->be, f->saved[i], f->p[i]->w, (size_t)dlt_shape_numel(&f->p[i]->shape) * sizeof(float)));
    f->taken = 1;
    return DLT_OK;
}

dlt_status dlt_freeze_after(dlt_freeze *f)
{
    if (!f) return DLT_OK;
    for (int i = 0; i < f->n; i++)
        DLT_CHECK(f->be->copy(f->be, f->p[i]->w, f->saved[i], (size_t)dlt_shape_numel(&f->p[i]->shape) * sizeof(float)));
    return DLT_OK;
}

void dlt_freeze_free(dlt_freeze *f)
{
    if (!f) return;
    for (int i = 0; i < f->n; i++) f->be->free(f->be, f->saved[i]);
    free(f->p);
    free(f->saved);
    free(f);
}
