/* `dltrain predict CONFIG ckpt=PATH [predict.prompt=TEXT] [key=value ...]`
 * for token models (main.c sends configs whose data are token shards here).
 *
 *   data.task lm:  continues the prompt by predict.tokens words, greedy
 *                  (predict.temperature 0) or sampled from
 *                  softmax(logits / temperature) with train.seed;
 *   data.task mlm: fills every [MASK] of the prompt, printing the sentence
 *                  and the five best candidates of each mask.
 *
 * Design. The model is built for one sequence of the training data's length
 * L (from the shards, so the config alone describes the model) and the
 * weights are loaded by name (every parameter must be found: a weights file
 * of another model is an error). Generation re-runs the model on the last L
 * tokens, left-aligned, and reads the logits at the last real position:
 * the LSTM is causal, so the padding after it changes nothing, and the
 * carried state is cleared before each pass. Special tokens are never
 * proposed. One process. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/device.h"
#include "core/rng.h"
#include "data/text.h"
#include "data/tokens.h"
#include "launcher/checkpoint.h"
#include "launcher/commands.h"
#include "launcher/config.h"
#include "launcher/text_train.h"

typedef struct {
    dlt_config cfg;
    dlt_backend *be;
    dlt_model *model;
    dlt_vocab_t vocab;
    int L, V;
    float *x_dev;      /* (1, L) */
    int32_t *y_dev;    /* (1, L) all -1 */
    int32_t *y_host;   /* (1, L) the same, on the host (ctx labels_host) */
    float *logits;     /* (L, V) host */
} predictor;

int dlt_predict_is_text(int argc, char **argv)
{
    if (argc < 1) return 0;
    static dlt_config c;
    char *over[64];
    int n = 0;
    for (int i = 1; i < argc && n < 64; i++)
        if (!strncmp(argv[i], "data.", 5)) over[n++] = argv[i];
    if (dlt_config_load(argv[0], over, n, &c) != DLT_OK) return 0;
    return dlt_text_wanted(&c);
}

static dlt_status open_predictor(predictor *p, const char *config, char **over, int n_over, const char *ckpt)
{
    dlt_config *c = &p->cfg;
    DLT_CHECK(dlt_config_load(config, over, n_over, c));
    if (!ckpt) return DLT_ERR(DLT_ERR_INVALID, "missing ckpt=PATH (a model.h5 or checkpoint of this config)");
    dlt_tokens_t ds;
    DLT_CHECK(dlt_tokens_open(c->train_data, &ds));
    p->L = dlt_tokens_seq_len(ds);
    char vpath[1300];
    snprintf(vpath, sizeof vpath, "%s", dlt_tokens_vocab_path(ds));
    dlt_tokens_close(ds);
    if (!vpath[0]) return DLT_ERR(DLT_ERR_IO, "%s: the shards name no vocabulary file (attribute 'vocab')", c->train_data);
    DLT_CHECK(dlt_vocab_load(vpath, &p->vocab));
    DLT_CHECK(dlt_device_open(c->device, 0, &p->be));
    dlt_model_cfg mc = { .layers = c->layers, .n_layers = c->n_layers, .loss = c->loss,
                         .input = { 1, { p->L } }, .n_classes = dlt_vocab_size(p->vocab), .max_batch = 1,
                         .seed = c->seed };
    DLT_CHECK(dlt_model_build(&mc, p->be, &p->model));
    const dlt_tensor *lg = dlt_model_logits(p->model);
    if (lg->shape.ndim != 3 || lg->shape.d[1] != p->L)
        return DLT_ERR(DLT_ERR_SHAPE, "%s: predict needs per-token logits (n, %d, vocab); this model's output is not",
                       config, p->L);
    p->V = (int)lg->shape.d[2];
    int loaded = 0, kept = 0;
    DLT_CHECK(dlt_ckpt_load_weights(ckpt, p->model, 0, &loaded, &kept, NULL));
    if (kept > 0)
        return DLT_ERR(DLT_ERR_INVALID, "%s: %d parameters of this model are not in the file (weights of another "
                       "model?)", ckpt, kept);
    DLT_CHECK(p->be->alloc(p->be, (size_t)p->L * sizeof(float), (void **)&p->x_dev));
    DLT_CHECK(p->be->alloc(p->be, (size_t)p->L * sizeof(int32_t), (void **)&p->y_dev));
    p->y_host = malloc((size_t)p->L * sizeof *p->y_host);
    p->logits = malloc((size_t)p->L * (size_t)p->V * sizeof *p->logits);
    if (!p->y_host || !p->logits) return DLT_ERR(DLT_ERR_NOMEM, "out of memory");
    for (int i = 0; i < p->L; i++) p->y_host[i] = -1;
    return p->be->upload(p->be, p->y_dev, p->y_host, (size_t)p->L * sizeof *p->y_host);
}

