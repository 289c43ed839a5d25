/* The run configuration: one table of known keys, a YAML walker, overrides.
 *
 * Design. Every global key is a row of KEYS below (dotted name, type, offset
 * into dlt_config, default as text, bounds, help), in the redis style: the
 * loader, the writer and `dltrain config --help` are all driven by that one
 * table, so a new key is one line. Defaults are applied by feeding each
 * row's default text through the same setter as a file value, so a default
 * can never bypass validation. YAML nesting is just dotted names: the walker
 * joins mapping keys with '.', so `optimizer: {lr: 0.1}` and a top-level
 * `optimizer.lr: 0.1` mean the same. The only structured value is
 * model.layers, a sequence of layer mappings validated against each layer
 * type's own dlt_key_spec table from the registry (core/layers/registry.c).
 *
 * Messages. Every error is one line that starts with where the value came
 * from: "FILE:LINE: ", or "override 'KEY=VALUE': " for command-line
 * overrides, then the dotted key; unknown names get the nearest known name
 * suggested (edit distance, or the same last component in another section,
 * so `train.lr` suggests `optimizer.lr`).
 *
 * Order of work: defaults, file, overrides, then the derived defaults (name,
 * run_dir) and the checks that involve several keys or all layers (required
 * layer keys, unique names, inputs naming earlier layers). Each string
 * field is zero-filled before it is written, so two configs that mean the
 * same are byte-identical apart from path, line numbers and spec.file,
 * which is what the round-trip test relies on. */
#include "launcher/config.h"

#include <ctype.h>
#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "launcher/config_internal.h"

typedef enum { K_INT, K_INT64, K_UINT64, K_FLOAT, K_BOOL, K_STR, K_CHOICE, K_FLOATS, K_INTS } ktype;

typedef struct {
    const char *name; /* dotted key */
    ktype type;
    size_t off;          /* into dlt_config */
    size_t size;         /* STR/CHOICE: buffer bytes; FLOATS/INTS: capacity */
    size_t count_off;    /* FLOATS/INTS: offset of the int element count */
    const char *def;     /* default, as config text ("" strings may be derived later) */
    double min, max;     /* bounds of a number (each element of a list) */
    int excl;            /* EX_MIN / EX_MAX: that bound is exclusive */
    const char *choices; /* CHOICE: "a|b|c", a leading '|' allows ""; NULL: the losses */
    const char *help;
} key_def;

#define EX_MIN 1
#define EX_MAX 2
#define INF HUGE_VAL
#define FLD(f) offsetof(dlt_config, f), sizeof(((dlt_config *)0)->f), 0
#define ARR(f, n)                                                                                  \
    offsetof(dlt_config, f), sizeof(((dlt_config *)0)->f) / sizeof(((dlt_config *)0)->f[0]),       \
        offsetof(dlt_config, n)

/* Sections must stay contiguous (the writer nests by them) and model.* keys
 * are followed by model.layers in the output. */
