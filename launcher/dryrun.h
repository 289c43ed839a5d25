/* `dltrain train CONFIG --dry-run`, and the trainer's own command-line flags. */
#ifndef DLT_DRYRUN_H
#define DLT_DRYRUN_H

#include "comm/comm.h"
#include "core/model.h"
#include "data/data.h"
#include "launcher/config.h"

/* Removes the trainer's flags from argv (keeping CONFIG and key=value):
 * --dry-run sets *dry_run; "--resume X" / "--resume=X" becomes the override
 * checkpoint.resume=X. Returns the new argc. */
int dlt_train_flags(int argc, char **argv, int *dry_run);

/* Prints, on rank 0, what a run would do: the resolved config, the data
 * (each shard's samples, steps per epoch, local batch per rank, what
 * happens to the last partial batch), the model (parameters, memory per
 * buffer) and the rank-to-device map. Collective (gathers the rank table).
 * Writes nothing. */
dlt_status dlt_dry_run(const dlt_config *c, dlt_comm_t comm, dlt_backend *be, dlt_dataset_t train,
                       dlt_dataset_t test, dlt_loader_t train_ld, dlt_model *m);

#endif