static void close_predictor(predictor *p)
{
    if (p->be) {
        if (p->model) dlt_model_free(p->model);
        p->be->free(p->be, p->x_dev);
        p->be->free(p->be, p->y_dev);
        p->be->destroy(p->be);
    }
    dlt_vocab_free(p->vocab);
    free(p->y_host);
    free(p->logits);
}

/* Forward of ids (n <= L, the rest [PAD]); fills p->logits (L, V). */
static dlt_status run(predictor *p, const int32_t *ids, int n)
{
    float x[65536];
    for (int i = 0; i < p->L; i++) x[i] = i < n ? (float)ids[i] : 0.0f;
    DLT_CHECK(p->be->upload(p->be, p->x_dev, x, (size_t)p->L * sizeof(float)));
    dlt_model_reset_state(p->model);
    dlt_step_ctx ctx = { .train = 0, .seed = p->cfg.seed, .labels = p->y_dev, .labels_host = p->y_host };
    dlt_model_out out;
    DLT_CHECK(dlt_model_forward(p->model, p->x_dev, 1, &ctx, &out));
    return p->be->download(p->be, p->logits, dlt_model_logits(p->model)->data,
                           (size_t)p->L * (size_t)p->V * sizeof(float));
}

/* A token from logits row (V): the best non-special one, or a sample. */
static int pick(const predictor *p, const float *row, float temp, dlt_rng *rng)
{
    int best = DLT_TOK_N_SPECIAL;
    for (int j = DLT_TOK_N_SPECIAL; j < p->V; j++)
        if (row[j] > row[best]) best = j;
    if (temp <= 0) return best;
    double z = 0, u;
    for (int j = DLT_TOK_N_SPECIAL; j < p->V; j++) z += exp((row[j] - row[best]) / temp);
    u = dlt_rng_uniform(rng) * z;
    for (int j = DLT_TOK_N_SPECIAL; j < p->V; j++) {
        u -= exp((row[j] - row[best]) / temp);
        if (u <= 0) return j;
    }
    return best;
}

static dlt_status continue_prompt(predictor *p, FILE *out)
{
    const dlt_config *c = &p->cfg;
    int cap = (int)strlen(c->predict_prompt) + c->predict_tokens + 8;
    int32_t *ids = malloc((size_t)cap * sizeof *ids);
    if (!ids) return DLT_ERR(DLT_ERR_NOMEM, "out of memory");
    int n = dlt_vocab_encode(p->vocab, c->predict_prompt, ids, cap);
    int n0 = n;
    dlt_rng rng = dlt_rng_make(dlt_hash_combine(c->seed, dlt_hash_str("predict")));
    dlt_status st = DLT_OK;
    if (n == 0) ids[n++] = DLT_TOK_SEP; /* an empty prompt starts a new gloss */
    for (int k = 0; k < c->predict_tokens && st == DLT_OK; k++) {
        int first = n > p->L ? n - p->L : 0, len = n - first;
        st = run(p, ids + first, len);
        if (st == DLT_OK) ids[n++] = pick(p, p->logits + (size_t)(len - 1) * p->V, c->predict_temperature, &rng);
    }
    if (st == DLT_OK) {
        char buf[8192];
        dlt_vocab_decode(p->vocab, ids, n0, buf, sizeof buf);
        fprintf(out, "%s ||", buf);
        dlt_vocab_decode(p->vocab, ids + n0, n - n0, buf, sizeof buf);
        fprintf(out, " %s\n", buf);
    }
    free(ids);
    return st;
}

