/* The epoch permutation behind the distributed sampler.
 *
 * One permutation of all samples per epoch, a pure function of (seed, epoch):
 * every rank computes the same one independently, so no communication is
 * needed and the global order does not depend on the number of ranks; a
 * resumed run recomputes exactly the permutation it was in. Fisher-Yates
 * driven by the splitmix64 generator of core/rng.h, whose seed is the run's
 * seed combined with a constant naming the purpose (so the shuffle stream
 * never coincides with, say, the initialisation stream of the same seed) and
 * then with the epoch.
 *
 * The locality variant shuffles the order of blocks of contiguous samples
 * and the samples inside each block, from one stream per (seed, epoch): a
 * rank's consecutive rows then come from one block (one HDF5 chunk or a few),
 * which is what makes streaming from disk cheap, while every sample is still
 * used exactly once per epoch. */
#include "data/data.h"

#include "core/rng.h"

/* "SHUFFLE" in ASCII: the purpose key of the shuffling stream. */
#define DLT_SHUFFLE_KEY 0x53485546464c45ULL
/* "BLOCKS": the purpose key of the locality shuffle. */
#define DLT_BLOCK_KEY 0x424c4f434b53ULL

static void shuffle(dlt_rng *r, int64_t *a, int64_t n)
{
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)dlt_rng_below(r, (uint64_t)i + 1);
        int64_t t = a[i];
        a[i] = a[j];
        a[j] = t;
    }
}

/* Contract (data.h): fills perm[0..n) with a permutation of [0, n) that
 * depends only on (seed, epoch); n <= 0 writes nothing. */
void dlt_sampler_permutation(uint64_t seed, int64_t epoch, int64_t n, int64_t *perm)
{
    for (int64_t i = 0; i < n; i++) perm[i] = i;
    uint64_t key = dlt_hash_combine(dlt_hash_combine(seed, DLT_SHUFFLE_KEY), (uint64_t)epoch);
    dlt_rng r = dlt_rng_make(key);
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)dlt_rng_below(&r, (uint64_t)i + 1);
        int64_t t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
}

/* Contract (data.h): a permutation of [0, n) from (seed, epoch) in which the
 * positions of each block of `block` (>= 2) contiguous samples are
 * consecutive. Uses perm itself as scratch: first the block order, then each
 * block expanded (from the end, so nothing unread is overwritten). */
void dlt_sampler_block_permutation(uint64_t seed, int64_t epoch, int64_t n, int64_t block,
                                   int64_t *perm)
{
    if (block <= 1 || n <= 0) {
        dlt_sampler_permutation(seed, epoch, n, perm);
        return;
    }
    int64_t nb = (n + block - 1) / block;
    uint64_t key = dlt_hash_combine(dlt_hash_combine(seed, DLT_BLOCK_KEY), (uint64_t)epoch);
    dlt_rng r = dlt_rng_make(key);
    for (int64_t b = 0; b < nb; b++) perm[b] = b;
    shuffle(&r, perm, nb);
    /* Block i of the order goes to positions [pos_i, pos_i + len_i); pos is
     * the sum of earlier lengths, only the (single) last block is short. */
    int64_t last = n - (nb - 1) * block;   /* length of block nb-1 */
    int64_t pos = n;
    for (int64_t i = nb - 1; i >= 0; i--) {
        int64_t b = perm[i];
        int64_t len = b == nb - 1 ? last : block;
        pos -= len;
        /* pos >= i always (each earlier block holds >= 1 position), so
         * perm[0..i] (unread block ids) stays intact except perm[i] itself,
         * already read into b. */
        for (int64_t k = len - 1; k >= 0; k--) perm[pos + k] = b * block + k;
    }
    /* shuffle inside each block: block boundaries are where ids jump */
    for (int64_t p0 = 0; p0 < n;) {
        int64_t len = perm[p0] / block == nb - 1 ? last : block;
        shuffle(&r, perm + p0, len);
        p0 += len;
    }
}
