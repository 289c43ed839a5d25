/* `dlprep text`: a plain-text corpus to a vocabulary and token shards.
 *
 *   dlprep text OUTDIR [--corpus wordnet|FILE] [--vocab word|wordpiece]
 *        [--vocab-size N] [--min-count N] [--seq-len L] [--layout sentences|stream]
 *        [--labels lexname|pos|none] [--test-frac F] [--shard-size N] [--seed S]
 *        [--max-units N]
 *
 * Design. A corpus is a list of units: the glosses of WordNet (Debian's
 * wordnet-base: on each synset line of /usr/share/wordnet/data.{noun,verb,
 * adj,adv}, the text after " | "), each with its synset's lexicographer file
 * or part of speech as a label; or the non-empty lines of a text file. Each
 * unit goes to the held-out split when a hash of (seed, unit index) falls
 * under --test-frac, so the split is stable and spread over the corpus. The
 * vocabulary is built from the training units only (held-out words may be
 * [UNK], as for any real held-out text) and written as OUTDIR/vocab.txt.
 * Layouts: "sentences" writes one unit per row, [CLS] ids [SEP] [PAD]...,
 * cut to L (BERT, classification; `labels` written when the corpus has
 * them); "stream" joins all units, each closed by [SEP], and cuts the
 * stream into rows of L (language models). Shards OUTDIR/{train,test}-NNNNN.h5
 * in the format data/tokens.h reads, each written to a temporary name and
 * renamed when complete. */
#include <errno.h>
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/rng.h"
#include "data/dlprep/dlprep.h"
#include "data/text.h"

#define WORDNET_DIR "/usr/share/wordnet"

static const char *const LEXNAMES[45] = {
    "adj.all", "adj.pert", "adv.all", "noun.Tops", "noun.act", "noun.animal", "noun.artifact",
    "noun.attribute", "noun.body", "noun.cognition", "noun.communication", "noun.event", "noun.feeling",
    "noun.food", "noun.group", "noun.location", "noun.motive", "noun.object", "noun.person",
    "noun.phenomenon", "noun.plant", "noun.possession", "noun.process", "noun.quantity", "noun.relation",
    "noun.shape", "noun.state", "noun.substance", "noun.time", "verb.body", "verb.change", "verb.cognition",
    "verb.communication", "verb.competition", "verb.consumption", "verb.contact", "verb.creation",
    "verb.emotion", "verb.motion", "verb.perception", "verb.possession", "verb.social", "verb.stative",
    "verb.weather", "adj.ppl"
};
static const char *const POS_NAMES[4] = { "noun", "verb", "adjective", "adverb" };

typedef struct {
    char *text;
    int label;      /* -1: none */
} unit;

typedef struct {
    unit *u;
    int64_t n, cap;
} corpus;

static dlt_status push(corpus *c, const char *text, size_t len, int label)
{
    if (c->n == c->cap) {
        int64_t cap = c->cap ? 2 * c->cap : 4096;
        unit *nu = realloc(c->u, (size_t)cap * sizeof *nu);
        if (!nu) return DLT_ERR(DLT_ERR_NOMEM, "dlprep text: out of memory");
        c->u = nu;
        c->cap = cap;
    }
    char *t = strndup(text, len);
    if (!t) return DLT_ERR(DLT_ERR_NOMEM, "dlprep text: out of memory");
    c->u[c->n++] = (unit){ t, label };
    return DLT_OK;
}

/* Glosses of one WordNet data file; label from lex_filenum or the POS. */
static dlt_status read_wordnet_file(corpus *c, const char *path, int pos_labels, int max_units)
{
    FILE *f = fopen(path, "r");
    if (!f) return DLT_ERR(DLT_ERR_IO, "%s: cannot open (install the Debian package wordnet-base, "
                           "or name a text file with --corpus)", path);
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    dlt_status st = DLT_OK;
    while (st == DLT_OK && (max_units <= 0 || c->n < max_units) && (len = getline(&line, &cap, f)) > 0) {
        if (line[0] == ' ') continue; /* the license header */
        char *bar = strstr(line, " | ");
        unsigned off, lex;
        char ss;
        if (!bar || sscanf(line, "%u %u %c", &off, &lex, &ss) != 3 || lex >= 45) continue;
        int label = lex;
        if (pos_labels) label = ss == 'n' ? 0 : ss == 'v' ? 1 : ss == 'r' ? 3 : 2;
        char *g = bar + 3;
        size_t gl = strcspn(g, "\r\n");
        while (gl > 0 && g[gl - 1] == ' ') gl--;
        if (gl > 0) st = push(c, g, gl, label);
    }
    free(line);
    fclose(f);
    return st;
}

