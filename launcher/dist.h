/* Data-parallel glue of the trainer: start-up checks, gradient buckets
 * overlapped with backward (MPI on the CPU, NCCL on a GPU), gradient
 * accumulation hooks, and the overlap trace (launcher/dist.c). */
#ifndef DLT_DIST_H
#define DLT_DIST_H

#include <stdint.h>

#include "comm/comm.h"
#include "comm/zero.h"
#include "core/backend.h"
#include "core/model.h"
#include "launcher/config.h"

typedef struct dlt_dist dlt_dist;

/* Start-up checks, collective: every rank runs the same resolved config
 * (hash of its text, run_dir excluded) and the same binary (hash of
 * /proc/self/exe); then the rank table (host, local rank, device, GPU bus
 * id) is gathered, printed by rank 0, and two ranks on one GPU are refused.
 * Every rank returns the same status. */
dlt_status dlt_dist_check_start(dlt_comm_t c, const dlt_config *cfg, dlt_backend *be);

/* Floats per gradient bucket for cfg->bucket_mb (0: one bucket). */
size_t dlt_dist_bucket_floats(const dlt_config *cfg);

/* Sets up the reduction of m's gradient arena over all ranks (buckets of
 * cfg->bucket_mb; NCCL when be is a CUDA backend) and installs m's
 * grad-ready hook. Collective. cfg->comm_trace (or env DLT_COMM_TRACE)
 * opens the trace on rank 0. zero (may be NULL; made with
 * dlt_dist_bucket_floats) selects ZeRO-1: buckets are reduce-scattered
 * along its plan and dlt_dist_gather all-gathers the parameters. */
dlt_status dlt_dist_init(dlt_comm_t c, const dlt_config *cfg, dlt_backend *be, dlt_model *m,
                         dlt_zero *zero, dlt_dist **out);

/* Call right before each micro-batch's backward; last != 0 for the last
 * micro-batch of an optimizer step, whose backward starts the buckets. */
dlt_status dlt_dist_begin(dlt_dist *d, int64_t step, int last);

/* After the last micro-batch's backward: starts what is left, waits, and
 * the gradient arena then holds the sum over all ranks. */
dlt_status dlt_dist_finish(dlt_dist *d);

/* ZeRO-1, after the optimizer updated this rank's pieces of the
 * parameters: all-gathers them, so every rank holds all parameters again.
 * Collective; a no-op without ZeRO. */
dlt_status dlt_dist_gather(dlt_dist *d);

/* Aborts d's NCCL communicator, if any, so that no collective of this
 * rank is left pending on the GPU: the launcher's failure path, before
 * the MPI abort. d stays valid for dlt_dist_free. NULL is a no-op. */
void dlt_dist_abort(dlt_dist *d);

/* Frees d; rank 0 writes run_dir/comm.json (bucket count, mean seconds
 * per step in backward, waiting for reductions after it, and with any
 * reduction in flight; whether a communication thread drove them; ZeRO:
 * whether on, and seconds per step in the parameter all-gather). NULL is
 * a no-op. */
void dlt_dist_free(dlt_dist *d, const char *run_dir);

#endif
