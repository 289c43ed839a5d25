/* Vocabularies: word counting, the word-level vocabulary, the vocabulary
 * file, encoding and decoding (the WordPiece trainer is text_wordpiece.c).
 *
 * Design. A vocabulary is an array of token strings (the id is the index)
 * plus a hash map from string to id; both tokenizers share it. Encoding
 * walks the normalised words of the text once (dlt_text_words), so a text
 * is never copied whole; WordPiece splits a word greedily, longest known
 * prefix first, as BERT does, and a word it cannot split is one [UNK]. */
#include "data/text_internal.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#define VOCAB_MAGIC "#dltrain-vocab"
#define VOCAB_VERSION 1
#define MAX_WORD 200

static const char *const SPECIALS[DLT_TOK_N_SPECIAL] = { "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]" };

/* ------------------------------------------------------------- hash map */

static uint64_t hash_bytes(const char *s, size_t len)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < len; i++) h = (h ^ (uint8_t)s[i]) * 0x100000001b3ULL;
    return h ^ (h >> 29);
}

dlt_status dlt_strmap_init(dlt_strmap *m, size_t expect)
{
    size_t cap = 64;
    while (cap < 2 * expect) cap *= 2;
    m->keys = calloc(cap, sizeof *m->keys);
    m->vals = calloc(cap, sizeof *m->vals);
    m->cap = cap;
    m->n = 0;
    if (!m->keys || !m->vals) return DLT_ERR(DLT_ERR_NOMEM, "text: out of memory for a hash map");
    return DLT_OK;
}

void dlt_strmap_free(dlt_strmap *m)
{
    free(m->keys);
    free(m->vals);
    memset(m, 0, sizeof *m);
}

int dlt_strmap_get(const dlt_strmap *m, const char *key, size_t len)
{
    size_t mask = m->cap - 1;
    for (size_t i = hash_bytes(key, len) & mask;; i = (i + 1) & mask) {
        const char *k = m->keys[i];
        if (!k) return -1;
        if (!strncmp(k, key, len) && k[len] == '\0') return m->vals[i];
    }
}

static dlt_status grow(dlt_strmap *m)
{
    dlt_strmap big;
    DLT_CHECK(dlt_strmap_init(&big, m->cap));
    for (size_t i = 0; i < m->cap; i++)
        if (m->keys[i]) dlt_strmap_put(&big, m->keys[i], m->vals[i]);
    dlt_strmap_free(m);
    *m = big;
    return DLT_OK;
}

dlt_status dlt_strmap_put(dlt_strmap *m, const char *key, int val)
{
    if (2 * (m->n + 1) > m->cap) DLT_CHECK(grow(m));
    size_t mask = m->cap - 1;
    size_t i = hash_bytes(key, strlen(key)) & mask;
    while (m->keys[i]) i = (i + 1) & mask;
    m->keys[i] = key;
    m->vals[i] = val;
    m->n++;
    return DLT_OK;
}

/* -------------------------------------------------------- normalisation */

void dlt_text_words(const char *text, void (*fn)(const char *w, int len, void *ctx), void *ctx)
{
    char w[MAX_WORD + 1];
    int n = 0;
    for (const unsigned char *p = (const unsigned char *)text;; p++) {
        int c = *p;
        int end = c == '\0' || isspace(c) || (c < 128 && ispunct(c));
        if (end && n > 0) {
            w[n] = '\0';
            fn(w, n, ctx);
            n = 0;
        }
        if (c == '\0') break;
        if (c < 128 && ispunct(c)) {
            /* "[mask]" stays one word so prompts can name the mask token */
            if (c == '[' && !strncasecmp((const char *)p, "[mask]", 6)) {
                fn("[MASK]", 6, ctx);
                p += 5;
                continue;
            }
            w[0] = (char)c;
            w[1] = '\0';
            fn(w, 1, ctx);
        } else if (!end && n < MAX_WORD) {
            w[n++] = (char)(c < 128 ? tolower(c) : c);
        }
    }
}

/* ---------------------------------------------------------- word counts */

