/* What rank 0 shows while training: on a terminal one live line redrawn in
 * place (epoch, bar, step/total, loss, metric, samples/s, ETA); otherwise
 * (a file, a pipe, a Slurm log) the plain lines
 *   epoch E step S loss L [acc A] lr LR N samples/s
 *   epoch E eval loss L [acc A]
 * one per logged step and evaluation. The caller keeps the struct; nothing
 * is allocated. Ranks other than 0 pass enabled = 0 and print nothing. */
#ifndef DLT_PROGRESS_H
#define DLT_PROGRESS_H

#include <stdint.h>
#include <stdio.h>

#include "launcher/metrics.h"

typedef struct {
    FILE *out;
    int enabled;            /* rank 0 */
    int tty;                /* redraw one line with \r */
    int classifier;         /* show accuracy */
    int64_t total;          /* steps of the run */
    int64_t epochs;
    int64_t batch;          /* global batch, for samples/s before the first log */
    int64_t step0;          /* step the run started at (0, or where it resumed) */
    double t0;              /* monotonic seconds at step0 */
    double last_draw;       /* monotonic seconds of the last redraw */
    int64_t step, epoch;    /* where the loop is (epoch 0-based) */
    double loss, metric;    /* last logged train values, NaN: none yet */
    double sps;             /* last logged samples/s, NaN: none yet */
    int line_open;          /* a bar is on screen without its newline */
} dlt_progress;

/* Starts the display of a run of total steps from step0 over epochs epochs.
 * mode (log.progress): "bar", "plain", or "auto" / NULL: the bar when out
 * reaches a terminal (see dlt_progress_is_terminal). */
void dlt_progress_init(dlt_progress *p, FILE *out, int enabled, const char *mode, int classifier, int64_t total,
                       int64_t epochs, int64_t batch, int64_t step0);

/* Whether out ends on a terminal. Under Open MPI every rank's stdout is a
 * pseudo-terminal of mpirun's even when mpirun's own output goes to a file,
 * so there it is the launcher's stdout that decides (plain when unknown). */
int dlt_progress_is_terminal(FILE *out);

/* After every optimizer step (step = steps done); redraws the bar at most
 * ten times a second and at the end of the run. Plain mode prints nothing. */
void dlt_progress_step(dlt_progress *p, int64_t step, int64_t epoch);

/* A logged training record: the plain line, or new values for the bar. */
void dlt_progress_train(dlt_progress *p, const dlt_record *r);

/* An evaluation record: one line in both modes (the bar's line is ended
 * first). */
void dlt_progress_eval(dlt_progress *p, const dlt_record *r);

/* Ends the bar's line, so that the next output starts on a line of its own
 * (call at the end of an epoch and before printing anything else). */
void dlt_progress_end_line(dlt_progress *p);

/* Formats seconds as H:MM:SS or M:SS into buf. */
const char *dlt_progress_hms(double seconds, char *buf, size_t len);

#endif
