/* The process group on MPI (see comm.h).
 *
 * dlt_comm_init() initialises MPI only when nobody has yet (a test's main or
 * an embedding program may have done it), and then works on a private
 * duplicate of MPI_COMM_WORLD: our collectives can never be matched by
 * someone else's on the world communicator, and the duplicate carries
 * MPI_ERRORS_RETURN so that an MPI failure becomes a DLT_ERR_COMM status with
 * MPI's own explanation instead of MPI aborting the job behind our back.
 *
 * MPI counts are ints, so sums and broadcasts of more than INT_MAX elements
 * are split into chunks; every rank splits identically, so the chunks match.
 *
 * Every collective is started nonblocking and finished by dlt_comm_wait()
 * (guard.c): a polling loop with a deadline that also listens for other
 * ranks' failure notices, so no collective can wait forever.
 *
 * The first collectives (the duplicate, the node split, the guard's own
 * duplicate) are the first traffic between ranks. Where nodes cannot reach
 * each other (a firewall between them, MPI on the wrong interface) they
 * never return, and no deadline wait exists yet: a watchdog bounds them
 * (DLT_COMM_START_TIMEOUT seconds, default 60; the config, with
 * comm.timeout_s, is read only later), so such a job ends instead of hanging.
 *
 * dlt_comm_agree() is the failure-propagation primitive: one MIN-allreduce of
 * "my rank if I failed, else size" tells every rank the lowest failing rank;
 * that rank then broadcasts its status and message, and every rank records
 * "rank R: <message>" so that all of them exit with the same explanation. */
#include "comm/comm.h"

#include <limits.h>
#include <mpi.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "comm/comm_internal.h"
#include "comm/guard.h"
#include "comm/watchdog.h"
#include "core/status.h"

/* Largest number of elements (or bytes) handed to one MPI call. */
#define COMM_CHUNK ((size_t)INT_MAX)

/* Size of the message broadcast by dlt_comm_agree (status.c keeps 1024). */
#define AGREE_MSG_LEN 1024

struct dlt_comm {
    MPI_Comm comm;          /* private duplicate of MPI_COMM_WORLD, errors return */
    int rank, size;
    int local_rank;         /* rank among the processes sharing this node's memory */
    int local_size;         /* number of those processes */
    int owns_mpi;           /* 1 if dlt_comm_init called MPI_Init_thread */
    char host[MPI_MAX_PROCESSOR_NAME + 1];
    char start_what[176];   /* what the start-up watchdog names (it keeps the pointer) */
    dlt_guard *guard;       /* deadlines, failure notices, watchdog (guard.c) */
};

/* Records MPI error code `err` of `call` as DLT_ERR_COMM. */
static dlt_status mpi_error(int err, const char *call, const char *file, int line)
{
    char msg[MPI_MAX_ERROR_STRING + 1];
    int len = 0;
    if (MPI_Error_string(err, msg, &len) != MPI_SUCCESS) len = 0;
    msg[len] = '\0';
    return dlt_error(DLT_ERR_COMM, file, line, "%s failed: %s (MPI error %d, %s:%d)", call,
                     len ? msg : "unknown error", err, file, line);
}

/* Contract: see comm_internal.h. */
dlt_status dlt_comm_mpi_error(int err, const char *call, const char *file, int line)
{
    return mpi_error(err, call, file, line);
}

/* Contract: see comm_internal.h. */
MPI_Comm dlt_comm_mpi(dlt_comm_t c) { return c->comm; }

/* The failure guard of c (guard.c implements the dlt_comm_* guard API). */
dlt_guard *dlt_comm_guard(dlt_comm_t c) { return c->guard; }

