/* Internals shared by the text files of data/: a string -> int hash map and
 * the vocabulary and word-count structs. Not a public interface. */
#ifndef DLT_TEXT_INTERNAL_H
#define DLT_TEXT_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "data/text.h"

/* Open addressing, linear probing; keys are borrowed (owned by the caller's
 * arrays), values are ints >= 0. cap is a power of two. */
typedef struct {
    const char **keys;   /* (cap) NULL: empty slot */
    int *vals;           /* (cap) */
    size_t cap, n;
} dlt_strmap;

dlt_status dlt_strmap_init(dlt_strmap *m, size_t expect);
void dlt_strmap_free(dlt_strmap *m);
/* Value of key[0..len), or -1. */
int dlt_strmap_get(const dlt_strmap *m, const char *key, size_t len);
/* Inserts key (NUL-terminated, must outlive the map) -> val; key must be new. */
dlt_status dlt_strmap_put(dlt_strmap *m, const char *key, int val);

struct dlt_vocab {
    dlt_vocab_kind kind;
    char **tok;          /* (n) owned strings */
    int n, cap;
    dlt_strmap map;
};

struct dlt_wordcount {
    dlt_strmap map;
    char **words;        /* (n) owned */
    int64_t *counts;     /* (n) */
    int n, cap;
};

/* Empty vocabulary of the given kind holding the five special tokens. */
dlt_status dlt_vocab_new(dlt_vocab_kind kind, dlt_vocab_t *out);
/* Appends a token (copied); a token already present is not added again. */
dlt_status dlt_vocab_add(dlt_vocab_t v, const char *tok, size_t len);

#endif