// clang-format off
static const key_def KEYS[] = {
    {"name", K_STR, FLD(name), "", 0, 0, 0, NULL,
     "run name; \"\": the config file name without .yaml"},
    {"run_dir", K_STR, FLD(run_dir), "", 0, 0, 0, NULL,
     "logs and checkpoints; \"\": runs/<name>-<YYYYmmdd-HHMMSS>"},
    {"data.train", K_STR, FLD(train_data), "", 0, 0, 0, NULL, "training shards (glob)"},
    {"data.test", K_STR, FLD(test_data), "", 0, 0, 0, NULL,
     "test shards (glob); \"\": no evaluation"},
    {"data.mean", K_FLOATS, ARR(mean, n_mean), "[]", -INF, INF, 0, NULL,
     "per-channel mean subtracted from pixels scaled to [0,1]; []: none"},
    {"data.std", K_FLOATS, ARR(std, n_std), "[]", 0, INF, EX_MIN, NULL,
     "per-channel std dividing them; as many values as data.mean"},
    {"data.shuffle_block", K_INT64, FLD(shuffle_block), "0", 0, INF, 0, NULL,
     "locality: shuffle blocks of this many contiguous samples, then inside each; 0: full shuffle"},
    {"data.last_batch", K_CHOICE, FLD(last_batch), "drop", 0, 0, 0, "drop|pad|partial",
     "last partial global batch: dropped, padded with the epoch's first samples, or kept"},
    {"data.prefetch", K_INT, FLD(prefetch), "2", 0, 64, 0, NULL,
     "batches prepared ahead by background threads per rank; 0: none"},
    {"data.threads", K_INT, FLD(data_threads), "1", 1, 64, 0, NULL,
     "loader threads per rank (with data.prefetch > 0)"},
    {"data.augment.crop_pad", K_INT, FLD(augment.crop_pad), "0", 0, 4096, 0, NULL,
     "random crop of the image zero-padded by this many pixels a side; 0: off"},
    {"data.augment.resized_crop", K_FLOATS, ARR(aug_scale, n_aug_scale), "[]", 0, 1, EX_MIN, NULL,
     "random resized crop (zoom) to the same size: [min, max] area fraction; []: off"},
    {"data.augment.ratio", K_FLOATS, ARR(aug_ratio, n_aug_ratio), "[]", 0, 100, EX_MIN, NULL,
     "aspect ratio range [min, max] of the resized crop; []: [0.75, 1.333]"},
    {"data.augment.hflip", K_FLOAT, FLD(augment.hflip), "0", 0, 1, 0, NULL,
     "probability of a horizontal flip"},
    {"data.augment.rotate", K_FLOAT, FLD(augment.rotate), "0", 0, 180, 0, NULL,
     "random rotation within [-D, D] degrees (bilinear)"},
    {"data.augment.translate", K_FLOAT, FLD(augment.translate), "0", 0, 1, 0, NULL,
     "random shift up to this fraction of the width and height"},
    {"data.augment.brightness", K_FLOAT, FLD(augment.brightness), "0", 0, 1, 0, NULL,
     "random brightness factor in [1-b, 1+b]"},
    {"data.augment.contrast", K_FLOAT, FLD(augment.contrast), "0", 0, 1, 0, NULL,
     "random contrast factor in [1-c, 1+c]"},
    {"data.augment.noise_std", K_FLOAT, FLD(augment.noise_std), "0", 0, 10, 0, NULL,
     "Gaussian noise std, in units of pixel/255"},
    {"data.augment.cutout", K_INT, FLD(augment.cutout), "0", 0, 4096, 0, NULL,
     "side of a square set to 0 at a random place; 0: off"},
    {"data.format", K_CHOICE, FLD(data_format), "auto", 0, 0, 0, "auto|images|tokens",
     "auto: tokens when the shards hold a 'tokens' dataset, else images"},
    {"data.task", K_CHOICE, FLD(text_task), "lm", 0, 0, 0, "lm|mlm|classify",
     "token data: next-token targets, BERT masking, or the shards' sequence labels"},
    {"data.mask_prob", K_FLOAT, FLD(mask_prob), "0.15", 0, 1, EX_MIN, NULL,
     "mlm: fraction of non-special tokens chosen (80% [MASK], 10% random, 10% kept)"},
    {"model.loss", K_CHOICE, FLD(loss), "softmax_cross_entropy", 0, 0, 0, NULL,
     "loss layer appended after the last layer (a registered loss type)"},
    {"model.input", K_INTS, ARR(input, n_input), "[]", 1, 1 << 24, 0, NULL,
     "per-sample input shape, e.g. [1, 28, 28]; []: from the training data"},
    {"model.init_from", K_STR, FLD(init_from), "", 0, 0, 0, NULL,
     "checkpoint (of any config) whose layers of the same name and shape start this model"},
    {"train.epochs", K_INT, FLD(epochs), "1", 1, 1000000, 0, NULL, "passes over the training data"},
    {"train.batch_size", K_INT, FLD(batch_size), "32", 1, 1 << 24, 0, NULL,
     "global batch, split over all ranks"},
    {"train.max_steps", K_INT64, FLD(max_steps), "0", 0, INF, 0, NULL,
     "stop after this many optimizer steps; 0: no limit"},
    {"train.seed", K_UINT64, FLD(seed), "42", 0, 0, 0, NULL, "seed of every random stream"},
    {"train.device", K_CHOICE, FLD(device), "auto", 0, 0, 0, "auto|cpu|cuda",
     "auto: a GPU when one is found"},
    {"train.precision", K_CHOICE, FLD(precision), "auto", 0, 0, 0, "auto|fp32|bf16|fp16",
     "GEMM precision on GPU (auto: bf16; fp16 adds dynamic loss scaling); CPU: fp32"},
    {"train.threads", K_INT, FLD(threads), "0", 0, 4096, 0, NULL,
     "CPU threads per rank; 0: OpenMP/OpenBLAS default"},
    {"train.nonfinite", K_CHOICE, FLD(nonfinite), "stop", 0, 0, 0, "stop|skip",
     "a NaN/Inf loss or gradient: stop naming step, rank, layer; or skip the step on every rank"},
    {"train.max_skips", K_INT, FLD(max_skips), "5", 1, 1000000, 0, NULL,
     "train.nonfinite skip: this many skipped steps in a row stop the run"},
    {"train.accum_steps", K_INT, FLD(accum_steps), "1", 1, 1 << 20, 0, NULL,
     "micro-batches of train.batch_size per optimizer step (gradient accumulation)"},
    {"optimizer.type", K_CHOICE, FLD(optimizer), "sgd", 0, 0, 0, "sgd|adam|adamw|adagrad|rmsprop",
     "update rule (torch.optim semantics)"},
    {"optimizer.lr", K_FLOAT, FLD(lr), "0.01", 0, 100, EX_MIN, NULL, "peak learning rate"},
    {"optimizer.momentum", K_FLOAT, FLD(momentum), "0", 0, 1, EX_MAX, NULL,
     "sgd, rmsprop momentum"},
    {"optimizer.nesterov", K_BOOL, FLD(nesterov), "false", 0, 0, 0, NULL,
     "sgd: Nesterov momentum (needs momentum > 0)"},
    {"optimizer.weight_decay", K_FLOAT, FLD(weight_decay), "0", 0, 10, 0, NULL,
     "L2 penalty (adamw: decoupled)"},
    {"optimizer.beta1", K_FLOAT, FLD(beta1), "0.9", 0, 1, EX_MAX, NULL, "adam, adamw"},
    {"optimizer.beta2", K_FLOAT, FLD(beta2), "0.999", 0, 1, EX_MAX, NULL, "adam, adamw"},
    {"optimizer.eps", K_FLOAT, FLD(eps), "1e-8", 0, 1, EX_MIN, NULL,
     "adam, adamw, adagrad, rmsprop"},
    {"optimizer.alpha", K_FLOAT, FLD(alpha), "0.99", 0, 1, 0, NULL, "rmsprop smoothing constant"},
    {"optimizer.clip_norm", K_FLOAT, FLD(clip_norm), "0", 0, 1e6, 0, NULL,
     "clip the global gradient L2 norm to this; 0: off"},
    {"schedule.type", K_CHOICE, FLD(schedule), "constant", 0, 0, 0, "constant|step|cosine",
     "learning-rate schedule after warm-up"},
    {"schedule.warmup_steps", K_INT64, FLD(warmup_steps), "0", 0, INF, 0, NULL,
     "linear warm-up steps"},
    {"schedule.step_size", K_INT64, FLD(step_size), "1000", 1, INF, 0, NULL,
     "step: multiply lr by gamma every step_size steps"},
    {"schedule.gamma", K_FLOAT, FLD(gamma), "0.1", 0, 1, EX_MIN, NULL, "step: decay factor"},
    {"schedule.lr_min", K_FLOAT, FLD(lr_min), "0", 0, 100, 0, NULL, "cosine: final learning rate"},
    {"eval.every_epochs", K_INT, FLD(eval_every_epochs), "1", 1, 1000000, 0, NULL,
     "evaluate on data.test every this many epochs (and after the last)"},
    {"early_stopping.metric", K_CHOICE, FLD(early_metric), "", 0, 0, 0, "|loss|accuracy",
     "stop when this test metric stops improving; \"\": off"},
    {"early_stopping.patience", K_INT, FLD(early_patience), "3", 1, 1000000, 0, NULL,
     "evaluations without improvement before stopping"},
    {"early_stopping.min_delta", K_FLOAT, FLD(early_min_delta), "0", 0, INF, 0, NULL,
     "smallest change that counts as an improvement"},
    {"log.every", K_INT, FLD(log_every), "50", 1, 100000000, 0, NULL, "log every this many steps"},
    {"log.progress", K_CHOICE, FLD(log_progress), "auto", 0, 0, 0, "auto|bar|plain",
     "rank 0's output: a live bar, plain lines, or auto: the bar when the output is a terminal"},
    {"comm.bucket_mb", K_FLOAT, FLD(bucket_mb), "25", 0, 1e6, 0, NULL,
     "gradient bucket size in MiB, reduced while backward runs; 0: one bucket"},
    {"comm.trace", K_STR, FLD(comm_trace), "", 0, 0, 0, NULL,
     "rank 0 writes per-layer and per-bucket times here (JSON lines); env DLT_COMM_TRACE"},
    {"comm.timeout_s", K_FLOAT, FLD(comm_timeout_s), "60", 0, 1e6, EX_MIN, NULL,
     "a collective waiting longer than this ends the job, naming where each rank is"},
    {"comm.zero", K_INT, FLD(zero), "0", 0, 1, 0, NULL,
     "1: ZeRO-1, optimizer state sharded over ranks (gradients reduce-scattered, parameters all-gathered)"},
    {"checkpoint.dir", K_STR, FLD(ckpt_dir), "", 0, 0, 0, NULL,
     "where checkpoints go; \"\": <run_dir>/checkpoints"},
    {"checkpoint.every_steps", K_INT64, FLD(ckpt_every), "0", 0, INF, 0, NULL,
     "save every this many steps; 0: only at the end and on SIGTERM/SIGUSR1"},
    {"checkpoint.keep", K_INT, FLD(ckpt_keep), "3", 1, 1000000, 0, NULL,
     "newest step checkpoints kept (the best one is kept besides)"},
    {"checkpoint.best_metric", K_CHOICE, FLD(ckpt_best), "", 0, 0, 0, "|loss|accuracy",
     "also keep checkpoints/best.h5, the best by this eval metric; \"\": off"},
    {"checkpoint.resume", K_STR, FLD(resume), "", 0, 0, 0, NULL,
     "auto: continue from the newest complete checkpoint (if any); PATH: from that file; \"\": fresh"},
    {"freeze.layers", K_STR, FLD(freeze), "", 0, 0, 0, NULL,
     "comma-separated layer names (a trailing * matches a prefix) whose parameters stay fixed"},
    {"predict.prompt", K_STR, FLD(predict_prompt), "", 0, 0, 0, NULL,
     "predict: text to continue (lm) or with [MASK] words to fill (mlm)"},
    {"predict.tokens", K_INT, FLD(predict_tokens), "10", 1, 100000, 0, NULL,
     "predict (lm): tokens to generate"},
    {"predict.temperature", K_FLOAT, FLD(predict_temperature), "0", 0, 100, 0, NULL,
     "predict: 0 greedy; > 0 sample from softmax(logits / temperature)"},
};
// clang-format on
#define N_KEYS ((int)(sizeof KEYS / sizeof KEYS[0]))
#define LAYERS_KEY "model.layers"

