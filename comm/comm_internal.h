/* comm/ internals: the MPI communicator behind a dlt_comm_t, for the files
 * of comm/ that issue their own MPI calls (buckets, start-up checks). Not for
 * use outside comm/: everything else goes through comm.h. */
#ifndef DLT_COMM_INTERNAL_H
#define DLT_COMM_INTERNAL_H

#include <mpi.h>

#include "comm/comm.h"
#include "core/status.h"

/* The private duplicate of MPI_COMM_WORLD (errors return) that c works on. */
MPI_Comm dlt_comm_mpi(dlt_comm_t c);

/* Records MPI error code err of `call` as DLT_ERR_COMM and returns it. */
dlt_status dlt_comm_mpi_error(int err, const char *call, const char *file, int line);

/* Evaluates an MPI call; on failure returns DLT_ERR_COMM naming the call. */
#define DLT_MPI_CHECK(call)                                                           \
    do {                                                                              \
        int dlt_mpi_rc_ = (call);                                                     \
        if (dlt_mpi_rc_ != MPI_SUCCESS)                                               \
            return dlt_comm_mpi_error(dlt_mpi_rc_, #call, __FILE__, __LINE__);        \
    } while (0)

#endif