dlt_status dlt_wordcount_init(dlt_wordcount_t *out)
{
    dlt_wordcount_t wc = calloc(1, sizeof *wc);
    if (!wc) return DLT_ERR(DLT_ERR_NOMEM, "text: out of memory");
    dlt_status st = dlt_strmap_init(&wc->map, 1024);
    if (st != DLT_OK) {
        free(wc);
        return st;
    }
    *out = wc;
    return DLT_OK;
}

void dlt_wordcount_free(dlt_wordcount_t wc)
{
    if (!wc) return;
    for (int i = 0; i < wc->n; i++) free(wc->words[i]);
    free(wc->words);
    free(wc->counts);
    dlt_strmap_free(&wc->map);
    free(wc);
}

typedef struct {
    dlt_wordcount_t wc;
    dlt_status st;
} count_ctx;

static void count_word(const char *w, int len, void *ctx)
{
    count_ctx *c = ctx;
    dlt_wordcount_t wc = c->wc;
    if (c->st != DLT_OK) return;
    int i = dlt_strmap_get(&wc->map, w, (size_t)len);
    if (i >= 0) {
        wc->counts[i]++;
        return;
    }
    if (wc->n == wc->cap) {
        int cap = wc->cap ? 2 * wc->cap : 1024;
        char **nw = realloc(wc->words, (size_t)cap * sizeof *nw);
        if (nw) wc->words = nw;
        int64_t *nc = realloc(wc->counts, (size_t)cap * sizeof *nc);
        if (nc) wc->counts = nc;
        if (!nw || !nc) {
            c->st = DLT_ERR(DLT_ERR_NOMEM, "text: out of memory counting words");
            return;
        }
        wc->cap = cap;
    }
    char *copy = strdup(w);
    if (!copy) {
        c->st = DLT_ERR(DLT_ERR_NOMEM, "text: out of memory counting words");
        return;
    }
    wc->words[wc->n] = copy;
    wc->counts[wc->n] = 1;
    c->st = dlt_strmap_put(&wc->map, copy, wc->n);
    wc->n++;
}

dlt_status dlt_wordcount_add(dlt_wordcount_t wc, const char *text)
{
    count_ctx c = { wc, DLT_OK };
    dlt_text_words(text, count_word, &c);
    return c.st;
}

/* ------------------------------------------------------------ vocabulary */

dlt_status dlt_vocab_add(dlt_vocab_t v, const char *tok, size_t len)
{
    if (dlt_strmap_get(&v->map, tok, len) >= 0) return DLT_OK;
    if (v->n == v->cap) {
        int cap = v->cap ? 2 * v->cap : 256;
        char **nt = realloc(v->tok, (size_t)cap * sizeof *nt);
        if (!nt) return DLT_ERR(DLT_ERR_NOMEM, "text: out of memory for the vocabulary");
        v->tok = nt;
        v->cap = cap;
    }
    char *copy = strndup(tok, len);
    if (!copy) return DLT_ERR(DLT_ERR_NOMEM, "text: out of memory for the vocabulary");
    v->tok[v->n] = copy;
    DLT_CHECK(dlt_strmap_put(&v->map, copy, v->n));
    v->n++;
    return DLT_OK;
}

dlt_status dlt_vocab_new(dlt_vocab_kind kind, dlt_vocab_t *out)
{
    dlt_vocab_t v = calloc(1, sizeof *v);
    if (!v) return DLT_ERR(DLT_ERR_NOMEM, "text: out of memory");
    v->kind = kind;
    dlt_status st = dlt_strmap_init(&v->map, 1024);
    for (int i = 0; st == DLT_OK && i < DLT_TOK_N_SPECIAL; i++)
        st = dlt_vocab_add(v, SPECIALS[i], strlen(SPECIALS[i]));
    if (st != DLT_OK) {
        dlt_vocab_free(v);
        return st;
    }
    *out = v;
    return DLT_OK;
}

void dlt_vocab_free(dlt_vocab_t v)
{
    if (!v) return;
    for (int i = 0; i < v->n; i++) free(v->tok[i]);
    free(v->tok);
    dlt_strmap_free(&v->map);
    free(v);
}

