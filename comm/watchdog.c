/* The watchdog thread (see watchdog.h).
 *
 * One mutex and one condition variable on CLOCK_MONOTONIC (wall-clock jumps
 * must not fire or delay it). The thread sleeps until armed, then until the
 * deadline or a change; at the deadline it writes its last words with
 * write(2) (no stdio locks, which the stuck thread may hold) and calls
 * _exit, which runs no atexit handlers that could hang in MPI again. */
#include "comm/watchdog.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "comm/comm.h"

struct dlt_watchdog {
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int stop;
    int armed;
    struct timespec deadline; /* CLOCK_MONOTONIC */
    double seconds;           /* the armed length, for the message */
    const char *what;
};

static void *watchdog_main(void *arg)
{
    dlt_watchdog *w = arg;
    pthread_mutex_lock(&w->mu);
    while (!w->stop) {
        if (!w->armed) {
            pthread_cond_wait(&w->cv, &w->mu);
            continue;
        }
        pthread_cond_timedwait(&w->cv, &w->mu, &w->deadline);
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        int past = now.tv_sec > w->deadline.tv_sec ||
                   (now.tv_sec == w->deadline.tv_sec && now.tv_nsec >= w->deadline.tv_nsec);
        if (w->armed && !w->stop && past) {
            char msg[256];
            int n = snprintf(msg, sizeof msg,
                             "dltrain: watchdog: %s did not finish within %.3g s; exiting with code %d\n",
                             w->what ? w->what : "a bounded section", w->seconds, DLT_EXIT_WATCHDOG);
            if (n > 0) {
                ssize_t unused = write(2, msg, (size_t)n < sizeof msg ? (size_t)n : sizeof msg - 1);
                (void)unused;
            }
            _exit(DLT_EXIT_WATCHDOG);
        }
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

/* Contract: see watchdog.h. */
dlt_status dlt_watchdog_start(dlt_watchdog **out)
{
    *out = NULL;
    dlt_watchdog *w = calloc(1, sizeof *w);
    if (!w) return DLT_ERR(DLT_ERR_NOMEM, "watchdog: out of memory");
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, &ca);
    pthread_condattr_destroy(&ca);
    int rc = pthread_create(&w->thread, NULL, watchdog_main, w);
    if (rc != 0) {
        pthread_cond_destroy(&w->cv);
        pthread_mutex_destroy(&w->mu);
        free(w);
        return DLT_ERR(DLT_ERR_INVALID, "watchdog: cannot start its thread: %s", strerror(rc));
    }
    *out = w;
    return DLT_OK;
}

/* Contract: see watchdog.h. */
void dlt_watchdog_stop(dlt_watchdog *w)
{
    if (!w) return;
    pthread_mutex_lock(&w->mu);
    w->stop = 1;
    w->armed = 0;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
    pthread_join(w->thread, NULL);
    pthread_cond_destroy(&w->cv);
    pthread_mutex_destroy(&w->mu);
    free(w);
}

/* Contract: see watchdog.h. NULL w is a no-op. */
void dlt_watchdog_arm(dlt_watchdog *w, double seconds, const char *what)
{
    if (!w) return;
    if (seconds < 0) seconds = 0;
    struct timespec d;
    clock_gettime(CLOCK_MONOTONIC, &d);
    time_t whole = (time_t)seconds;
    long frac = (long)((seconds - (double)whole) * 1e9);
    d.tv_sec += whole;
    d.tv_nsec += frac;
    if (d.tv_nsec >= 1000000000L) {
        d.tv_sec++;
        d.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&w->mu);
    w->deadline = d;
    w->seconds = seconds;
    w->what = what;
    w->armed = 1;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

/* Contract: see watchdog.h. NULL w is a no-op. */
void dlt_watchdog_disarm(dlt_watchdog *w)
{
    if (!w) return;
    pthread_mutex_lock(&w->mu);
    w->armed = 0;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
}