_Static_assert(N_KEYS <= DLT_CFG_MAX_KEYS, "raise DLT_CFG_MAX_KEYS");

/* ---------------------------------------------------------------- messages */

dlt_status dlt_cfg_err(const dlt_cfg_loader *L, int line, const char *fmt, ...)
{
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (L->override) return DLT_ERR(DLT_ERR_CONFIG, "override '%s': %s", L->override, msg);
    if (line > 0) return DLT_ERR(DLT_ERR_CONFIG, "%s:%d: %s", L->cfg->path, line, msg);
    return DLT_ERR(DLT_ERR_CONFIG, "%s: %s", L->cfg->path, msg);
}

/* Like dlt_cfg_err, but at the place key k was set (for checks after loading). */
static dlt_status key_err(dlt_cfg_loader *L, int k, const char *msg)
{
    const char *saved = L->override;
    L->override = L->ovr[k];
    dlt_status st = dlt_cfg_err(L, L->line[k], "%s: %s", KEYS[k].name, msg);
    L->override = saved;
    return st;
}

/* Levenshtein distance, capped for long strings (they never match anyway). */
static int edit_distance(const char *a, const char *b)
{
    int la = (int)strlen(a), lb = (int)strlen(b);
    if (la > 127 || lb > 127) return 1000;
    int prev[128], cur[128];
    for (int j = 0; j <= lb; j++) prev[j] = j;
    for (int i = 1; i <= la; i++) {
        cur[0] = i;
        for (int j = 1; j <= lb; j++) {
            int sub = prev[j - 1] + (a[i - 1] != b[j - 1]);
            int del = prev[j] + 1, ins = cur[j - 1] + 1;
            cur[j] = sub < del ? (sub < ins ? sub : ins) : (del < ins ? del : ins);
        }
        memcpy(prev, cur, sizeof(int) * (size_t)(lb + 1));
    }
    return prev[lb];
}

