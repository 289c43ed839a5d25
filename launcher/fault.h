/* Fault injection for the failure tests: DLTRAIN_FAULT=rank:R,step:S,KIND.
 *
 * KIND is what rank R does when it reaches training step S (0-based, before
 * that step's forward pass): kill (SIGKILL itself, like an OOM kill), crash
 * (SIGSEGV), hang (sleep forever without touching MPI, like a deadlocked
 * kernel), error (fail with an ordinary error, like bad data), or nan (a
 * NaN in the first input value of that step's batch, like a corrupt sample
 * on one rank: its loss and gradients turn non-finite). Unset or
 * empty means no fault. Parsing is strict, so a typo in a test is an error
 * rather than a test that silently injects nothing.
 *
 * `dltrain doctor` honours it too, with its checkpoints as the steps: 0
 * before its first collective, 1 before the bandwidth test, 2 before the
 * verdict (launcher/doctor.c). */
#ifndef DLT_FAULT_H
#define DLT_FAULT_H

#include <stdint.h>

#include "core/status.h"

typedef enum {
    DLT_FAULT_NONE = 0,
    DLT_FAULT_KILL,
    DLT_FAULT_CRASH,
    DLT_FAULT_HANG,
    DLT_FAULT_ERROR,
    DLT_FAULT_NAN
} dlt_fault_kind;

typedef struct {
    dlt_fault_kind kind;
    int rank;
    int64_t step;
} dlt_fault;

/* Parses "rank:R,step:S,KIND" (the three parts in any order). NULL or ""
 * gives kind DLT_FAULT_NONE. Returns DLT_ERR_CONFIG naming the bad part. */
dlt_status dlt_fault_parse(const char *spec, dlt_fault *out);

/* dlt_fault_parse of the environment variable DLTRAIN_FAULT. */
dlt_status dlt_fault_from_env(dlt_fault *out);

/* Acts out f if this is its rank and step: kill, crash and hang never
 * return; error returns DLT_ERR_INVALID "injected fault ...". Otherwise
 * (nan included: the caller acts that out, see dlt_fault_nan) DLT_OK. */
dlt_status dlt_fault_maybe(const dlt_fault *f, int rank, int64_t step);

/* 1 if f is a nan fault for this rank and step: the trainer then puts a
 * NaN into the batch's input. */
int dlt_fault_nan(const dlt_fault *f, int rank, int64_t step);

#endif
