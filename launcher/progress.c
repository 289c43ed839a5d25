/* Rank 0's live display (see progress.h).
 *
 * The bar line is rebuilt from scratch at every redraw: "\r", the text,
 * then "ESC[K" to erase what a longer previous line left behind. It never
 * reaches the terminal's last column (read with TIOCGWINSZ, 80 if unknown),
 * because a line that wraps cannot be redrawn with "\r". Loss and accuracy
 * are the last logged values, averaged over all ranks (between logs only
 * rank 0's numbers would be at hand, and a bar that disagreed with
 * metrics.jsonl would confuse); samples/s is the last logged rate, before
 * the first log the rate since the start; the ETA is the time per step
 * since the start times the steps left. Redraws are limited to ten a
 * second so a fast loop does not spend its time writing to the terminal. */
#include "launcher/progress.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#define BAR_MAX 30
#define TEXT_RESERVE 56 /* " 1234/5678 loss 1.2345 acc 0.1234 12345 samples/s ETA 1:23" */
#define REDRAW_S 0.1

static double mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int term_cols(FILE *f)
{
    struct winsize ws;
    if (ioctl(fileno(f), TIOCGWINSZ, &ws) == 0 && ws.ws_col >= 20) return ws.ws_col;
    return 80;
}

const char *dlt_progress_hms(double seconds, char *buf, size_t len)
{
    if (!isfinite(seconds) || seconds < 0) {
        snprintf(buf, len, "?");
        return buf;
    }
    long s = (long)(seconds + 0.5);
    if (s >= 3600) snprintf(buf, len, "%ld:%02ld:%02ld", s / 3600, s / 60 % 60, s % 60);
    else snprintf(buf, len, "%ld:%02ld", s / 60, s % 60);
    return buf;
}

int dlt_progress_is_terminal(FILE *out)
{
    if (!isatty(fileno(out))) return 0;
    if (!getenv("OMPI_COMM_WORLD_SIZE")) return 1;
    /* the parent is mpirun on the launching node (rank 0's), else orted */
    char path[64], link[256];
    snprintf(path, sizeof path, "/proc/%ld/fd/1", (long)getppid());
    ssize_t n = readlink(path, link, sizeof link - 1);
    if (n <= 0) return 0;
    link[n] = '\0';
    return !strncmp(link, "/dev/pts/", 9) || !strncmp(link, "/dev/tty", 8);
}

void dlt_progress_init(dlt_progress *p, FILE *out, int enabled, const char *mode, int classifier, int64_t total,
                       int64_t epochs, int64_t batch, int64_t step0)
{
    memset(p, 0, sizeof *p);
    p->out = out;
    p->enabled = enabled;
    if (mode && !strcmp(mode, "bar")) p->tty = 1;
    else if (mode && !strcmp(mode, "plain")) p->tty = 0;
    else p->tty = enabled && dlt_progress_is_terminal(out);
    p->classifier = classifier;
    p->total = total;
    p->epochs = epochs;
    p->batch = batch;
    p->step0 = p->step = step0;
    p->t0 = mono_s();
    p->loss = p->metric = p->sps = NAN;
}

static void draw(dlt_progress *p, double now)
{
    char text[256], ebuf[32], num[48];
    int64_t done = p->step - p->step0;
    double elapsed = now - p->t0;
    double sps = !isnan(p->sps) ? p->sps : (done > 0 && elapsed > 0 ? (double)done * (double)p->batch / elapsed : NAN);
    double eta = done > 0 ? elapsed / (double)done * (double)(p->total - p->step) : NAN;

    /* everything but the bar; the bar takes the room left beside a text of
     * TEXT_RESERVE columns, so its width does not jitter as numbers change */
    int k = snprintf(text, sizeof text, " %lld/%lld", (long long)p->step, (long long)p->total);
    if (!isnan(p->loss)) k += snprintf(text + k, sizeof text - (size_t)k, " loss %.4f", p->loss);
    if (p->classifier && !isnan(p->metric))
        k += snprintf(text + k, sizeof text - (size_t)k, " acc %.4f", p->metric);
    if (!isnan(sps)) k += snprintf(text + k, sizeof text - (size_t)k, " %.0f samples/s", sps);
    snprintf(text + k, sizeof text - (size_t)k, " ETA %s", dlt_progress_hms(eta, ebuf, sizeof ebuf));
    snprintf(num, sizeof num, "epoch %lld/%lld ", (long long)p->epoch + 1, (long long)p->epochs);

    int room = term_cols(p->out) - 1 - (int)strlen(num) - TEXT_RESERVE - 2;
    int width = room < BAR_MAX ? room : BAR_MAX;
    char bar[BAR_MAX + 3] = "";
    if (width >= 5) {
        double frac = p->total > 0 ? (double)p->step / (double)p->total : 0.0;
        int fill = (int)(frac * width);
        if (fill > width) fill = width;
        bar[0] = '[';
        for (int i = 0; i < width; i++) bar[1 + i] = i < fill ? '=' : (i == fill ? '>' : ' ');
        bar[1 + width] = ']';
        bar[2 + width] = '\0';
    }
    int cols = term_cols(p->out) - 1;
    char line[400];
    snprintf(line, sizeof line, "%s%s%s", num, bar, text);
    if ((int)strlen(line) > cols && cols > 0) line[cols] = '\0';
    fprintf(p->out, "\r%s\033[K", line);
    fflush(p->out);
    p->line_open = 1;
    p->last_draw = now;
}

void dlt_progress_step(dlt_progress *p, int64_t step, int64_t epoch)
{
    p->step = step;
    p->epoch = epoch;
    if (!p->enabled || !p->tty) return;
    double now = mono_s();
    if (now - p->last_draw >= REDRAW_S || step == p->total) draw(p, now);
}

void dlt_progress_train(dlt_progress *p, const dlt_record *r)
{
    p->step = r->step;
    p->epoch = r->epoch;
    p->loss = r->loss;
    p->metric = r->accuracy;
    p->sps = r->samples_per_s;
    if (!p->enabled) return;
    if (p->tty) {
        draw(p, mono_s());
        return;
    }
    fprintf(p->out, "epoch %lld step %lld loss %.4f", (long long)r->epoch + 1, (long long)r->step, r->loss);
    if (p->classifier) fprintf(p->out, " acc %.4f", r->accuracy);
    fprintf(p->out, " lr %.3g %.0f samples/s\n", r->lr, r->samples_per_s);
    fflush(p->out);
}

void dlt_progress_eval(dlt_progress *p, const dlt_record *r)
{
    if (!p->enabled) return;
    dlt_progress_end_line(p);
    fprintf(p->out, "epoch %lld eval loss %.4f", (long long)r->epoch + 1, r->loss);
    if (p->classifier) fprintf(p->out, " acc %.4f", r->accuracy);
    fputc('\n', p->out);
    fflush(p->out);
}

void dlt_progress_end_line(dlt_progress *p)
{
    if (!p->enabled || !p->line_open) return;
    /* the final state of the line, then its newline */
    draw(p, mono_s());
    fputc('\n', p->out);
    fflush(p->out);
    p->line_open = 0;
}
