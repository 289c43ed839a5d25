/* Run outputs of rank 0: the metrics.jsonl stream, plain log lines, the
 * final weights and summary. One JSON object per logged training step and
 * per evaluation; non-finite numbers are written as null. */
#ifndef DLT_METRICS_H
#define DLT_METRICS_H

#include <stdint.h>
#include <stdio.h>

#include "core/model.h"
#include "core/status.h"

typedef struct {
    const char *split;        /* "train" or "eval" */
    int64_t step;             /* optimizer steps done */
    int64_t epoch;            /* 0-based */
    double loss;              /* mean per sample */
    double accuracy;          /* NAN: not a classifier */
    double samples_per_s;
    double lr;                /* NAN: not applicable (eval) */
    double grad_norm;         /* NAN: not applicable */
    double data_wait;         /* fraction of the window spent waiting for data, NAN if n/a */
    const double *time_breakdown; /* 5 mean seconds per step: data, forward, backward, exposed
                                     communication, optimizer (rank 0's); NULL: none */
} dlt_record;

/* Creates run_dir (and parents) if needed. */
dlt_status dlt_mkdirs(const char *path);

/* Appends one record as a JSON line and flushes. */
void dlt_record_write(FILE *f, const dlt_record *r);

/* Writes every parameter and state buffer of m as one HDF5 dataset named by
 * "<layer>.<param>" (h5py: f['conv1.weight']), through a temporary file and
 * rename, so a crash never leaves a half-written file. */
dlt_status dlt_weights_save(dlt_model *m, const char *path);

#endif
