/* bench_allreduce: MPI allreduce bandwidth sweep, reported as nccl-tests does.
 *
 *   mpirun -np N bench_allreduce [--min BYTES] [--max BYTES] [--iters K]
 *
 * For each message size S (float32 sum, in place, factor 4 apart) it runs a
 * few warm-up calls, then K timed calls (fewer for large messages so every
 * size takes about the same time), and reports
 *   time   the mean time of one allreduce, the slowest rank's (max over ranks);
 *   algbw  S / time;
 *   busbw  algbw * 2 (N - 1) / N: the bandwidth each link must carry in a
 *          ring allreduce, comparable across rank counts and with the
 *          hardware's peak (the nccl-tests definition).
 * Output is a Markdown table on rank 0, so results paste into bench/results/. */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static long parse_size(const char *s)
{
    char *end;
    double v = strtod(s, &end);
    if (*end == 'K' || *end == 'k') v *= 1024;
    else if (*end == 'M' || *end == 'm') v *= 1024 * 1024;
    else if (*end == 'G' || *end == 'g') v *= 1024.0 * 1024 * 1024;
    return (long)v;
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    int rank, size;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    long lo = 4096, hi = 64L << 20;
    int iters = 50;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--min")) lo = parse_size(argv[i + 1]);
        else if (!strcmp(argv[i], "--max")) hi = parse_size(argv[i + 1]);
        else if (!strcmp(argv[i], "--iters")) iters = atoi(argv[i + 1]);
    }
    if (lo < 4) lo = 4;
    if (iters < 1) iters = 1;
    float *buf = malloc((size_t)hi);
    if (!buf) {
        fprintf(stderr, "bench_allreduce: cannot allocate %ld bytes\n", hi);
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    for (long i = 0; i < hi / 4; i++) buf[i] = 1.0f / (float)(1 + i % 7);

    if (rank == 0) {
        printf("MPI allreduce (float32 sum, in place), %d ranks\n\n", size);
        printf("| size | count | time (us) | algbw (GB/s) | busbw (GB/s) |\n");
        printf("| ---: | ---: | ---: | ---: | ---: |\n");
    }
    for (long bytes = lo; bytes <= hi; bytes *= 4) {
        int count = (int)(bytes / 4);
        /* about the same total bytes per size: fewer repeats for big messages */
        long k = iters;
        long cap = (256L << 20) / bytes;
        if (k > cap) k = cap < 3 ? 3 : cap;
        for (int w = 0; w < 3; w++) MPI_Allreduce(MPI_IN_PLACE, buf, count, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
        MPI_Barrier(MPI_COMM_WORLD);
        double t0 = MPI_Wtime();
        for (long r = 0; r < k; r++) MPI_Allreduce(MPI_IN_PLACE, buf, count, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
        double dt = (MPI_Wtime() - t0) / (double)k, worst = 0;
        MPI_Allreduce(&dt, &worst, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
        double algbw = (double)bytes / worst / 1e9;
        double busbw = algbw * 2.0 * (size - 1) / size;
        if (rank == 0) {
            char sz[32];
            if (bytes >= (1L << 20)) snprintf(sz, sizeof sz, "%ld MiB", bytes >> 20);
            else snprintf(sz, sizeof sz, "%ld KiB", bytes >> 10);
            printf("| %s | %d | %.1f | %.2f | %.2f |\n", sz, count, worst * 1e6, algbw, busbw);
        }
    }
    free(buf);
    MPI_Finalize();
    return 0;
}
