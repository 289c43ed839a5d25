/* The process group: who am I, and collectives over all ranks.
 *
 * Built on MPI; a plain `dltrain` without mpirun is a world of one (Open MPI
 * singleton). Collectives are blocking here; the bucketed, overlapped form
 * and NCCL come with the distributed-training work. All functions return a
 * dlt_status and never exit: dlt_comm_abort() is for the launcher. */
#ifndef DLT_COMM_H
#define DLT_COMM_H

#include <stddef.h>

#include "core/status.h"

typedef struct dlt_comm *dlt_comm_t;

/* Initialises MPI (thread level FUNNELED) if not yet done and discovers rank,
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

#endif
