/* Training a WordPiece vocabulary by byte-pair merges.
 *
 * Design. Every word of count >= min_count starts as its characters (UTF-8
 * code points): the first as itself, the others as "##c", WordPiece's
 * continuation form. Then, pass after pass, adjacent symbol pairs are counted
 * over all words (weighted by word frequency) and the most frequent pairs
 * are merged into new tokens ("th" + "##e" -> "the"), until the vocabulary
 * has max_size ids or no pair occurs twice. To stay fast on corpora of
 * 10^5 distinct words, each pass merges a batch of the best pairs (up to
 * MAX_BATCH, fewer near the end) instead of one; pairs of a batch that
 * overlap in a word are applied in rank order, as sequential BPE would.
 * Ties break by symbol ids, so the result is reproducible. The vocabulary is
 * then used by WordPiece's greedy longest-match encoder (text_vocab.c);
 * every character of the training words is in it, so those words never
 * become [UNK]. */
#include "data/text_internal.h"

#include <stdlib.h>
#include <string.h>

#define MAX_BATCH 48
#define MAX_TOKEN 96

/* uint64 -> int64 open-addressing map for symbol pairs; key 0 is never used
 * because symbol ids of pairs are >= DLT_TOK_N_SPECIAL. */
typedef struct {
    uint64_t *key;
    int64_t *val;
    size_t cap;
} pairmap;

static size_t pm_slot(const pairmap *m, uint64_t k)
{
    size_t mask = m->cap - 1;
    size_t i = (size_t)((k * 0x9e3779b97f4a7c15ULL) >> 20) & mask;
    while (m->key[i] && m->key[i] != k) i = (i + 1) & mask;
    return i;
}

typedef struct {
    int32_t *sym;     /* (len) symbol ids */
    int len;
    int64_t freq;
} word;

typedef struct {
    uint64_t pair;
    int64_t count;
} cand;

/* Better first: higher count, then smaller pair key. */
static int better(const cand *a, const cand *b)
{
    return a->count != b->count ? a->count > b->count : a->pair < b->pair;
}

static int utf8_len(unsigned char c)
{
    return c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 1;
}

/* Adds tok to the vocabulary if new and returns its id (-1 on failure). */
static int token_id(dlt_vocab_t v, const char *tok, size_t len)
{
    if (dlt_vocab_add(v, tok, len) != DLT_OK) return -1;
    return dlt_strmap_get(&v->map, tok, len);
}

/* Splits every kept word into character symbols. */
static dlt_status init_words(dlt_wordcount_t wc, int min_count, dlt_vocab_t v, word *ws, int *nw)
{
    char buf[16] = "##";
    *nw = 0;
    for (int i = 0; i < wc->n; i++) {
        if (wc->counts[i] < min_count) continue;
        const char *s = wc->words[i];
        int len = (int)strlen(s);
        word *w = &ws[(*nw)++];
        w->freq = wc->counts[i];
        w->sym = malloc((size_t)len * sizeof *w->sym);
        if (!w->sym) return DLT_ERR(DLT_ERR_NOMEM, "wordpiece: out of memory");
        w->len = 0;
        for (int p = 0; p < len;) {
            int cl = utf8_len((unsigned char)s[p]);
            if (p + cl > len) cl = len - p;
            int id;
            if (p == 0) {
                id = token_id(v, s, (size_t)cl);
            } else {
                memcpy(buf + 2, s + p, (size_t)cl);
                id = token_id(v, buf, (size_t)cl + 2);
            }
            if (id < 0) return DLT_ERR(DLT_ERR_NOMEM, "wordpiece: out of memory");
            w->sym[w->len++] = id;
            p += cl;
        }
    }
    return DLT_OK;
}

/* Counts the pairs of all words into m (cleared first) and returns the best
 * k in top[] (sorted, best first); *nt gets how many have count >= 2. */