static dlt_status read_lines(corpus *c, const char *path, int max_units)
{
    FILE *f = fopen(path, "r");
    if (!f) return DLT_ERR(DLT_ERR_IO, "%s: cannot open the corpus: %s", path, strerror(errno));
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    dlt_status st = DLT_OK;
    while (st == DLT_OK && (max_units <= 0 || c->n < max_units) && (len = getline(&line, &cap, f)) > 0) {
        size_t l = strcspn(line, "\r\n");
        size_t s = strspn(line, " \t");
        if (s < l) st = push(c, line + s, l - s, -1);
    }
    free(line);
    fclose(f);
    return st;
}

/* ---------------------------------------------------------------- shards */

typedef struct {
    const char *outdir, *layout, *source;
    int L, vocab_size;
    const char *const *class_names;
    int n_classes;
    int64_t shard_size;
} shard_cfg;

static dlt_status write_one(const shard_cfg *sc, const char *path, const int32_t *tok, const int64_t *labels,
                            int64_t n)
{
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (f < 0) return DLT_ERR(DLT_ERR_IO, "%s: cannot create HDF5 file", path);
    hsize_t dims[2] = { (hsize_t)n, (hsize_t)sc->L };
    hsize_t chunk[2] = { (hsize_t)(n < 1024 ? n : 1024), (hsize_t)sc->L };
    hid_t sp = H5Screate_simple(2, dims, NULL), dcpl = H5Pcreate(H5P_DATASET_CREATE);
    int ok = sp >= 0 && dcpl >= 0 && H5Pset_chunk(dcpl, 2, chunk) >= 0;
    hid_t d = ok ? H5Dcreate2(f, "tokens", H5T_STD_I32LE, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT) : -1;
    ok = d >= 0 && H5Dwrite(d, H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, tok) >= 0 &&
         dlt_prep_i64_attr(d, "vocab_size", sc->vocab_size);
    if (d >= 0) H5Dclose(d);
    if (dcpl >= 0) H5Pclose(dcpl);
    if (sp >= 0) H5Sclose(sp);
    if (ok && labels) {
        sp = H5Screate_simple(1, dims, NULL);
        d = sp >= 0 ? H5Dcreate2(f, "labels", H5T_STD_I64LE, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT) : -1;
        ok = d >= 0 && H5Dwrite(d, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, labels) >= 0 &&
             dlt_prep_str_attr(f, "class_names", sc->class_names, sc->n_classes);
        if (d >= 0) H5Dclose(d);
        if (sp >= 0) H5Sclose(sp);
    }
    const char *fmt = "dltrain-tokens", *voc = "vocab.txt";
    ok = ok && dlt_prep_str_attr(f, "format", &fmt, -1) && dlt_prep_i64_attr(f, "version", 1) && dlt_prep_i64_attr(f, "vocab_size", sc->vocab_size) &&
         dlt_prep_str_attr(f, "layout", &sc->layout, -1) && dlt_prep_str_attr(f, "vocab", &voc, -1) && dlt_prep_str_attr(f, "source", &sc->source, -1);
    if (H5Fclose(f) < 0) ok = 0;
    return ok ? DLT_OK : DLT_ERR(DLT_ERR_IO, "%s: writing the shard failed (disk full?)", path);
}

