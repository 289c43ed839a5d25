/* Online transforms of token sequences: next-token targets and BERT masking.
 *
 * Masking draws from the counter RNG (core/rng.h) keyed by (seed, "mlm",
 * epoch, global sample index) and indexed by position, so a sample is masked
 * the same way on any rank, by any thread, and a resumed run masks exactly
 * as the uninterrupted one would. Three draws per position: chosen?, which
 * of the 80/10/10 replacements, which random token. */
#include <string.h>

#include "core/rng.h"
#include "data/text.h"

void dlt_text_lm_targets(const int32_t *tokens, int L, int32_t next_first, int32_t *labels)
{
    for (int i = 0; i < L; i++) {
        int32_t t = i + 1 < L ? tokens[i + 1] : next_first;
        labels[i] = t == DLT_TOK_PAD ? -1 : t;
    }
}

int dlt_text_mask(uint64_t seed, int64_t epoch, int64_t sample, float prob, int vocab_size,
                  const int32_t *tokens, int L, int32_t *x, int32_t *labels)
{
    uint64_t key = dlt_hash_combine(dlt_hash_combine(dlt_hash_combine(seed, dlt_hash_str("mlm")),
                                                     (uint64_t)epoch), (uint64_t)sample);
    int n_random = vocab_size - DLT_TOK_N_SPECIAL;
    int chosen = 0;
    for (int i = 0; i < L; i++) {
        int32_t t = tokens[i];
        x[i] = t;
        labels[i] = -1;
        if (t < DLT_TOK_N_SPECIAL || dlt_rand_u01(key, 3 * (uint64_t)i) >= prob) continue;
        chosen++;
        labels[i] = t;
        float r = dlt_rand_u01(key, 3 * (uint64_t)i + 1);
        if (r < 0.8f) {
            x[i] = DLT_TOK_MASK;
        } else if (r < 0.9f && n_random > 0) {
            float u = dlt_rand_u01(key, 3 * (uint64_t)i + 2);
            int k = (int)(u * (float)n_random);
            x[i] = DLT_TOK_N_SPECIAL + (k < n_random ? k : n_random - 1);
        }
    }
    return chosen;
}
