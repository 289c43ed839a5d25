/* The process group: who am I, and collectives over all ranks.
 *
 * Built on MPI; a plain `dltrain` without mpirun is a world of one (Open MPI
 * singleton). Collectives are blocking here; the bucketed, overlapped form
 * and NCCL come with the distributed-training work. All functions return a
 * dlt_status and never exit: dlt_comm_abort() is for the launcher. */
#ifndef DLT_COMM_H
#define DLT_COMM_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

typedef struct dlt_comm *dlt_comm_t;

/* Initialises MPI (thread level MULTIPLE if provided, else at least
 * FUNNELED) if not yet done and discovers rank,
 * size and node-local rank. */
dlt_status dlt_comm_init(int *argc, char ***argv, dlt_comm_t *out);
/* Finalises MPI if dlt_comm_init started it. */
void dlt_comm_free(dlt_comm_t c);

int dlt_comm_rank(dlt_comm_t c);
int dlt_comm_size(dlt_comm_t c);
int dlt_comm_local_rank(dlt_comm_t c);
int dlt_comm_local_size(dlt_comm_t c);   /* ranks on this node */
const char *dlt_comm_host(dlt_comm_t c);

/* In-place sums over all ranks. */
dlt_status dlt_comm_allreduce_f32(dlt_comm_t c, float *buf, size_t n);
dlt_status dlt_comm_allreduce_f64(dlt_comm_t c, double *buf, size_t n);
dlt_status dlt_comm_bcast(dlt_comm_t c, void *buf, size_t bytes, int root);
dlt_status dlt_comm_barrier(dlt_comm_t c);

/* Every rank passes its own status; all get DLT_OK only if every rank was
 * ok. Otherwise the lowest failing rank's status is returned everywhere, and
 * its message is the last error on every rank, so all ranks leave together
 * with the same explanation instead of some hanging in the next collective. */
dlt_status dlt_comm_agree(dlt_comm_t c, dlt_status mine);

/* Ends every rank of the job (MPI_Abort). Only the launcher calls this. */
void dlt_comm_abort(dlt_comm_t c, int code);

/* ---- failures never hang (guard.c, watchdog.c) ---- */

/* Exit code of a process whose abort (or MPI_Finalize, or MPI start-up:
 * the first collectives of dlt_comm_init, bounded by the environment's
 * DLT_COMM_START_TIMEOUT seconds, default 60) itself hung and was ended by
 * the watchdog thread. */
#define DLT_EXIT_WATCHDOG 98

/* Seconds any one collective may wait before it fails with a timeout that
 * says where this rank is (default 60; <= 0 restores the default). */
void dlt_comm_set_timeout(dlt_comm_t c, double seconds);

/* Records where this rank is, for timeout and failure messages: the step
 * (-1 before the first) and the phase, a string that outlives the call
 * ("forward", "allreduce"). Clears the bucket. Cheap: call it freely. */
void dlt_comm_set_where(dlt_comm_t c, int64_t step, const char *phase);
/* The gradient bucket being waited for (-1: none). */
void dlt_comm_set_bucket(dlt_comm_t c, int bucket);

/* Tells every other rank that this one is failing with `msg` (they stop
 * waiting and report "rank R failed (...): msg"), then waits a short grace
 * period until every other rank has answered, which each does by failing in
 * turn. `silent` (len bytes) receives the ranks that never answered, "1, 3"
 * (the likely dead or hung ones), or "". Call it once the message is
 * printed, right before dlt_comm_abort. Never fails. */
void dlt_comm_notify_failure(dlt_comm_t c, const char *msg, char *silent, size_t len);

/* ---- start-up checks (comm_check.c) ---- */

/* Catches a job started as many one-rank worlds (srun without PMI support,
 * a binary of another MPI under mpirun): a world of one while SLURM_NTASKS or
 * OMPI_COMM_WORLD_SIZE says N > 1 is DLT_ERR_COMM "started as N singletons:
 * launch with srun --mpi=pmix or mpirun". Local, not collective. */
dlt_status dlt_comm_check_launch(dlt_comm_t c);

/* 64-bit FNV-1a hash of n bytes, continuing from h (start with
 * DLT_HASH_INIT). dlt_hash_file hashes a whole file (DLT_ERR_IO if unreadable). */
#define DLT_HASH_INIT 0xcbf29ce484222325ull
uint64_t dlt_hash_bytes(uint64_t h, const void *p, size_t n);
dlt_status dlt_hash_file(const char *path, uint64_t *out);

/* Every rank passes the hash of something all ranks must share (`what`, e.g.
 * "config"). Collective. Returns DLT_OK when all equal rank 0's, else, on
 * every rank alike, DLT_ERR_CONFIG "rank R runs a different <what> than rank
 * 0 (...)" naming the lowest differing rank. */
dlt_status dlt_comm_check_same(dlt_comm_t c, const char *what, uint64_t hash);

/* Gathers every rank's host, local rank, device description and GPU PCI bus
 * id ("" for none). Collective. On every rank *table (malloc'ed, the caller
 * frees it) receives one line per rank, "rank R: host H, local rank L,
 * device D". Two ranks on one host with the same non-empty bus id are
 * DLT_ERR_DEVICE naming both ranks (every rank returns it); *table is then
 * still filled. */
dlt_status dlt_comm_rank_table(dlt_comm_t c, const char *device, const char *bus_id,
                               char **table);

#endif