static dlt_status write_split(const shard_cfg *sc, const char *split, const int32_t *tok, const int64_t *labels,
                              int64_t n)
{
    char path[4096], tmp[4200];
    int k = 0;
    for (int64_t first = 0; first < n; first += sc->shard_size, k++) {
        int64_t m = n - first < sc->shard_size ? n - first : sc->shard_size;
        snprintf(path, sizeof path, "%s/%s-%05d.h5", sc->outdir, split, k);
        snprintf(tmp, sizeof tmp, "%s.tmp", path);
        dlt_status st = write_one(sc, tmp, tok + first * sc->L, labels ? labels + first : NULL, m);
        if (st == DLT_OK && rename(tmp, path) != 0)
            st = DLT_ERR(DLT_ERR_IO, "cannot rename %s to %s: %s", tmp, path, strerror(errno));
        if (st != DLT_OK) {
            unlink(tmp);
            return st;
        }
    }
    for (int j = k;; j++) { /* stale shards of an earlier, larger run */
        snprintf(path, sizeof path, "%s/%s-%05d.h5", sc->outdir, split, j);
        if (access(path, F_OK) != 0) break;
        unlink(path);
    }
    printf("dlprep text: %s: %lld rows of %d tokens in %d shard%s\n", split, (long long)n, sc->L, k,
           k == 1 ? "" : "s");
    return DLT_OK;
}

/* Encodes the units of one split (in[i] says which) into rows. */
static dlt_status encode_split(dlt_vocab_t v, const corpus *c, const char *in, char want, int L, int stream,
                               int32_t **tok_out, int64_t **lab_out, int64_t *n_out)
{
    int64_t cap = 1024, n = 0, pos = 0; /* pos: fill of the current stream row */
    int32_t *tok = calloc((size_t)(cap * L), sizeof *tok);
    int64_t *lab = malloc((size_t)cap * sizeof *lab);
    int32_t *ids = malloc(4096 * sizeof *ids);
    if (!tok || !lab || !ids) goto nomem;
    for (int64_t i = 0; i < c->n; i++) {
        if (in[i] != want) continue;
        int k = dlt_vocab_encode(v, c->u[i].text, ids, 4095);
        if (k > 4095) k = 4095;
        if (stream) ids[k++] = DLT_TOK_SEP;
        for (int j = 0; j < k || !stream; j++) {
            if (n + 1 >= cap) {
                int64_t nc = 2 * cap;
                int32_t *nt = realloc(tok, (size_t)(nc * L) * sizeof *nt);
                int64_t *nl = realloc(lab, (size_t)nc * sizeof *nl);
                if (nt) tok = nt;
                if (nl) lab = nl;
                if (!nt || !nl) goto nomem;
                memset(tok + cap * L, 0, (size_t)((nc - cap) * L) * sizeof *tok);
                cap = nc;
            }
            if (!stream) { /* [CLS] ids [SEP], cut to L */
                int32_t *row = tok + n * L;
                int m = k < L - 2 ? k : L - 2;
                row[0] = DLT_TOK_CLS;
                memcpy(row + 1, ids, (size_t)m * sizeof *ids);
                row[m + 1] = DLT_TOK_SEP;
                lab[n++] = c->u[i].label;
                break;
            }
            tok[n * L + pos++] = ids[j];
            if (pos == L) {
                lab[n++] = -1;
                pos = 0;
            }
        }
    }
    if (stream && pos > 0) lab[n++] = -1; /* the last row, padded */
    free(ids);
    *tok_out = tok;
    *lab_out = lab;
    *n_out = n;
    return DLT_OK;
nomem:
    free(tok);
    free(lab);
    free(ids);
    return DLT_ERR(DLT_ERR_NOMEM, "dlprep text: out of memory encoding the corpus");
}

static dlt_status make_dir(const char *dir)
{
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", dir);
    for (char *p = buf + 1;; p++) {
        if (*p == '/' || !*p) {
            char keep = *p;
            *p = '\0';
            if (mkdir(buf, 0777) != 0 && errno != EEXIST)
                return DLT_ERR(DLT_ERR_IO, "cannot create directory %s: %s", buf, strerror(errno));
            *p = keep;
            if (!keep) break;
        }
    }
    return DLT_OK;
}