static const char *last_part(const char *s)
{
    const char *d = strrchr(s, '.');
    return d ? d + 1 : s;
}

/* The candidate closest to `bad`, or NULL when nothing is plausibly meant:
 * a near spelling wins, then the same last component in another section. */
static const char *nearest(const char *bad, const char *const *cand, int n)
{
    const char *best = NULL, *leaf = NULL;
    int bd = 1000;
    for (int i = 0; i < n; i++) {
        int d = edit_distance(bad, cand[i]);
        if (d < bd) bd = d, best = cand[i];
        if (!leaf && strchr(cand[i], '.') && !strcmp(last_part(bad), last_part(cand[i])))
            leaf = cand[i];
    }
    int len = (int)strlen(bad);
    if (best && bd <= 2 && bd < len) return best;
    if (leaf) return leaf;
    return best && bd <= len / 3 ? best : NULL;
}

const char *dlt_cfg_did_you_mean(const char *bad, const char *const *cand, int n, char *buf,
                                 size_t len)
{
    const char *s = nearest(bad, cand, n);
    if (s)
        snprintf(buf, len, " (did you mean '%s'?)", s);
    else
        buf[0] = '\0';
    return buf;
}

/* ---------------------------------------------------------------- scalars */

static void range_str(const key_def *k, char *buf, size_t len)
{
    if (k->max == INF)
        snprintf(buf, len, "must be %s %.10g", (k->excl & EX_MIN) ? ">" : ">=", k->min);
    else
        snprintf(buf, len, "must be in %c%.10g, %.10g%c", (k->excl & EX_MIN) ? '(' : '[', k->min,
                 k->max, (k->excl & EX_MAX) ? ')' : ']');
}

static int in_range(const key_def *k, double v)
{
    if ((k->excl & EX_MIN) ? v <= k->min : v < k->min) return 0;
    return (k->excl & EX_MAX) ? v < k->max : v <= k->max;
}

