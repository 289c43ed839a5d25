/* dlt_status: how library code (core, comm, data) reports failure.
 *
 * Functions return a dlt_status; on failure the one-line, human-readable
 * cause is kept in a thread-local buffer (like errno, so threads do not race)
 * and read back with dlt_last_error(). Only the launcher decides to exit.
 * DLT_CHECK passes a failure up unchanged, so the first (most precise) message
 * survives; DLT_ERR records a new one. */
#ifndef DLT_STATUS_H
#define DLT_STATUS_H

typedef enum {
    DLT_OK = 0,
    DLT_ERR_INVALID,     /* bad argument or bad input value */
    DLT_ERR_NOMEM,
    DLT_ERR_IO,          /* file missing, unreadable, corrupt */
    DLT_ERR_CONFIG,      /* config file or override */
    DLT_ERR_SHAPE,       /* tensor shapes do not fit */
    DLT_ERR_COMM,        /* MPI / NCCL */
    DLT_ERR_DEVICE,      /* CUDA, cuBLAS, cuDNN */
    DLT_ERR_NUMERIC,     /* NaN / Inf */
    DLT_ERR_UNSUPPORTED  /* op or feature not available on this backend */
} dlt_status;

const char *dlt_status_str(dlt_status st);

/* Records a printf-style message as the last error and returns st.
 * In DEBUG builds the source file:line is appended. */
dlt_status dlt_error(dlt_status st, const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* The message of the last dlt_error() on this thread ("" if none). */
const char *dlt_last_error(void);
void dlt_clear_error(void);

#define DLT_ERR(st, ...) dlt_error((st), __FILE__, __LINE__, __VA_ARGS__)

#define DLT_CHECK(call)                                                        \
    do {                                                                       \
        dlt_status dlt_st_ = (call);                                           \
        if (dlt_st_ != DLT_OK) return dlt_st_;                                 \
    } while (0)

/* For functions that must release resources: st = call; on failure goto label. */
#define DLT_CHECK_GOTO(call, st, label)                                        \
    do {                                                                       \
        (st) = (call);                                                         \
        if ((st) != DLT_OK) goto label;                                        \
    } while (0)

#endif
