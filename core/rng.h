/* Deterministic random numbers.
 *
 * Every random stream in dltrain derives from the run's seed and *what it is
 * about* (epoch, step, layer, global sample index), never from the rank or a
 * thread, so runs are reproducible and independent of the number of ranks.
 * Two forms:
 *  - counter-based: dlt_rand_u01(key, i) is a pure function, usable in
 *    parallel loops and GPU kernels (dropout masks, augmentation);
 *  - a small sequential generator (splitmix64) for initialisation and
 *    shuffling, seeded by dlt_hash_combine(seed, purpose...). */
#ifndef DLT_RNG_H
#define DLT_RNG_H

#include <stdint.h>

/* splitmix64 finaliser: a bijective 64-bit mix. */
static inline uint64_t dlt_mix64(uint64_t z)
{
    z += 0x9e3779b97f4a7c15ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static inline uint64_t dlt_hash_combine(uint64_t h, uint64_t v)
{
    return dlt_mix64(h ^ dlt_mix64(v + 0x632be59bd9b4e019ULL));
}

/* FNV-1a of a string, to key streams by names (parameter names). */
static inline uint64_t dlt_hash_str(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    while (*s) h = (h ^ (uint8_t)*s++) * 0x100000001b3ULL;
    return h;
}

/* Uniform in [0, 1) with 24 random bits, a pure function of (key, i). */
static inline float dlt_rand_u01(uint64_t key, uint64_t i)
{
    return (float)(dlt_mix64(key ^ dlt_mix64(i)) >> 40) * (1.0f / 16777216.0f);
}

typedef struct {
    uint64_t s;
} dlt_rng;

static inline dlt_rng dlt_rng_make(uint64_t seed) { return (dlt_rng){ seed }; }

static inline uint64_t dlt_rng_u64(dlt_rng *r)
{
    r->s += 0x9e3779b97f4a7c15ULL;
    return dlt_mix64(r->s);
}

/* Uniform in [0, 1) with 53 random bits. */
static inline double dlt_rng_uniform(dlt_rng *r)
{
    return (double)(dlt_rng_u64(r) >> 11) * (1.0 / 9007199254740992.0);
}

/* Uniform integer in [0, n), n > 0 (rejection-free multiply-shift; bias < 2^-32 for n < 2^32). */
static inline uint64_t dlt_rng_below(dlt_rng *r, uint64_t n)
{
    return (uint64_t)(((unsigned __int128)dlt_rng_u64(r) * n) >> 64);
}

/* Standard normal (Box-Muller). */
double dlt_rng_normal(dlt_rng *r);

#endif