int dlt_vocab_size(dlt_vocab_t v) { return v->n; }
dlt_vocab_kind dlt_vocab_kind_of(dlt_vocab_t v) { return v->kind; }
const char *dlt_vocab_token(dlt_vocab_t v, int id) { return id >= 0 && id < v->n ? v->tok[id] : NULL; }
int dlt_vocab_find(dlt_vocab_t v, const char *token) { return dlt_strmap_get(&v->map, token, strlen(token)); }

/* Most frequent first; ties in byte order, so the vocabulary is reproducible. */
static int by_count(const void *a, const void *b, void *ctx)
{
    const struct dlt_wordcount *wc = ctx;
    int i = *(const int *)a, j = *(const int *)b;
    if (wc->counts[i] != wc->counts[j]) return wc->counts[i] > wc->counts[j] ? -1 : 1;
    return strcmp(wc->words[i], wc->words[j]);
}

dlt_status dlt_vocab_build_words(dlt_wordcount_t wc, int min_count, int max_size, dlt_vocab_t *out)
{
    if (max_size <= DLT_TOK_N_SPECIAL)
        return DLT_ERR(DLT_ERR_INVALID, "text: vocabulary size %d leaves no room beside the %d special tokens",
                       max_size, DLT_TOK_N_SPECIAL);
    int *order = malloc((size_t)(wc->n ? wc->n : 1) * sizeof *order);
    if (!order) return DLT_ERR(DLT_ERR_NOMEM, "text: out of memory");
    for (int i = 0; i < wc->n; i++) order[i] = i;
    qsort_r(order, (size_t)wc->n, sizeof *order, by_count, wc);
    dlt_vocab_t v;
    dlt_status st = dlt_vocab_new(DLT_VOCAB_WORD, &v);
    for (int i = 0; st == DLT_OK && i < wc->n && v->n < max_size; i++) {
        int k = order[i];
        if (wc->counts[k] < min_count) break;
        st = dlt_vocab_add(v, wc->words[k], strlen(wc->words[k]));
    }
    free(order);
    if (st != DLT_OK) return st;
    *out = v;
    return DLT_OK;
}

/* ------------------------------------------------------------- file I/O */

dlt_status dlt_vocab_save(dlt_vocab_t v, const char *path)
{
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f) return DLT_ERR(DLT_ERR_IO, "%s: cannot write the vocabulary", tmp);
    fprintf(f, "%s %d %s\n", VOCAB_MAGIC, VOCAB_VERSION, v->kind == DLT_VOCAB_WORD ? "word" : "wordpiece");
    for (int i = 0; i < v->n; i++) fprintf(f, "%s\n", v->tok[i]);
    int bad = ferror(f);
    if (fclose(f) != 0 || bad || rename(tmp, path) != 0) {
        remove(tmp);
        return DLT_ERR(DLT_ERR_IO, "%s: cannot write the vocabulary", path);
    }
    return DLT_OK;
}