/* Parses one number of key k (a list element too) into *v. */
static dlt_status parse_number(dlt_cfg_loader *L, const key_def *k, const dlt_yaml_node *n,
                               double *v)
{
    int is_int = k->type == K_INT || k->type == K_INT64 || k->type == K_INTS;
    if (n->kind != DLT_YAML_SCALAR)
        return dlt_cfg_err(L, n->line, "%s: expected %s, got %s", k->name,
                           is_int ? "an integer" : "a number", dlt_yaml_kind_str(n->kind));
    int64_t i;
    if (is_int) {
        if (!dlt_yaml_int(n->text, &i))
            return dlt_cfg_err(L, n->line, "%s: expected an integer, got '%s'", k->name, n->text);
        *v = (double)i;
    } else {
        if (!dlt_yaml_float(n->text, v))
            return dlt_cfg_err(L, n->line, "%s: expected a number, got '%s'", k->name, n->text);
        if (fabs(*v) <= FLT_MAX) *v = (double)(float)*v; /* as stored: 1e-50 is 0 */
    }
    if (!in_range(k, *v)) {
        char r[96];
        range_str(k, r, sizeof r);
        return dlt_cfg_err(L, n->line, "%s: %s is out of range (%s)", k->name, n->text, r);
    }
    return DLT_OK;
}

void dlt_cfg_set_str(char *dst, size_t size, const char *s)
{
    memset(dst, 0, size);
    memcpy(dst, s, strlen(s));
}

/* The allowed values of a CHOICE key, split into opts[] (storage in buf),
 * and a printable list ("sgd, adam"); returns the count. choices NULL
 * means the registered loss layers. */
static int choices(const key_def *k, char *buf, size_t len, const char **opts, char *list,
                   size_t list_len)
{
    if (k->choices) {
        snprintf(buf, len, "%s", k->choices);
    } else {
        const dlt_layer_ops *const *all = dlt_layer_all();
        buf[0] = '\0';
        for (int i = 0; all && all[i]; i++)
            if (all[i]->is_loss) {
                size_t l = strlen(buf);
                snprintf(buf + l, len - l, "%s%s", l ? "|" : "", all[i]->type);
            }
    }
    int no = 0;
    list[0] = '\0';
    for (char *s = buf, *e; s && no < 16; s = e ? e + 1 : NULL) {
        e = strchr(s, '|');
        if (e) *e = '\0';
        opts[no++] = s;
        size_t l = strlen(list);
        snprintf(list + l, list_len - l, "%s%s", l ? ", " : "", *s ? s : "\"\"");
    }
    return no;
}

/* Stores the YAML value n into key k of the config, validating it. */
static dlt_status set_key(dlt_cfg_loader *L, int ki, const dlt_yaml_node *n)
{
    const key_def *k = &KEYS[ki];
    char *p = (char *)L->cfg + k->off;
    double v;
    if (k->type == K_FLOATS || k->type == K_INTS) {
        /* a scalar is a 1-list; an empty value, an empty list */
        int cnt = n->kind == DLT_YAML_SEQ ? n->n : !(n->plain && !n->text[0]);
        if (n->kind == DLT_YAML_MAP)
            return dlt_cfg_err(L, n->line, "%s: expected a list of numbers, got a mapping",
                               k->name);
        if (cnt > (int)k->size)
            return dlt_cfg_err(L, n->line, "%s: at most %zu values, got %d", k->name, k->size, cnt);
        double tmp[16];
        for (int i = 0; i < cnt; i++)
            DLT_CHECK(parse_number(L, k, n->kind == DLT_YAML_SEQ ? n->items[i] : n, &tmp[i]));
        if (k->type == K_FLOATS) {
            memset(p, 0, k->size * sizeof(float));
            for (int i = 0; i < cnt; i++) ((float *)p)[i] = (float)tmp[i];
        } else {
            memset(p, 0, k->size * sizeof(int));
            for (int i = 0; i < cnt; i++) ((int *)p)[i] = (int)tmp[i];
        }
        *(int *)((char *)L->cfg + k->count_off) = cnt;
        return DLT_OK;
    }
    if (n->kind != DLT_YAML_SCALAR) {
        static const char *const what[] = {"an integer",    "an integer", "an integer", "a number",
                                           "true or false", "a string",   "a string"};
        return dlt_cfg_err(L, n->line, "%s: expected %s, got %s", k->name, what[k->type],
                           dlt_yaml_kind_str(n->kind));
    }
    switch (k->type) {
    case K_INT:
    case K_INT64:
        DLT_CHECK(parse_number(L, k, n, &v));
        if (k->type == K_INT)
            *(int *)p = (int)v;
        else
            dlt_yaml_int(n->text, (int64_t *)p); /* exact, beyond a double's 2^53 */
        return DLT_OK;
    case K_FLOAT:
        DLT_CHECK(parse_number(L, k, n, &v));
        *(float *)p = (float)v;
        return DLT_OK;
    case K_UINT64:
        if (!dlt_yaml_uint(n->text, (uint64_t *)p))
            return dlt_cfg_err(L, n->line, "%s: expected a non-negative integer, got '%s'", k->name,
                               n->text);
        return DLT_OK;
    case K_BOOL:
        if (!dlt_yaml_bool(n->text, (int *)p))
            return dlt_cfg_err(L, n->line, "%s: expected true or false, got '%s'", k->name,
                               n->text);
        return DLT_OK;
    case K_STR:
        if (strlen(n->text) >= k->size)
            return dlt_cfg_err(L, n->line, "%s: value too long (at most %zu characters)", k->name,
                               k->size - 1);
        dlt_cfg_set_str(p, k->size, n->text);
        return DLT_OK;
    case K_CHOICE: {
        const char *opts[16];
        char buf[256], list[256], sug[96];
        int no = choices(k, buf, sizeof buf, opts, list, sizeof list);
        for (int i = 0; i < no; i++)
            if (!strcmp(opts[i], n->text)) {
                dlt_cfg_set_str(p, k->size, n->text);
                return DLT_OK;
            }
        return dlt_cfg_err(L, n->line, "%s: unknown value '%s' (one of: %s)%s", k->name, n->text,
                           list, dlt_cfg_did_you_mean(n->text, opts, no, sug, sizeof sug));
    }
    default: return dlt_cfg_err(L, n->line, "%s: unsupported key type", k->name);
    }
}

