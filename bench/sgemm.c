/* bench_sgemm: OpenBLAS cblas_sgemm throughput, the yardstick for `make bench`.
 *
 * The trainer's CPU backend spends most of its time in cblas_sgemm, so the
 * best single-GEMM rate on the same machine and thread count is the ceiling
 * that its achieved training GFLOP/s is compared against. We time a few
 * shapes that the benchmark models produce: a large square one (the peak),
 * a convolution-like one (im2col of a 64 x 28 x 28 batch against a 5x5x16
 * filter bank, tall and thin) and the first layer of the MLP at batch 64.
 * Each shape runs once to warm caches and the thread pool, then `reps` times;
 * the best rate is reported, because the benchmark wants the attainable peak,
 * not the mean disturbed by the other processes on a shared machine.
 *
 * Output: one line per (shape, threads), whitespace separated, for scripts:
 *   sgemm <name> <M> <N> <K> <threads> <best GFLOP/s>
 * Usage: bench_sgemm [--threads T1,T2,...] [--reps N]   (defaults: 1..ncpu, 5) */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

typedef struct {
    const char *name;
    int m, n, k;
} shape;

static const shape SHAPES[] = {
    {"square1024", 1024, 1024, 1024},
    {"conv_im2col", 64 * 28 * 28, 16, 400},
    {"mlp_fc1", 64, 500, 784},
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static float *alloc_filled(size_t n, unsigned seed)
{
    float *p = malloc(n * sizeof *p);
    if (!p) return NULL;
    /* Values in [-0.5, 0.5): no denormals or infinities to slow the kernel down. */
    for (size_t i = 0; i < n; i++) {
        seed = seed * 1664525u + 1013904223u;
        p[i] = (float)(seed >> 8) / 16777216.0f - 0.5f;
    }
    return p;
}

/* Best GFLOP/s of C(m,n) = A(m,k) B(k,n) over `reps` timed calls, each
 * repeated until it lasts at least 20 ms so that small shapes are timed
 * above the clock's noise. Returns a negative value if memory ran out. */
static double time_shape(const shape *s, int reps)
{
    size_t m = (size_t)s->m, n = (size_t)s->n, k = (size_t)s->k;
    float *a = alloc_filled(m * k, 1);  /* (m, k) */
    float *b = alloc_filled(k * n, 2);  /* (k, n) */
    float *c = calloc(m * n, sizeof *c); /* (m, n) */
    double best = -1.0;
    if (!a || !b || !c) goto done;

    double flop = 2.0 * (double)m * (double)n * (double)k;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, s->m, s->n, s->k, 1.0f, a, s->k, b, s->n,
                0.0f, c, s->n);
    int inner = 1;
    for (int r = 0; r < reps; r++) {
        double t0 = now_s(), dt;
        for (;;) {
            for (int i = 0; i < inner; i++)
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, s->m, s->n, s->k, 1.0f, a, s->k,
                            b, s->n, 0.0f, c, s->n);
            dt = now_s() - t0;
            if (dt >= 0.02) break;
            inner *= 2;
            t0 = now_s();
        }
        double g = flop * inner / dt * 1e-9;
        if (g > best) best = g;
    }
done:
    free(a);
    free(b);
    free(c);
    return best;
}

int main(int argc, char **argv)
{
    int reps = 5;
    int threads[64], n_threads = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--reps") && i + 1 < argc) {
            reps = atoi(argv[++i]);
        } else if (!strcmp(argv[i], "--threads") && i + 1 < argc) {
            for (char *t = strtok(argv[++i], ","); t && n_threads < 64; t = strtok(NULL, ","))
                threads[n_threads++] = atoi(t);
        } else {
            fprintf(stderr, "usage: %s [--threads T1,T2,...] [--reps N]\n", argv[0]);
            return 2;
        }
    }
    if (reps < 1) reps = 1;
    if (n_threads == 0) {
        long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
        for (long t = 1; t <= ncpu && n_threads < 64; t++) threads[n_threads++] = (int)t;
    }
    for (int ti = 0; ti < n_threads; ti++) {
        if (threads[ti] < 1) {
            fprintf(stderr, "bench_sgemm: bad thread count %d\n", threads[ti]);
            return 2;
        }
        openblas_set_num_threads(threads[ti]);
        for (size_t si = 0; si < sizeof SHAPES / sizeof SHAPES[0]; si++) {
            const shape *s = &SHAPES[si];
            double g = time_shape(s, reps);
            if (g < 0) {
                fprintf(stderr, "bench_sgemm: out of memory for %s\n", s->name);
                return 1;
            }
            printf("sgemm %s %d %d %d %d %.1f\n", s->name, s->m, s->n, s->k, threads[ti], g);
            fflush(stdout);
        }
    }
    return 0;
}