static void best_pairs(const word *ws, int nw, pairmap *m, cand *top, int k, int *nt)
{
    memset(m->key, 0, m->cap * sizeof *m->key);
    for (int i = 0; i < nw; i++)
        for (int j = 0; j + 1 < ws[i].len; j++) {
            uint64_t p = (uint64_t)ws[i].sym[j] << 32 | (uint32_t)ws[i].sym[j + 1];
            size_t s = pm_slot(m, p);
            if (!m->key[s]) {
                m->key[s] = p;
                m->val[s] = 0;
            }
            m->val[s] += ws[i].freq;
        }
    *nt = 0;
    for (size_t s = 0; s < m->cap; s++) {
        if (!m->key[s] || m->val[s] < 2) continue;
        cand c = { m->key[s], m->val[s] };
        if (*nt == k && !better(&c, &top[k - 1])) continue;
        int j = *nt < k ? (*nt)++ : k - 1;
        while (j > 0 && better(&c, &top[j - 1])) {
            top[j] = top[j - 1];
            j--;
        }
        top[j] = c;
    }
}

/* Replaces each occurrence of pair (a, b) by c in every word. */
static void apply_merge(word *ws, int nw, int32_t a, int32_t b, int32_t c)
{
    for (int i = 0; i < nw; i++) {
        word *w = &ws[i];
        int o = 0;
        for (int j = 0; j < w->len; j++) {
            if (j + 1 < w->len && w->sym[j] == a && w->sym[j + 1] == b) {
                w->sym[o++] = c;
                j++;
            } else {
                w->sym[o++] = w->sym[j];
            }
        }
        w->len = o;
    }
}

dlt_status dlt_vocab_build_wordpiece(dlt_wordcount_t wc, int min_count, int max_size, dlt_vocab_t *out)
{
    if (max_size <= DLT_TOK_N_SPECIAL)
        return DLT_ERR(DLT_ERR_INVALID, "wordpiece: vocabulary size %d leaves no room beside the special tokens",
                       max_size);
    dlt_vocab_t v;
    DLT_CHECK(dlt_vocab_new(DLT_VOCAB_WORDPIECE, &v));
    word *ws = calloc((size_t)(wc->n ? wc->n : 1), sizeof *ws);
    pairmap m = { 0 };
    size_t positions = 0;
    for (int i = 0; i < wc->n; i++) positions += strlen(wc->words[i]);
    m.cap = 1024;
    while (m.cap < 2 * positions + 2) m.cap *= 2;
    m.key = malloc(m.cap * sizeof *m.key);
    m.val = malloc(m.cap * sizeof *m.val);
    int nw = 0;
    dlt_status st = ws && m.key && m.val ? init_words(wc, min_count, v, ws, &nw)
                                         : DLT_ERR(DLT_ERR_NOMEM, "wordpiece: out of memory");
    cand top[MAX_BATCH];
    char tok[2 * MAX_TOKEN + 4];
    while (st == DLT_OK && v->n < max_size) {
        int want = (max_size - v->n) / 4;
        want = want < 1 ? 1 : want > MAX_BATCH ? MAX_BATCH : want;
        int nt;
        best_pairs(ws, nw, &m, top, want, &nt);
        if (nt == 0) break;
        for (int i = 0; i < nt && v->n < max_size && st == DLT_OK; i++) {
            int32_t a = (int32_t)(top[i].pair >> 32), b = (int32_t)(uint32_t)top[i].pair;
            const char *ta = v->tok[a], *tb = v->tok[b] + 2; /* b is always a "##" piece */
            size_t la = strlen(ta), lb = strlen(tb);
            if (la + lb > MAX_TOKEN) continue;
            memcpy(tok, ta, la);
            memcpy(tok + la, tb, lb);
            int c = token_id(v, tok, la + lb);
            if (c < 0) st = DLT_ERR(DLT_ERR_NOMEM, "wordpiece: out of memory");
            else apply_merge(ws, nw, a, b, c);
        }
    }
    for (int i = 0; i < nw; i++) free(ws[i].sym);
    free(ws);
    free(m.key);
    free(m.val);
    if (st != DLT_OK) {
        dlt_vocab_free(v);
        return st;
    }
    *out = v;
    return DLT_OK;
}