/* Evaluates an MPI call; on failure returns DLT_ERR_COMM naming the call. */
#define MPI_CHECK(call)                                                        \
    do {                                                                       \
        int mpi_rc_ = (call);                                                  \
        if (mpi_rc_ != MPI_SUCCESS) return mpi_error(mpi_rc_, #call, __FILE__, __LINE__); \
    } while (0)

/* Same, but jumps to `label` with st set, for paths that must clean up. */
#define MPI_CHECK_GOTO(call, st, label)                                        \
    do {                                                                       \
        int mpi_rc_ = (call);                                                  \
        if (mpi_rc_ != MPI_SUCCESS) {                                          \
            (st) = mpi_error(mpi_rc_, #call, __FILE__, __LINE__);              \
            goto label;                                                        \
        }                                                                      \
    } while (0)

/* Seconds the first collectives may take: DLT_COMM_START_TIMEOUT, else 60. */
static double start_timeout(void)
{
    const char *v = getenv("DLT_COMM_START_TIMEOUT");
    char *end = NULL;
    double s = v && v[0] ? strtod(v, &end) : 0;
    return end && !*end && s > 0 ? s : 60.0;
}

/* Contract: starts MPI unless it is already running, asking for
 * MPI_THREAD_MULTIPLE (the gradient buckets' communication thread,
 * comm/bucket.c, uses it when provided) and requiring MPI_THREAD_FUNNELED,
 * duplicates the world communicator with MPI_ERRORS_RETURN, and fills rank,
 * size, node-local rank and host name. argc/argv may be NULL. A program
 * started without mpirun is a world of one. If the first collectives do not
 * finish within DLT_COMM_START_TIMEOUT seconds (default 60) the process
 * _exits with DLT_EXIT_WATCHDOG, saying so on stderr. Returns
 * DLT_ERR_INVALID (out == NULL or MPI already finalised), DLT_ERR_NOMEM or
 * DLT_ERR_COMM. */
dlt_status dlt_comm_init(int *argc, char ***argv, dlt_comm_t *out)
{
    if (!out) return DLT_ERR(DLT_ERR_INVALID, "dlt_comm_init: NULL output pointer");
    *out = NULL;
    int inited = 0, finalized = 0;
    MPI_Initialized(&inited);
    MPI_Finalized(&finalized);
    if (finalized)
        return DLT_ERR(DLT_ERR_INVALID, "dlt_comm_init: MPI has already been finalised");

    struct dlt_comm *c = calloc(1, sizeof *c);
    if (!c) return DLT_ERR(DLT_ERR_NOMEM, "dlt_comm_init: out of memory");
    c->comm = MPI_COMM_NULL;
    dlt_watchdog *dog = NULL; /* bounds the first collectives */

    dlt_status st = DLT_OK;
    if (!inited) {
        int provided = 0;
        /* MPI_Init_thread reports errors through the (fatal) default handler;
         * a failure here usually aborts inside MPI with its own message. */
        MPI_CHECK_GOTO(MPI_Init_thread(argc, argv, MPI_THREAD_MULTIPLE, &provided), st, fail);
        c->owns_mpi = 1;
        if (provided < MPI_THREAD_FUNNELED) {
            st = DLT_ERR(DLT_ERR_COMM,
                         "MPI provides thread level %d, dltrain needs MPI_THREAD_FUNNELED",
                         provided);
            goto fail;
        }
    }

    int hlen = 0, world = 1;
    MPI_CHECK_GOTO(MPI_Get_processor_name(c->host, &hlen), st, fail);
    c->host[hlen < 0 ? 0 : hlen] = '\0';
    MPI_CHECK_GOTO(MPI_Comm_size(MPI_COMM_WORLD, &world), st, fail);
    if (world > 1) {
        snprintf(c->start_what, sizeof c->start_what,
                 "MPI start-up on %.40s (the first collectives between ranks: can every node reach "
                 "every other? a firewall? btl_tcp_if_include?)",
                 c->host);
        DLT_CHECK_GOTO(dlt_watchdog_start(&dog), st, fail);
        dlt_watchdog_arm(dog, start_timeout(), c->start_what);
    }
    MPI_CHECK_GOTO(MPI_Comm_dup(MPI_COMM_WORLD, &c->comm), st, fail);
    MPI_CHECK_GOTO(MPI_Comm_set_errhandler(c->comm, MPI_ERRORS_RETURN), st, fail);
    MPI_CHECK_GOTO(MPI_Comm_rank(c->comm, &c->rank), st, fail);
    MPI_CHECK_GOTO(MPI_Comm_size(c->comm, &c->size), st, fail);

    MPI_Comm node = MPI_COMM_NULL;
    MPI_CHECK_GOTO(MPI_Comm_split_type(c->comm, MPI_COMM_TYPE_SHARED, c->rank, MPI_INFO_NULL,
                                       &node),
                   st, fail);
    int lr_rc = MPI_Comm_rank(node, &c->local_rank);
    if (lr_rc == MPI_SUCCESS) lr_rc = MPI_Comm_size(node, &c->local_size);
    MPI_Comm_free(&node);
    MPI_CHECK_GOTO(lr_rc, st, fail);

    DLT_CHECK_GOTO(dlt_guard_init(c->comm, &c->guard), st, fail);
    dlt_watchdog_stop(dog);

    *out = c;
    return DLT_OK;

fail:
    dlt_watchdog_stop(dog);
    if (c->comm != MPI_COMM_NULL) MPI_Comm_free(&c->comm);
    if (c->owns_mpi) MPI_Finalize();
    free(c);
    return st;
}

/* Contract: releases c (NULL is a no-op) and finalises MPI if
 * dlt_comm_init started it. Collective: every rank must call it. */
void dlt_comm_free(dlt_comm_t c)
{
    if (!c) return;
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (!finalized) {
        /* a peer that failed after this rank finished can leave MPI_Finalize
         * waiting for it forever: the watchdog bounds it */
        dlt_guard_close(c->guard);
        if (c->guard) dlt_guard_arm(c->guard, dlt_guard_timeout(c->guard) + 10.0, "MPI_Finalize");
        if (c->comm != MPI_COMM_NULL) MPI_Comm_free(&c->comm);
        if (c->owns_mpi) MPI_Finalize();
    }
    dlt_guard_free(c->guard);
    free(c);
}

/* Rank of this process in the job, 0-based. */
int dlt_comm_rank(dlt_comm_t c) { return c->rank; }
/* Number of processes in the job. */
int dlt_comm_size(dlt_comm_t c) { return c->size; }
/* Rank among the processes on this node (used to pick the GPU). */
int dlt_comm_local_rank(dlt_comm_t c) { return c->local_rank; }
int dlt_comm_local_size(dlt_comm_t c) { return c->local_size; }
/* This node's name as MPI reports it. */
const char *dlt_comm_host(dlt_comm_t c) { return c->host; }

/* Sums n elements of MPI type t (size esize bytes) in place, in chunks that
 * fit an int count. */
static dlt_status allreduce_sum(dlt_comm_t c, void *buf, size_t n, MPI_Datatype t, size_t esize)
{
    if (n > 0 && !buf) return DLT_ERR(DLT_ERR_INVALID, "allreduce: NULL buffer");
    char *p = buf;
    for (size_t done = 0; done < n;) {
        size_t len = n - done < COMM_CHUNK ? n - done : COMM_CHUNK;
        MPI_Request req;
        MPI_CHECK(MPI_Iallreduce(MPI_IN_PLACE, p + done * esize, (int)len, t, MPI_SUM, c->comm, &req));
        DLT_CHECK(dlt_comm_wait(c, &req, "allreduce"));
        done += len;
    }
    return DLT_OK;
}

/* Contract: buf (n) is replaced on every rank by the elementwise sum over
 * all ranks. Collective. Returns DLT_ERR_INVALID or DLT_ERR_COMM. */
dlt_status dlt_comm_allreduce_f32(dlt_comm_t c, float *buf, size_t n)
{
    return allreduce_sum(c, buf, n, MPI_FLOAT, sizeof(float));
}

/* Contract: as dlt_comm_allreduce_f32 for doubles. */
dlt_status dlt_comm_allreduce_f64(dlt_comm_t c, double *buf, size_t n)
{
    return allreduce_sum(c, buf, n, MPI_DOUBLE, sizeof(double));
}

/* Contract: copies `bytes` bytes of buf on rank root into buf on every rank.
 * Collective; every rank passes the same bytes and root. An invalid root is
 * reported by MPI as DLT_ERR_COMM. */
dlt_status dlt_comm_bcast(dlt_comm_t c, void *buf, size_t bytes, int root)
{
    if (bytes > 0 && !buf) return DLT_ERR(DLT_ERR_INVALID, "bcast: NULL buffer");
    char *p = buf;
    size_t done = 0;
    do { /* at least one call, so a bad root is reported even for 0 bytes */
        size_t len = bytes - done < COMM_CHUNK ? bytes - done : COMM_CHUNK;
        MPI_Request req;
        MPI_CHECK(MPI_Ibcast(p ? p + done : NULL, (int)len, MPI_BYTE, root, c->comm, &req));
        DLT_CHECK(dlt_comm_wait(c, &req, "broadcast"));
        done += len;
    } while (done < bytes);
    return DLT_OK;
}

/* Contract: returns when every rank has entered. Collective. */
dlt_status dlt_comm_barrier(dlt_comm_t c)
{
    MPI_Request req;
    MPI_CHECK(MPI_Ibarrier(c->comm, &req));
    return dlt_comm_wait(c, &req, "barrier");
}

/* Payload broadcast by the lowest failing rank. */
typedef struct {
    int status;
    char msg[AGREE_MSG_LEN];
} agree_msg;

/* 1 if msg starts with "rank <digits>: ". */
static int has_rank_prefix(const char *msg)
{
    if (strncmp(msg, "rank ", 5) != 0) return 0;
    const char *p = msg + 5;
    if (*p < '0' || *p > '9') return 0;
    while (*p >= '0' && *p <= '9') p++;
    return p[0] == ':' && p[1] == ' ';
}

/* Contract: see comm.h. Collective. The returned status is the lowest failing
 * rank's (DLT_OK when none failed) and dlt_last_error() holds
 * "rank R: <its message>" on every rank (the bare message in a world of one,
 * where the rank says nothing). If the agreement itself fails, the
 * MPI error is returned instead (DLT_ERR_COMM). */
dlt_status dlt_comm_agree(dlt_comm_t c, dlt_status mine)
{
    int me = mine != DLT_OK ? c->rank : c->size;
    int lowest = c->size;
    MPI_Request req;
    MPI_CHECK(MPI_Iallreduce(&me, &lowest, 1, MPI_INT, MPI_MIN, c->comm, &req));
    DLT_CHECK(dlt_comm_wait(c, &req, "status agreement"));
    if (lowest >= c->size) return DLT_OK;

    agree_msg m;
    memset(&m, 0, sizeof m);
    if (c->rank == lowest) {
        const char *err = dlt_last_error();
        m.status = (int)mine;
        snprintf(m.msg, sizeof m.msg, "%s", err[0] ? err : dlt_status_str(mine));
    }
    MPI_CHECK(MPI_Ibcast(&m, (int)sizeof m, MPI_BYTE, lowest, c->comm, &req));
    DLT_CHECK(dlt_comm_wait(c, &req, "status agreement"));
    m.msg[sizeof m.msg - 1] = '\0';

    /* a message that went through an agreement before already names the
     * rank it came from (which need not be `lowest` now) */
    if (has_rank_prefix(m.msg) || c->size == 1) return DLT_ERR((dlt_status)m.status, "%s", m.msg);
    return DLT_ERR((dlt_status)m.status, "rank %d: %s", lowest, m.msg);
}

/* Contract: ends every process of the job with exit code `code`. Never
 * returns. With c == NULL and MPI not running, ends this process only. */
void dlt_comm_abort(dlt_comm_t c, int code)
{
    int inited = 0, finalized = 0;
    MPI_Initialized(&inited);
    MPI_Finalized(&finalized);
    /* an abort whose runtime is gone can hang: the watchdog ends us then */
    if (c && c->guard) dlt_guard_arm(c->guard, 10.0, "MPI_Abort");
    if (inited && !finalized) MPI_Abort(c ? c->comm : MPI_COMM_WORLD, code);
    exit(code);
}
