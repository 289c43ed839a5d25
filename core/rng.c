/* Gaussian sampling for dlt_rng; the rest is inline in rng.h. */
#include "core/rng.h"

#include <math.h>

double dlt_rng_normal(dlt_rng *r)
{
    double u1 = dlt_rng_uniform(r), u2 = dlt_rng_uniform(r);
    if (u1 < 1e-300) u1 = 1e-300;
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}