dlt_status dlt_vocab_load(const char *path, dlt_vocab_t *out)
{
    FILE *f = fopen(path, "r");
    if (!f) return DLT_ERR(DLT_ERR_IO, "%s: cannot open the vocabulary file", path);
    char line[1024], kind[32] = "";
    int ver = 0;
    if (!fgets(line, sizeof line, f) || sscanf(line, VOCAB_MAGIC " %d %31s", &ver, kind) != 2 ||
        ver != VOCAB_VERSION || (strcmp(kind, "word") && strcmp(kind, "wordpiece"))) {
        fclose(f);
        return DLT_ERR(DLT_ERR_IO, "%s: not a dltrain vocabulary (version %d expected on line 1: "
                       "\"" VOCAB_MAGIC " %d word|wordpiece\"); rebuild it with dlprep text",
                       path, VOCAB_VERSION, VOCAB_VERSION);
    }
    dlt_vocab_t v = calloc(1, sizeof *v);
    dlt_status st = v ? dlt_strmap_init(&v->map, 4096) : DLT_ERR(DLT_ERR_NOMEM, "text: out of memory");
    if (v) v->kind = strcmp(kind, "word") ? DLT_VOCAB_WORDPIECE : DLT_VOCAB_WORD;
    int lineno = 1;
    while (st == DLT_OK && fgets(line, sizeof line, f)) {
        lineno++;
        size_t len = strcspn(line, "\r\n");
        if (len == 0) {
            st = DLT_ERR(DLT_ERR_IO, "%s:%d: empty token", path, lineno);
        } else if (dlt_strmap_get(&v->map, line, len) >= 0) {
            line[len] = '\0';
            st = DLT_ERR(DLT_ERR_IO, "%s:%d: token '%s' appears twice", path, lineno, line);
        } else {
            st = dlt_vocab_add(v, line, len);
        }
    }
    fclose(f);
    for (int i = 0; st == DLT_OK && i < DLT_TOK_N_SPECIAL; i++)
        if (i >= v->n || strcmp(v->tok[i], SPECIALS[i]))
            st = DLT_ERR(DLT_ERR_IO, "%s: id %d must be %s", path, i, SPECIALS[i]);
    if (st != DLT_OK) {
        dlt_vocab_free(v);
        return st;
    }
    *out = v;
    return DLT_OK;
}

/* ------------------------------------------------------ encode / decode */

typedef struct {
    dlt_vocab_t v;
    int32_t *ids;
    int max, n;
} enc_ctx;

static void emit(enc_ctx *c, int id)
{
    if (c->n < c->max) c->ids[c->n] = id;
    c->n++;
}

/* BERT's greedy longest-match-first split; the whole word is [UNK] if some
 * remainder has no known piece. */
static void encode_pieces(enc_ctx *c, const char *w, int len)
{
    int32_t part[MAX_WORD];
    int np = 0;
    char buf[MAX_WORD + 3] = "##";
    for (int start = 0; start < len;) {
        int found = -1, end = len;
        for (; end > start; end--) {
            const char *key = w + start;
            size_t klen = (size_t)(end - start);
            if (start > 0) {
                memcpy(buf + 2, w + start, klen);
                key = buf;
                klen += 2;
            }
            found = dlt_strmap_get(&c->v->map, key, klen);
            if (found >= DLT_TOK_N_SPECIAL) break;
            found = -1;
        }
        if (found < 0) {
            emit(c, DLT_TOK_UNK);
            return;
        }
        part[np++] = found;
        start = end;
    }
    for (int i = 0; i < np; i++) emit(c, part[i]);
}

static void encode_word(const char *w, int len, void *ctx)
{
    enc_ctx *c = ctx;
    if (len == 6 && !strcmp(w, "[MASK]")) {
        emit(c, DLT_TOK_MASK);
        return;
    }
    if (c->v->kind == DLT_VOCAB_WORDPIECE) {
        encode_pieces(c, w, len);
        return;
    }
    int id = dlt_strmap_get(&c->v->map, w, (size_t)len);
    emit(c, id >= DLT_TOK_N_SPECIAL ? id : DLT_TOK_UNK);
}

int dlt_vocab_encode(dlt_vocab_t v, const char *text, int32_t *ids, int max)
{
    enc_ctx c = { v, ids, max, 0 };
    dlt_text_words(text, encode_word, &c);
    return c.n;
}

size_t dlt_vocab_decode(dlt_vocab_t v, const int32_t *ids, int n, char *buf, size_t len)
{
    size_t out = 0;
    int first = 1;
    for (int i = 0; i < n; i++) {
        if (ids[i] == DLT_TOK_PAD) continue;
        const char *t = dlt_vocab_token(v, ids[i]);
        if (!t) t = "[UNK]";
        int glue = v->kind == DLT_VOCAB_WORDPIECE && !strncmp(t, "##", 2) && t[2];
        if (glue) t += 2;
        else if (!first) {
            if (out + 1 < len) buf[out] = ' ';
            out++;
        }
        for (const char *p = t; *p; p++, out++)
            if (out + 1 < len) buf[out] = *p;
        first = 0;
    }
    if (len > 0) buf[out < len ? out : len - 1] = '\0';
    return out;
}
