/* Failure detection: deadline waits and failure notices (see guard.h).
 *
 * Notices travel on a private duplicate of the group's communicator, so a
 * notice can never be matched by a collective. Each rank keeps one receive
 * posted from MPI_ANY_SOURCE; every wait tests it next to the collective's
 * request, so a rank stuck waiting for a peer that has failed learns it at
 * once. A failing rank sends its notice to everyone and then waits (a short
 * grace period) until every other rank has sent one back: a peer answers by
 * failing in turn, which means it has printed its own message. Then all
 * messages are out before the first MPI_Abort kills the job; a rank that
 * never answers is dead or hung, and is named as such.
 *
 * The wait loop spins (with sched_yield) for its first 100 ms, because most
 * collectives complete in microseconds and Open MPI's nonblocking
 * collectives progress only while someone tests them; after that it sleeps
 * 200 us between tests, enough for a job waiting on a slow peer.
 *
 * "Where am I" (step, phase, bucket, collective number) is plain fields
 * written by the one thread that makes MPI calls (MPI_THREAD_FUNNELED);
 * phase strings are literals, never copied. */
#include "comm/guard.h"

#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "comm/watchdog.h"

#define NOTICE_TAG 7301
#define SPIN_S 0.1
#define SLEEP_NS 200000L

/* What a failing rank tells the others: the first failure it knows of,
 * its own or one it heard of (then `origin` is not the sender). */
typedef struct {
    int32_t origin;          /* the rank that failed first */
    int32_t bucket;
    int64_t step, seq;
    char phase[32];
    char msg[640];
} notice;

