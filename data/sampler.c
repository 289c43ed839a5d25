/* The epoch permutation behind the distributed sampler.
 *
 * One permutation of all samples per epoch, a pure function of (seed, epoch):
 * every rank computes the same one independently, so no communication is
 * needed and the global order does not depend on the number of ranks; a
 * resumed run recomputes exactly the permutation it was in. Fisher-Yates
 * driven by the splitmix64 generator of core/rng.h, whose seed is the run's
 * seed combined with a constant naming the purpose (so the shuffle stream
 * never coincides with, say, the initialisation stream of the same seed) and
 * then with the epoch. */
#include "data/data.h"

#include "core/rng.h"

/* "SHUFFLE" in ASCII: the purpose key of the shuffling stream. */
#define DLT_SHUFFLE_KEY 0x53485546464c45ULL

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
