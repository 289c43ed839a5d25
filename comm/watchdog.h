/* The watchdog: a thread that ends this process if a bounded section (an
 * abort, MPI_Finalize) overruns its deadline.
 *
 * The collectives themselves need no thread: their waits poll with their own
 * deadline (comm/guard.h). What a polling loop cannot bound is a call that
 * never returns: MPI_Abort whose runtime is gone, MPI_Finalize waiting for a
 * dead peer. Before such a call the caller arms the watchdog; if the call is
 * still running at the deadline, the thread writes one line to stderr and
 * _exit()s with DLT_EXIT_WATCHDOG, so the process ends with a code that says
 * "the abort itself hung" rather than never ending. The thread makes no MPI
 * calls, so MPI_THREAD_FUNNELED is enough. */
#ifndef DLT_WATCHDOG_H
#define DLT_WATCHDOG_H

#include "core/status.h"

typedef struct dlt_watchdog dlt_watchdog;

/* Starts the thread (idle until armed). Returns DLT_ERR_NOMEM or
 * DLT_ERR_INVALID when the thread cannot be created. */
dlt_status dlt_watchdog_start(dlt_watchdog **out);

/* Stops and joins the thread; NULL is a no-op. A pending deadline is
 * dropped. */
void dlt_watchdog_stop(dlt_watchdog *w);

/* Arms (or re-arms) the deadline `seconds` from now; `what` (a string that
 * outlives the section) names the section in the last words printed. */
void dlt_watchdog_arm(dlt_watchdog *w, double seconds, const char *what);

/* Clears the deadline. */
void dlt_watchdog_disarm(dlt_watchdog *w);

#endif