static dlt_status prep_text(const dlt_prep_text_cfg *cfg)
{
    corpus c = { 0 };
    dlt_status st = DLT_OK;
    int wordnet = !strcmp(cfg->corpus, "wordnet");
    int pos_labels = !strcmp(cfg->labels, "pos"), use_labels = wordnet && strcmp(cfg->labels, "none");
    if (wordnet) {
        static const char *const files[] = { "noun", "verb", "adj", "adv" };
        char path[512];
        for (int i = 0; i < 4 && st == DLT_OK; i++) {
            snprintf(path, sizeof path, "%s/data.%s", cfg->wordnet_dir, files[i]);
            /* --max-units takes the same share of each file, so every POS is present */
            int64_t lim = cfg->max_units > 0 ? c.n + (cfg->max_units + 3) / 4 : 0;
            st = read_wordnet_file(&c, path, pos_labels, (int)lim);
        }
    } else {
        st = read_lines(&c, cfg->corpus, (int)cfg->max_units);
    }
    if (st == DLT_OK && c.n == 0) st = DLT_ERR(DLT_ERR_IO, "%s: the corpus holds no text", cfg->corpus);

    char *in = st == DLT_OK ? malloc((size_t)c.n) : NULL;
    dlt_wordcount_t wc = NULL;
    dlt_vocab_t v = NULL;
    int32_t *tok = NULL;
    int64_t *lab = NULL, n = 0;
    if (st == DLT_OK && !in) st = DLT_ERR(DLT_ERR_NOMEM, "dlprep text: out of memory");
    if (st == DLT_OK) st = dlt_wordcount_init(&wc);
    uint64_t key = dlt_hash_combine(cfg->seed, dlt_hash_str("dlprep text split"));
    for (int64_t i = 0; st == DLT_OK && i < c.n; i++) {
        in[i] = dlt_rand_u01(key, (uint64_t)i) < cfg->test_frac ? 't' : 'r';
        if (in[i] == 'r') st = dlt_wordcount_add(wc, c.u[i].text);
    }
    if (st == DLT_OK)
        st = cfg->wordpiece ? dlt_vocab_build_wordpiece(wc, cfg->min_count, cfg->vocab_size, &v)
                            : dlt_vocab_build_words(wc, cfg->min_count, cfg->vocab_size, &v);
    char path[4200];
    if (st == DLT_OK) st = make_dir(cfg->outdir);
    if (st == DLT_OK) {
        snprintf(path, sizeof path, "%s/vocab.txt", cfg->outdir);
        st = dlt_vocab_save(v, path);
    }
    if (st == DLT_OK)
        printf("dlprep text: %lld units from %s, %s vocabulary of %d ids -> %s\n", (long long)c.n,
               wordnet ? "WordNet glosses" : cfg->corpus, cfg->wordpiece ? "wordpiece" : "word", dlt_vocab_size(v),
               path);
    int stream = !strcmp(cfg->layout, "stream");
    shard_cfg sc = { cfg->outdir, stream ? "stream" : "sentences", wordnet ? "WordNet 3.0 glosses (wordnet-base)" : cfg->corpus,
                     cfg->seq_len, v ? dlt_vocab_size(v) : 0, pos_labels ? POS_NAMES : LEXNAMES,
                     pos_labels ? 4 : 45, cfg->shard_size };
    for (int s = 0; s < 2 && st == DLT_OK; s++) {
        st = encode_split(v, &c, in, s ? 't' : 'r', cfg->seq_len, stream, &tok, &lab, &n);
        if (st == DLT_OK && n > 0)
            st = write_split(&sc, s ? "test" : "train", tok, use_labels && !stream ? lab : NULL, n);
        else if (st == DLT_OK && s == 0)
            st = DLT_ERR(DLT_ERR_INVALID, "dlprep text: the training split is empty");
        free(tok);
        free(lab);
        tok = NULL;
        lab = NULL;
    }
    for (int64_t i = 0; i < c.n; i++) free(c.u[i].text);
    free(c.u);
    free(in);
    dlt_wordcount_free(wc);
    dlt_vocab_free(v);
    return st;
}

dlt_status dlt_prep_text(const dlt_prep_text_cfg *cfg)
{
    if (cfg->seq_len < 4 || cfg->seq_len > 65536)
        return DLT_ERR(DLT_ERR_INVALID, "dlprep text: --seq-len must be in 4..65536, got %d", cfg->seq_len);
    H5E_auto2_t old_fn = NULL;
    void *old_data = NULL;
    H5Eget_auto2(H5E_DEFAULT, &old_fn, &old_data);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    dlt_status st = prep_text(cfg);
    H5Eset_auto2(H5E_DEFAULT, old_fn, old_data);
    return st;
}
