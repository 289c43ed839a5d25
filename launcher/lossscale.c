/* Dynamic loss scaling (see lossscale.h). The overflow test is one sum of
 * squares over the gradient arena, which also catches NaN; it runs on the
 * scaled gradients, before unscaling, so an Inf is never multiplied into a
 * NaN first. Halving is floored at 1 so that a model producing NaN
 * regardless of scale ends in numerics.c's policy instead of a scale of 0. */
#include <math.h>
#include <string.h>

#include "launcher/lossscale.h"

#define LS_INIT 65536.0f
#define LS_INTERVAL 2000

/* Contract: lossscale.h. */
void dlt_lossscale_init(dlt_lossscale *ls, const char *precision, const dlt_backend *be)
{
    memset(ls, 0, sizeof *ls);
    ls->on = precision && !strcmp(precision, "fp16") && be && strcmp(be->name, "cpu") != 0;
    ls->scale = ls->on ? LS_INIT : 1.0f;
    ls->interval = LS_INTERVAL;
}

/* Contract: lossscale.h. */
float dlt_lossscale_factor(const dlt_lossscale *ls) { return ls->on ? ls->scale : 1.0f; }

/* Contract: lossscale.h. */
dlt_status dlt_lossscale_unscale(dlt_lossscale *ls, dlt_backend *be, float *g, size_t n,
                                 int *overflow)
{
    *overflow = 0;
    if (!ls->on) return DLT_OK;
    double ss = 0.0;
    DLT_CHECK(be->sumsq(be, n, g, &ss));
    return dlt_lossscale_unscale_ss(ls, be, g, n, ss, overflow);
}

/* Contract: lossscale.h. */
dlt_status dlt_lossscale_unscale_ss(dlt_lossscale *ls, dlt_backend *be, float *g, size_t n, double ss,
                                    int *overflow)
{
    *overflow = 0;
    if (!ls->on) return DLT_OK;
    if (!isfinite(ss)) {
        *overflow = 1;
        ls->overflows++;
        ls->good = 0;
        if (ls->scale > 1.0f) ls->scale *= 0.5f;
        return DLT_OK;
    }
    DLT_CHECK(be->scale(be, n, 1.0f / ls->scale, g));
    if (++ls->good >= ls->interval) {
        ls->good = 0;
        if (ls->scale < 16777216.0f) ls->scale *= 2.0f;
    }
    return DLT_OK;
}