static dlt_status fill_masks(predictor *p, FILE *out)
{
    int32_t *ids = malloc((size_t)p->L * sizeof *ids);
    if (!ids) return DLT_ERR(DLT_ERR_NOMEM, "out of memory");
    ids[0] = DLT_TOK_CLS;
    int n = 1 + dlt_vocab_encode(p->vocab, p->cfg.predict_prompt, ids + 1, p->L - 2);
    if (n > p->L - 1) n = p->L - 1;
    ids[n++] = DLT_TOK_SEP;
    dlt_rng rng = dlt_rng_make(dlt_hash_combine(p->cfg.seed, dlt_hash_str("predict")));
    dlt_status st = run(p, ids, n);
    int masks = 0;
    for (int i = 0; st == DLT_OK && i < n; i++) {
        if (ids[i] != DLT_TOK_MASK) continue;
        const float *row = p->logits + (size_t)i * p->V;
        fprintf(out, "[MASK] at %d:", i);
        char used[1 << 16] = { 0 };
        for (int t = 0; t < 5 && t < p->V - DLT_TOK_N_SPECIAL; t++) {
            int b = -1;
            for (int j = DLT_TOK_N_SPECIAL; j < p->V && j < (1 << 16); j++)
                if (!used[j] && (b < 0 || row[j] > row[b])) b = j;
            used[b] = 1;
            fprintf(out, " %s", dlt_vocab_token(p->vocab, b));
        }
        fprintf(out, "\n");
        ids[i] = pick(p, row, p->cfg.predict_temperature, &rng);
        masks++;
    }
    if (st == DLT_OK && masks == 0)
        st = DLT_ERR(DLT_ERR_INVALID, "predict.prompt has no [MASK] to fill: \"%s\"", p->cfg.predict_prompt);
    if (st == DLT_OK) {
        char buf[8192];
        dlt_vocab_decode(p->vocab, ids + 1, n - 2, buf, sizeof buf);
        fprintf(out, "%s\n", buf);
    }
    free(ids);
    return st;
}

int dlt_cmd_predict_text(int argc, char **argv)
{
    static predictor p;
    memset(&p, 0, sizeof p);
    const char *ckpt = NULL;
    char *rest[256];
    int n = 0;
    for (int i = 1; i < argc && n < 256; i++) {
        if (!strncmp(argv[i], "ckpt=", 5)) ckpt = argv[i] + 5;
        else rest[n++] = argv[i];
    }
    dlt_status st = argc < 1 ? DLT_ERR(DLT_ERR_INVALID, "usage: dltrain predict CONFIG ckpt=PATH predict.prompt=TEXT")
                             : open_predictor(&p, argv[0], rest, n, ckpt);
    if (st == DLT_OK && p.L > 65536) st = DLT_ERR(DLT_ERR_INVALID, "sequence length %d is too long", p.L);
    if (st == DLT_OK)
        st = !strcmp(p.cfg.text_task, "mlm") ? fill_masks(&p, stdout)
           : !strcmp(p.cfg.text_task, "lm") ? continue_prompt(&p, stdout)
           : DLT_ERR(DLT_ERR_CONFIG, "%s: predict works for data.task lm or mlm (classification: use "
                     "dltrain train with data.test to score a labelled set)", argv[0]);
    fflush(stdout);
    if (st != DLT_OK) fprintf(stderr, "dltrain: error: %s\n", dlt_last_error());
    close_predictor(&p);
    return st == DLT_OK ? 0 : 1;
}
