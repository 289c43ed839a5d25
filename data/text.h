/* Text: vocabularies, tokenizers and the online transforms of token models.
 *
 * Normalisation (both vocabularies): lowercase ASCII, split on white space,
 * every ASCII punctuation character is a word of its own ("it's" -> "it ' s").
 * A word-level vocabulary maps each word to an id; a WordPiece vocabulary
 * (trained here by byte-pair merges, see text_wordpiece.c) splits a word
 * into the longest known prefix and "##"-prefixed continuations.
 *
 * Ids 0..4 are the special tokens [PAD] [UNK] [CLS] [SEP] [MASK] in every
 * vocabulary. Vocabulary file: first line "#dltrain-vocab 1 word" (or
 * "wordpiece"), then one token per line, the id being the line index after
 * the header (as in BERT's vocab.txt).
 *
 * Transforms: next-token targets for language models and BERT masking are
 * pure functions of (seed, epoch, global sample index), so they are the same
 * whatever the number of ranks or loader threads. */
#ifndef DLT_TEXT_H
#define DLT_TEXT_H

#include <stdint.h>
#include <stdio.h>

#include "core/status.h"

enum {
    DLT_TOK_PAD = 0,
    DLT_TOK_UNK = 1,
    DLT_TOK_CLS = 2,
    DLT_TOK_SEP = 3,
    DLT_TOK_MASK = 4,
    DLT_TOK_N_SPECIAL = 5
};

typedef enum { DLT_VOCAB_WORD, DLT_VOCAB_WORDPIECE } dlt_vocab_kind;

typedef struct dlt_vocab *dlt_vocab_t;

/* Word counts of a corpus, fed text by text before building a vocabulary. */
typedef struct dlt_wordcount *dlt_wordcount_t;
dlt_status dlt_wordcount_init(dlt_wordcount_t *out);
/* Normalises text (any length, NUL-terminated) and counts its words. */
dlt_status dlt_wordcount_add(dlt_wordcount_t wc, const char *text);
void dlt_wordcount_free(dlt_wordcount_t wc);

/* Word vocabulary: specials, then words with count >= min_count, most
 * frequent first (ties: byte order), at most max_size ids in all. */
dlt_status dlt_vocab_build_words(dlt_wordcount_t wc, int min_count, int max_size, dlt_vocab_t *out);
/* WordPiece vocabulary of about max_size ids (specials, every character seen
 * in words of count >= min_count, its "##" form, then merges). */
dlt_status dlt_vocab_build_wordpiece(dlt_wordcount_t wc, int min_count, int max_size, dlt_vocab_t *out);

dlt_status dlt_vocab_load(const char *path, dlt_vocab_t *out);
dlt_status dlt_vocab_save(dlt_vocab_t v, const char *path);
void dlt_vocab_free(dlt_vocab_t v);

int dlt_vocab_size(dlt_vocab_t v);
dlt_vocab_kind dlt_vocab_kind_of(dlt_vocab_t v);
/* Token text of id, or NULL when out of range. */
const char *dlt_vocab_token(dlt_vocab_t v, int id);
/* Id of an exact token text, or -1. */
int dlt_vocab_find(dlt_vocab_t v, const char *token);

/* Normalises and encodes text into ids[0..max); returns how many ids the
 * whole text needs (may exceed max: only max are written). Unknown words
 * (or words WordPiece cannot split) are [UNK]. "[MASK]" in the text (any
 * case) becomes the [MASK] id, so prompts can name it. */
int dlt_vocab_encode(dlt_vocab_t v, const char *text, int32_t *ids, int max);
/* Writes the tokens of ids[0..n) as text into buf (NUL-terminated, cut at
 * len): words separated by one space, "##" pieces glued to the previous one;
 * [PAD] is skipped. Returns the length the whole text needs. */
size_t dlt_vocab_decode(dlt_vocab_t v, const int32_t *ids, int n, char *buf, size_t len);

/* Calls fn(word, len, ctx) for each normalised word of text (lowercased
 * into a scratch buffer; words longer than 200 bytes are cut). */
void dlt_text_words(const char *text, void (*fn)(const char *w, int len, void *ctx), void *ctx);

/* ---- online transforms ---- */

/* Next-token targets: labels[i] = tokens[i+1] for i < L-1, labels[L-1] =
 * next_first (the first token of the following row of a token stream, or -1
 * when there is none). Targets that are [PAD] become -1 (ignored). */
void dlt_text_lm_targets(const int32_t *tokens, int L, int32_t next_first, int32_t *labels);

/* BERT masking of one sequence (L): each non-special token is chosen with
 * probability prob; a chosen one becomes [MASK] (80%), a uniformly random
 * non-special token (10%) or stays (10%); labels = the original token where
 * chosen, -1 elsewhere. Special tokens (ids < DLT_TOK_N_SPECIAL) are never
 * chosen. Deterministic in (seed, epoch, sample). Returns the number chosen. */
int dlt_text_mask(uint64_t seed, int64_t epoch, int64_t sample, float prob, int vocab_size,
                  const int32_t *tokens, int L, int32_t *x, int32_t *labels);

#endif