static int find_key(const char *name)
{
    for (int i = 0; i < N_KEYS; i++)
        if (!strcmp(KEYS[i].name, name)) return i;
    return -1;
}

/* Known names for suggestions: keys, model.layers, and section names. */
static int all_names(const char **out, int cap)
{
    static char sections[N_KEYS][32];
    int n = 0, ns = 0;
    for (int i = 0; i < N_KEYS && n < cap - 2; i++) {
        out[n++] = KEYS[i].name;
        const char *d = strchr(KEYS[i].name, '.');
        size_t l = d ? (size_t)(d - KEYS[i].name) : 0;
        if (l && l < 32 &&
            (ns == 0 || strncmp(sections[ns - 1], KEYS[i].name, l) || sections[ns - 1][l])) {
            memcpy(sections[ns], KEYS[i].name, l);
            sections[ns][l] = '\0';
            ns++;
        }
    }
    out[n++] = LAYERS_KEY;
    for (int i = 0; i < ns && n < cap; i++) out[n++] = sections[i];
    return n;
}

static dlt_status unknown_key(dlt_cfg_loader *L, int line, const char *key)
{
    const char *names[2 * N_KEYS + 2];
    char sug[96];
    int n = all_names(names, 2 * N_KEYS + 2);
    return dlt_cfg_err(L, line, "unknown key '%s'%s", key,
                       dlt_cfg_did_you_mean(key, names, n, sug, sizeof sug));
}

/* First key in section `sec` ("optimizer"), or -1: the prefix is not a section. */
static int section_key(const char *sec)
{
    size_t l = strlen(sec);
    for (int i = 0; i < N_KEYS; i++)
        if (!strncmp(KEYS[i].name, sec, l) && KEYS[i].name[l] == '.') return i;
    return -1;
}

/* ---------------------------------------------------------------- loading */

static dlt_status walk_map(dlt_cfg_loader *L, const dlt_yaml_node *m, const char *prefix)
{
    for (int i = 0; i < m->n; i++) {
        const dlt_yaml_node *kn = m->keys[i], *vn = m->items[i];
        if (kn->kind != DLT_YAML_SCALAR)
            return dlt_cfg_err(L, kn->line, "keys must be plain names, got %s",
                               dlt_yaml_kind_str(kn->kind));
        char full[160];
        if ((size_t)snprintf(full, sizeof full, "%s%s%s", prefix, *prefix ? "." : "", kn->text) >=
            sizeof full)
            return dlt_cfg_err(L, kn->line, "key too long: '%s'", kn->text);
        if (!strcmp(full, LAYERS_KEY)) {
            if (L->layers_line)
                return dlt_cfg_err(L, kn->line, "duplicate key '%s' (first on line %d)", full,
                                   L->layers_line);
            L->layers_line = kn->line;
            DLT_CHECK(dlt_cfg_parse_layers(L, vn));
            continue;
        }
        int k = find_key(full);
        if (k >= 0) {
            if (L->line[k])
                return dlt_cfg_err(L, kn->line, "duplicate key '%s' (first on line %d)", full,
                                   L->line[k]);
            DLT_CHECK(set_key(L, k, vn));
            L->line[k] = vn->line;
            continue;
        }
        int sk = section_key(full);
        if (sk < 0) return unknown_key(L, kn->line, full);
        if (vn->kind == DLT_YAML_MAP)
            DLT_CHECK(walk_map(L, vn, full));
        else if (!(vn->kind == DLT_YAML_SCALAR && vn->plain && !vn->text[0]))
            return dlt_cfg_err(L, vn->line, "%s: expected a mapping of keys such as '%s', got %s",
                               full, KEYS[sk].name, dlt_yaml_kind_str(vn->kind));
    }
    return DLT_OK;
}

