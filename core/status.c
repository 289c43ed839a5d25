/* Thread-local last-error message; see status.h. */
#include "core/status.h"

#include <stdarg.h>
#include <stdio.h>

static _Thread_local char last_error[1024];

const char *dlt_status_str(dlt_status st)
{
    switch (st) {
    case DLT_OK: return "ok";
    case DLT_ERR_INVALID: return "invalid argument";
    case DLT_ERR_NOMEM: return "out of memory";
    case DLT_ERR_IO: return "I/O error";
    case DLT_ERR_CONFIG: return "config error";
    case DLT_ERR_SHAPE: return "shape mismatch";
    case DLT_ERR_COMM: return "communication error";
    case DLT_ERR_DEVICE: return "device error";
    case DLT_ERR_NUMERIC: return "non-finite value";
    case DLT_ERR_UNSUPPORTED: return "unsupported";
    }
    return "unknown status";
}

dlt_status dlt_error(dlt_status st, const char *file, int line, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(last_error, sizeof last_error, fmt, ap);
    va_end(ap);
#ifdef DLT_DEBUG
    if (n >= 0 && (size_t)n < sizeof last_error)
        snprintf(last_error + n, sizeof last_error - (size_t)n, " [%s:%d]", file, line);
#else
    (void)n;
    (void)file;
    (void)line;
#endif
    return st;
}

const char *dlt_last_error(void) { return last_error; }

void dlt_clear_error(void) { last_error[0] = '\0'; }