struct dlt_guard {
    MPI_Comm ctl;            /* duplicate for notices */
    int rank, size;
    double timeout;          /* seconds a wait may take */
    /* where this rank is */
    int64_t step;            /* -1: before the first step */
    const char *phase;
    int bucket;              /* -1: none */
    int64_t seq;             /* collectives waited for so far */
    /* notices */
    notice inbox;            /* the posted receive's buffer */
    MPI_Request inbox_req;
    unsigned char *heard;    /* (size) 1: that rank sent a notice */
    int n_heard;
    notice cause;            /* the first notice heard, if any */
    int have_cause;
    notice outbox;
    MPI_Request *sends;      /* (size) */
    int notified;
    dlt_watchdog *dog;
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void nap(long ns)
{
    struct timespec ts = { 0, ns };
    nanosleep(&ts, NULL);
}

/* Contract: see guard.h. */
dlt_status dlt_guard_init(MPI_Comm comm, dlt_guard **out)
{
    *out = NULL;
    dlt_guard *g = calloc(1, sizeof *g);
    if (!g) return DLT_ERR(DLT_ERR_NOMEM, "guard: out of memory");
    g->ctl = MPI_COMM_NULL;
    g->inbox_req = MPI_REQUEST_NULL;
    g->timeout = 60.0;
    g->step = -1;
    g->phase = "start";
    g->bucket = -1;
    dlt_status st = DLT_OK;
    if (MPI_Comm_rank(comm, &g->rank) != MPI_SUCCESS || MPI_Comm_size(comm, &g->size) != MPI_SUCCESS ||
        MPI_Comm_dup(comm, &g->ctl) != MPI_SUCCESS) {
        st = DLT_ERR(DLT_ERR_COMM, "guard: cannot duplicate the communicator for failure notices");
        goto fail;
    }
    MPI_Comm_set_errhandler(g->ctl, MPI_ERRORS_RETURN);
    g->heard = calloc((size_t)g->size, 1);
    g->sends = malloc((size_t)g->size * sizeof *g->sends);
    if (!g->heard || !g->sends) {
        st = DLT_ERR(DLT_ERR_NOMEM, "guard: out of memory");
        goto fail;
    }
    for (int r = 0; r < g->size; r++) g->sends[r] = MPI_REQUEST_NULL;
    if (g->size > 1 &&
        MPI_Irecv(&g->inbox, (int)sizeof g->inbox, MPI_BYTE, MPI_ANY_SOURCE, NOTICE_TAG, g->ctl, &g->inbox_req) !=
            MPI_SUCCESS) {
        st = DLT_ERR(DLT_ERR_COMM, "guard: cannot post the failure-notice receive");
        goto fail;
    }
    DLT_CHECK_GOTO(dlt_watchdog_start(&g->dog), st, fail);
    *out = g;
    return DLT_OK;

fail:
    dlt_guard_close(g);
    dlt_guard_free(g);
    return st;
}

/* Contract: see guard.h. */
void dlt_guard_close(dlt_guard *g)
{
    if (!g) return;
    if (g->inbox_req != MPI_REQUEST_NULL) {
        MPI_Cancel(&g->inbox_req);
        MPI_Wait(&g->inbox_req, MPI_STATUS_IGNORE);
    }
    for (int r = 0; g->sends && r < g->size; r++)
        if (g->sends[r] != MPI_REQUEST_NULL) MPI_Request_free(&g->sends[r]);
    if (g->ctl != MPI_COMM_NULL) MPI_Comm_free(&g->ctl);
}

/* Contract: see guard.h. */
void dlt_guard_free(dlt_guard *g)
{
    if (!g) return;
    dlt_watchdog_stop(g->dog);
    free(g->heard);
    free(g->sends);
    free(g);
}

void dlt_guard_set_timeout(dlt_guard *g, double seconds) { g->timeout = seconds > 0 ? seconds : 60.0; }
double dlt_guard_timeout(const dlt_guard *g) { return g->timeout; }

/* A quarter of the timeout, between 0.5 and 5 s: long enough for peers
 * that are waiting in a collective, short next to the timeout. */
double dlt_guard_grace(const dlt_guard *g)
{
    double s = g->timeout / 4;
    return s < 0.5 ? 0.5 : s > 5.0 ? 5.0 : s;
}

void dlt_guard_set_where(dlt_guard *g, int64_t step, const char *phase)
{
    g->step = step;
    g->phase = phase ? phase : "";
    g->bucket = -1;
}

void dlt_guard_set_bucket(dlt_guard *g, int bucket) { g->bucket = bucket; }

void dlt_guard_arm(dlt_guard *g, double seconds, const char *what)
{
    if (g) dlt_watchdog_arm(g->dog, seconds, what);
}

/* Formats "step S, phase P, bucket B, collective #N" from the fields given. */
static const char *format_where(char *buf, size_t len, int64_t step, const char *phase, int bucket, int64_t seq)
{
    int n = 0;
    buf[0] = '\0';
    if (step >= 0) n += snprintf(buf + n, len - (size_t)n, "step %lld, ", (long long)step);
    if (n < (int)len) n += snprintf(buf + n, len - (size_t)n, "phase %s, ", phase && phase[0] ? phase : "?");
    if (bucket >= 0 && n < (int)len) n += snprintf(buf + n, len - (size_t)n, "bucket %d, ", bucket);
    if (n < (int)len) snprintf(buf + n, len - (size_t)n, "collective #%lld", (long long)seq);
    return buf;
}

/* Contract: writes this rank's position into buf (len bytes) and returns it. */
const char *dlt_guard_where(const dlt_guard *g, char *buf, size_t len)
{
    return format_where(buf, len, g->step, g->phase, g->bucket, g->seq);
}

/* Tests the notice receive. When a notice arrived: copies it to *out,
 * records its sender as heard, re-posts the receive and returns 1; else 0. */
static int poll_inbox(dlt_guard *g, notice *out)
{
    if (g->inbox_req == MPI_REQUEST_NULL) return 0;
    int done = 0;
    MPI_Status s;
    if (MPI_Test(&g->inbox_req, &done, &s) != MPI_SUCCESS || !done) return 0;
    *out = g->inbox;
    out->msg[sizeof out->msg - 1] = '\0';
    out->phase[sizeof out->phase - 1] = '\0';
    int src = s.MPI_SOURCE;
    if (out->origin < 0 || out->origin >= g->size) out->origin = src;
    if (!g->have_cause) {
        g->cause = *out;
        g->have_cause = 1;
    }
    if (src >= 0 && src < g->size && !g->heard[src]) {
        g->heard[src] = 1;
        g->n_heard++;
    }
    if (MPI_Irecv(&g->inbox, (int)sizeof g->inbox, MPI_BYTE, MPI_ANY_SOURCE, NOTICE_TAG, g->ctl, &g->inbox_req) !=
        MPI_SUCCESS)
        g->inbox_req = MPI_REQUEST_NULL;
    return 1;
}

/* Skips a leading "rank N: " (the sender's own prefix; we name it anyway). */
static const char *strip_rank(const char *msg)
{
    if (strncmp(msg, "rank ", 5) != 0) return msg;
    const char *p = msg + 5;
    if (*p < '0' || *p > '9') return msg;
    while (*p >= '0' && *p <= '9') p++;
    return p[0] == ':' && p[1] == ' ' ? p + 2 : msg;
}

/* Contract: see guard.h. Returns DLT_OK when *req completed; DLT_ERR_COMM
 * when MPI reports an error, when a failure notice arrives, or at the
 * deadline. Only the last two say where this rank is; all name `what`. */
dlt_status dlt_guard_wait(dlt_guard *g, MPI_Request *req, const char *what)
{
    g->seq++;
    double t0 = now_s(), deadline = t0 + g->timeout;
    char where[160];
    for (;;) {
        int done = 0;
        int rc = MPI_Test(req, &done, MPI_STATUS_IGNORE);
        if (rc != MPI_SUCCESS) {
            char err[MPI_MAX_ERROR_STRING + 1];
            int len = 0;
            if (MPI_Error_string(rc, err, &len) != MPI_SUCCESS) len = 0;
            err[len] = '\0';
            return DLT_ERR(DLT_ERR_COMM, "%s failed: %s (MPI error %d) at %s", what, len ? err : "unknown error",
                           rc, dlt_guard_where(g, where, sizeof where));
        }
        if (done) return DLT_OK;
        notice n;
        if (poll_inbox(g, &n)) {
            char theirs[160];
            format_where(theirs, sizeof theirs, n.step, n.phase, n.bucket, n.seq);
            if (!strncmp(strip_rank(n.msg), "timeout:", 8))
                return DLT_ERR(DLT_ERR_COMM,
                               "rank %d timed out waiting for the others (at its %s); this rank stopped waiting in "
                               "%s at %s",
                               (int)n.origin, theirs, what, dlt_guard_where(g, where, sizeof where));
            return DLT_ERR(DLT_ERR_COMM, "rank %d failed (at its %s): %s; this rank stopped waiting in %s at %s",
                           (int)n.origin, theirs, strip_rank(n.msg), what, dlt_guard_where(g, where, sizeof where));
        }
        double t = now_s();
        if (t >= deadline)
            return DLT_ERR(DLT_ERR_COMM,
                           "timeout: %s did not complete within %.3g s (comm.timeout_s) at %s; another rank is "
                           "dead, hung, or slower than the timeout",
                           what, g->timeout, dlt_guard_where(g, where, sizeof where));
        if (t - t0 < SPIN_S) sched_yield();
        else nap(SLEEP_NS);
    }
}

/* Contract: sends `msg` (with this rank's position) to every other rank once
 * (or, when this rank fails because it heard of an earlier failure, that
 * failure's notice, so every rank reports the root cause),
 * then waits up to dlt_guard_grace() until every other rank has sent a
 * notice too. `silent` (len bytes) receives the ranks that did not, as
 * "1, 3" ("" when all did, or in a world of one). Never fails: a dead peer
 * is exactly what this must survive. */
void dlt_guard_notify(dlt_guard *g, const char *msg, char *silent, size_t len)
{
    if (silent && len) silent[0] = '\0';
    if (g->size == 1 || g->ctl == MPI_COMM_NULL) return;
    if (!g->notified) {
        g->notified = 1;
        memset(&g->outbox, 0, sizeof g->outbox);
        if (g->have_cause) {
            g->outbox = g->cause;
        } else {
            g->outbox.origin = g->rank;
            g->outbox.bucket = g->bucket;
            g->outbox.step = g->step;
            g->outbox.seq = g->seq;
            snprintf(g->outbox.phase, sizeof g->outbox.phase, "%s", g->phase ? g->phase : "");
            snprintf(g->outbox.msg, sizeof g->outbox.msg, "%s", msg ? msg : "");
        }
        for (int r = 0; r < g->size; r++)
            if (r != g->rank)
                MPI_Isend(&g->outbox, (int)sizeof g->outbox, MPI_BYTE, r, NOTICE_TAG, g->ctl, &g->sends[r]);
    }
    double deadline = now_s() + dlt_guard_grace(g);
    notice n;
    while (g->n_heard < g->size - 1 && now_s() < deadline) {
        if (!poll_inbox(g, &n)) nap(SLEEP_NS);
    }
    if (!silent || !len) return;
    size_t used = 0;
    for (int r = 0; r < g->size && used < len; r++) {
        if (r == g->rank || g->heard[r]) continue;
        int k = snprintf(silent + used, len - used, "%s%d", used ? ", " : "", r);
        if (k < 0) break;
        used += (size_t)k;
    }
}

/* ---- the comm.h face of the guard ---- */

/* Contract: see guard.h. */
dlt_status dlt_comm_wait(dlt_comm_t c, MPI_Request *req, const char *what)
{
    return dlt_guard_wait(dlt_comm_guard(c), req, what);
}

/* Contract: see comm.h. */
void dlt_comm_set_timeout(dlt_comm_t c, double seconds) { dlt_guard_set_timeout(dlt_comm_guard(c), seconds); }

/* Contract: see comm.h. */
void dlt_comm_set_where(dlt_comm_t c, int64_t step, const char *phase)
{
    dlt_guard_set_where(dlt_comm_guard(c), step, phase);
}

/* Contract: see comm.h. */
void dlt_comm_set_bucket(dlt_comm_t c, int bucket) { dlt_guard_set_bucket(dlt_comm_guard(c), bucket); }

/* Contract: see comm.h. */
void dlt_comm_notify_failure(dlt_comm_t c, const char *msg, char *silent, size_t len)
{
    dlt_guard_notify(dlt_comm_guard(c), msg, silent, len);
}
