/* Fault injection (see fault.h).
 *
 * The faults are real ones, not simulations of their symptoms: kill and
 * crash deliver the signal to this process, so the launcher (mpirun, srun)
 * sees the same death it would see in production; hang blocks in pause()
 * outside every MPI call, so the peers' only clue is that their collective
 * never completes. */
#include "launcher/fault.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Parses a decimal integer that must fill [s, end). */
static int parse_int(const char *s, const char *end, long long *out)
{
    if (s == end) return 0;
    char buf[32];
    size_t n = (size_t)(end - s);
    if (n >= sizeof buf) return 0;
    memcpy(buf, s, n);
    buf[n] = '\0';
    char *e;
    errno = 0;
    long long v = strtoll(buf, &e, 10);
    if (errno || *e || v < 0) return 0;
    *out = v;
    return 1;
}

/* Contract: see fault.h. */
dlt_status dlt_fault_parse(const char *spec, dlt_fault *out)
{
    *out = (dlt_fault){ .kind = DLT_FAULT_NONE, .rank = -1, .step = -1 };
    if (!spec || !spec[0]) return DLT_OK;
    static const char *const kinds[] = { "", "kill", "crash", "hang", "error", "nan" };
    dlt_fault f = { .kind = DLT_FAULT_NONE, .rank = -1, .step = -1 };
    const char *p = spec;
    while (*p) {
        const char *end = strchr(p, ',');
        if (!end) end = p + strlen(p);
        size_t n = (size_t)(end - p);
        long long v;
        if (n > 5 && !strncmp(p, "rank:", 5)) {
            if (!parse_int(p + 5, end, &v) || v > 1 << 30)
                return DLT_ERR(DLT_ERR_CONFIG, "DLTRAIN_FAULT='%s': bad rank in '%.*s'", spec, (int)n, p);
            f.rank = (int)v;
        } else if (n > 5 && !strncmp(p, "step:", 5)) {
            if (!parse_int(p + 5, end, &v))
                return DLT_ERR(DLT_ERR_CONFIG, "DLTRAIN_FAULT='%s': bad step in '%.*s'", spec, (int)n, p);
            f.step = v;
        } else {
            int k = 1;
            while (k < (int)(sizeof kinds / sizeof kinds[0]) && (strlen(kinds[k]) != n || strncmp(p, kinds[k], n)))
                k++;
            if (k == (int)(sizeof kinds / sizeof kinds[0]))
                return DLT_ERR(DLT_ERR_CONFIG,
                               "DLTRAIN_FAULT='%s': unknown part '%.*s' (want rank:R,step:S,kill|crash|hang|error|nan)",
                               spec, (int)n, p);
            f.kind = (dlt_fault_kind)k;
        }
        p = *end ? end + 1 : end;
    }
    if (f.kind == DLT_FAULT_NONE || f.rank < 0 || f.step < 0)
        return DLT_ERR(DLT_ERR_CONFIG, "DLTRAIN_FAULT='%s': needs rank:R, step:S and one of kill|crash|hang|error|nan",
                       spec);
    *out = f;
    return DLT_OK;
}

/* Contract: see fault.h. */
dlt_status dlt_fault_from_env(dlt_fault *out) { return dlt_fault_parse(getenv("DLTRAIN_FAULT"), out); }

/* Contract: see fault.h. */
dlt_status dlt_fault_maybe(const dlt_fault *f, int rank, int64_t step)
{
    if (f->kind == DLT_FAULT_NONE || f->rank != rank || f->step != step) return DLT_OK;
    switch (f->kind) {
    case DLT_FAULT_KILL: raise(SIGKILL); break;
    case DLT_FAULT_CRASH:
        signal(SIGSEGV, SIG_DFL);
        raise(SIGSEGV);
        break;
    case DLT_FAULT_HANG:
        for (;;) pause();
    case DLT_FAULT_ERROR:
        return DLT_ERR(DLT_ERR_INVALID, "injected fault (DLTRAIN_FAULT): error at step %lld", (long long)step);
    case DLT_FAULT_NAN:
    case DLT_FAULT_NONE: break;
    }
    return DLT_OK;
}

/* Contract: see fault.h. */
int dlt_fault_nan(const dlt_fault *f, int rank, int64_t step)
{
    return f->kind == DLT_FAULT_NAN && f->rank == rank && f->step == step;
}