static dlt_status apply_defaults(dlt_cfg_loader *L)
{
    for (int k = 0; k < N_KEYS; k++) {
        dlt_yaml_node n = {.kind = DLT_YAML_SCALAR, .text = (char *)KEYS[k].def, .plain = 1};
        if (KEYS[k].def[0] == '[') n.kind = DLT_YAML_SEQ; /* only "[]": an empty list */
        DLT_CHECK(set_key(L, k, &n));
    }
    return DLT_OK;
}

/* One "KEY=VALUE": the value is a scalar, or a YAML flow list "[a, b]". */
static dlt_status apply_override(dlt_cfg_loader *L, char *const ov)
{
    L->override = ov;
    const char *eq = strchr(ov, '=');
    if (!eq || eq == ov) return dlt_cfg_err(L, 0, "expected KEY=VALUE");
    char key[160];
    if ((size_t)(eq - ov) >= sizeof key) return dlt_cfg_err(L, 0, "key too long");
    memcpy(key, ov, (size_t)(eq - ov));
    key[eq - ov] = '\0';
    const char *val = eq + 1;

    dlt_yaml_node scalar = {.kind = DLT_YAML_SCALAR, .text = (char *)val, .plain = 1};
    dlt_yaml_node *tree = NULL, *node = &scalar;
    if (val[0] == '[') {
        char what[320];
        snprintf(what, sizeof what, "override '%s'", ov);
        DLT_CHECK(dlt_yaml_load_string(val, what, &tree));
        node = tree;
    }
    dlt_status st;
    if (!strncmp(key, LAYERS_KEY ".", sizeof LAYERS_KEY)) {
        st = dlt_cfg_override_layer(L, key + sizeof LAYERS_KEY, node);
    } else if (!strcmp(key, LAYERS_KEY)) {
        st = dlt_cfg_err(L, 0,
                         "cannot replace the layer list; set one key with "
                         "model.layers.N.KEY=VALUE (N from 0)");
    } else {
        int k = find_key(key);
        if (k < 0)
            st = unknown_key(L, 0, key);
        else if ((st = set_key(L, k, node)) == DLT_OK)
            L->ovr[k] = ov;
    }
    dlt_yaml_free(tree);
    L->override = NULL;
    return st;
}

/* name from the file name, run_dir from name and the time, then checks of
 * keys that depend on each other. */
static dlt_status finish(dlt_cfg_loader *L)
{
    dlt_config *c = L->cfg;
    int kn = find_key("name");
    if (!c->name[0]) {
        const char *base = strrchr(c->path, '/');
        base = base ? base + 1 : c->path;
        size_t l = strlen(base);
        if (l > 5 && !strcmp(base + l - 5, ".yaml"))
            l -= 5;
        else if (l > 4 && !strcmp(base + l - 4, ".yml"))
            l -= 4;
        if (l >= sizeof c->name) l = sizeof c->name - 1;
        for (size_t i = 0; i < l; i++)
            c->name[i] = isalnum((unsigned char)base[i]) || strchr("._-", base[i]) ? base[i] : '_';
    }
    if (!c->name[0]) return key_err(L, kn, "must not be empty");
    for (const char *s = c->name; *s; s++)
        if (*s == '/' || isspace((unsigned char)*s))
            return key_err(L, kn, "must not contain '/' or spaces");
    if (!c->run_dir[0]) {
        char ts[32];
        time_t now = time(NULL);
        struct tm tm;
        localtime_r(&now, &tm);
        strftime(ts, sizeof ts, "%Y%m%d-%H%M%S", &tm);
        if ((size_t)snprintf(c->run_dir, sizeof c->run_dir, "runs/%s-%s", c->name, ts) >=
            sizeof c->run_dir)
            return key_err(L, kn, "too long for a run directory");
    }
    if (c->n_mean != c->n_std)
        return key_err(L, find_key(c->n_std ? "data.std" : "data.mean"),
                       "data.mean and data.std need the same number of values");
    if (c->nesterov && !(c->momentum > 0) && !strcmp(c->optimizer, "sgd"))
        return key_err(L, find_key("optimizer.nesterov"), "needs optimizer.momentum > 0");
    if (c->early_metric[0] && !c->test_data[0])
        return key_err(L, find_key("early_stopping.metric"), "needs test data (data.test)");
    if (!strcmp(c->early_metric, "accuracy") && strcmp(c->loss, "softmax_cross_entropy"))
        return key_err(L, find_key("early_stopping.metric"),
                       "accuracy needs model.loss softmax_cross_entropy");
    return dlt_cfg_check_layers(L);
}

