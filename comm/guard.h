/* Failure detection for the process group: waits with a deadline, the
 * "where am I" record, and failure notices between ranks.
 *
 * Internal to comm/ (it speaks MPI types); the launcher sees it through the
 * dlt_comm_* functions in comm.h. Every collective is started nonblocking
 * and finished by dlt_comm_wait(), a polling loop that ends in one of three
 * ways: the request completes (DLT_OK); another rank's failure notice
 * arrives (DLT_ERR_COMM naming that rank and its message); or no completion
 * within comm.timeout_s (DLT_ERR_COMM saying where this rank is: step,
 * phase, bucket, collective sequence number). A rank that fails calls
 * dlt_comm_notify_failure() before it aborts, so its peers learn who failed
 * and why instead of timing out. */
#ifndef DLT_GUARD_H
#define DLT_GUARD_H

#include <mpi.h>
#include <stddef.h>
#include <stdint.h>

#include "comm/comm.h"
#include "core/status.h"

typedef struct dlt_guard dlt_guard;

/* Creates the guard of communicator `comm` (duplicated for the notices, so
 * they never match a collective), posts the notice receive and starts the
 * watchdog thread. Collective over comm. Returns DLT_ERR_COMM or
 * DLT_ERR_NOMEM. */
dlt_status dlt_guard_init(MPI_Comm comm, dlt_guard **out);

/* Releases the MPI resources (the posted receive, the duplicate); must run
 * before MPI_Finalize. Collective. NULL is a no-op. */
void dlt_guard_close(dlt_guard *g);

/* Stops the watchdog and frees g; after dlt_guard_close (or without MPI
 * when it was never opened). NULL is a no-op. */
void dlt_guard_free(dlt_guard *g);

/* Waits for *req (a nonblocking collective on any communicator) with the
 * deadline and the notice check described above; `what` names the
 * collective in messages ("allreduce", "bucket 3"). Counts one collective
 * in the sequence number. */
dlt_status dlt_guard_wait(dlt_guard *g, MPI_Request *req, const char *what);

/* Arms the watchdog for a call that may never return (MPI_Abort,
 * MPI_Finalize): past `seconds` the process _exits with
 * DLT_EXIT_WATCHDOG. */
void dlt_guard_arm(dlt_guard *g, double seconds, const char *what);

/* Seconds a failing rank waits for its peers to hear its notice. */
double dlt_guard_grace(const dlt_guard *g);

/* The guard API of comm.h, on a guard instead of a dlt_comm_t. */
void dlt_guard_set_timeout(dlt_guard *g, double seconds);
double dlt_guard_timeout(const dlt_guard *g);
void dlt_guard_set_where(dlt_guard *g, int64_t step, const char *phase);
void dlt_guard_set_bucket(dlt_guard *g, int bucket);
const char *dlt_guard_where(const dlt_guard *g, char *buf, size_t len);
void dlt_guard_notify(dlt_guard *g, const char *msg, char *silent, size_t len);

/* The guard of c (comm.c). */
dlt_guard *dlt_comm_guard(dlt_comm_t c);

/* dlt_guard_wait on c's guard: the wait every collective in comm/ (the
 * blocking ones in comm.c, the gradient buckets) finishes with. */
dlt_status dlt_comm_wait(dlt_comm_t c, MPI_Request *req, const char *what);

#endif