/* Loads path, then overrides, then derives and checks; see config.h. */
dlt_status dlt_config_load(const char *path, char *const *overrides, int n_over, dlt_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    if (strlen(path) >= sizeof cfg->path) return DLT_ERR(DLT_ERR_CONFIG, "%s: path too long", path);
    dlt_cfg_set_str(cfg->path, sizeof cfg->path, path);
    dlt_cfg_loader L = {.cfg = cfg};
    DLT_CHECK(apply_defaults(&L));

    dlt_yaml_node *root;
    DLT_CHECK(dlt_yaml_load_file(path, &root));
    dlt_status st =
        root->kind == DLT_YAML_MAP
            ? walk_map(&L, root, "")
            : dlt_cfg_err(&L, root->line, "expected a mapping of keys at the top, got %s",
                          dlt_yaml_kind_str(root->kind));
    dlt_yaml_free(root);
    DLT_CHECK(st);
    for (int i = 0; i < n_over; i++) DLT_CHECK(apply_override(&L, overrides[i]));
    return finish(&L);
}

/* ---------------------------------------------------------------- writing */

static void put_value(FILE *f, const dlt_config *c, const key_def *k)
{
    const char *p = (const char *)c + k->off;
    switch (k->type) {
    case K_INT: fprintf(f, "%d", *(const int *)p); break;
    case K_INT64: fprintf(f, "%" PRId64, *(const int64_t *)p); break;
    case K_UINT64: fprintf(f, "%" PRIu64, *(const uint64_t *)p); break;
    case K_FLOAT: dlt_yaml_put_float(f, *(const float *)p); break;
    case K_BOOL: fputs(*(const int *)p ? "true" : "false", f); break;
    case K_STR: dlt_yaml_put_string(f, p); break;
    case K_CHOICE: /* identifiers, plain unless empty */
        if (*p)
            fputs(p, f);
        else
            dlt_yaml_put_string(f, p);
        break;
    case K_FLOATS:
    case K_INTS: {
        int n = *(const int *)((const char *)c + k->count_off);
        fputc('[', f);
        for (int i = 0; i < n; i++) {
            if (i) fputs(", ", f);
            if (k->type == K_FLOATS)
                dlt_yaml_put_float(f, ((const float *)p)[i]);
            else
                fprintf(f, "%d", ((const int *)p)[i]);
        }
        fputc(']', f);
        break;
    }
    }
}

/* Writes every key with its resolved value, nested by section, and the layers. */
void dlt_config_write(const dlt_config *cfg, FILE *f)
{
    fprintf(f, "# dltrain configuration, resolved from %s\n", cfg->path);
    char sec[32] = "";
    for (int i = 0; i <= N_KEYS; i++) {
        const char *name = i < N_KEYS ? KEYS[i].name : "";
        const char *dot = strchr(name, '.');
        size_t l = dot ? (size_t)(dot - name) : 0;
        if (strlen(sec) != l || strncmp(sec, name, l)) {
            if (!strcmp(sec, "model")) dlt_cfg_write_layers(cfg, f);
            memcpy(sec, name, l);
            sec[l] = '\0';
            if (l) fprintf(f, "%s:\n", sec);
        }
        if (i == N_KEYS) break;
        fprintf(f, "%s%s: ", l ? "  " : "", l ? dot + 1 : name);
        put_value(f, cfg, &KEYS[i]);
        fputc('\n', f);
    }
}

/* ---------------------------------------------------------------- help */

void dlt_config_help(FILE *f)
{
    static const char *const tname[] = {"int",    "int",    "int",     "float", "bool",
                                        "string", "string", "[float]", "[int]"};
    fprintf(f, "Configuration keys. In YAML, sections nest (optimizer: {lr: 0.1});\n"
               "on the command line, override any key with KEY=VALUE (optimizer.lr=0.1,\n"
               "data.mean=[0.5,0.5], model.layers.N.KEY=VALUE for layer N from 0).\n\n");
    fprintf(f, "  %-25s %-8s %-24s %s\n", "KEY", "TYPE", "DEFAULT", "MEANING");
    for (int i = 0; i < N_KEYS; i++) {
        const key_def *k = &KEYS[i];
        char def[64], extra[300] = "";
        snprintf(def, sizeof def, "%s", *k->def ? k->def : "\"\"");
        if (k->type == K_CHOICE) {
            const char *opts[16];
            char buf[256], list[256];
            choices(k, buf, sizeof buf, opts, list, sizeof list);
            snprintf(extra, sizeof extra, "; one of: %s", list);
        } else if (k->type != K_STR && k->type != K_BOOL && k->type != K_UINT64 &&
                   (k->min != -INF || k->max != INF)) {
            char r[96];
            range_str(k, r, sizeof r);
            snprintf(extra, sizeof extra, " (%s)", r);
        }
        fprintf(f, "  %-25s %-8s %-24s %s%s\n", k->name, tname[k->type], def, k->help, extra);
    }
    fprintf(f, "  %-25s %-8s %-24s %s\n", LAYERS_KEY, "[layer]", "(required)",
            "the layers in order: each {type, name, inputs, KEY: VALUE...}");
    dlt_cfg_help_layers(f);
}
