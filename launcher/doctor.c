/* `dltrain doctor`: what a user needs to know before a long job.
 *
 * Run it exactly as the job will run (`srun -n 16 dltrain doctor`,
 * `mpirun -np 8 dltrain doctor`): it reports the MPI library and world,
 * ranks per node, each rank's host, CPUs and GPU (with PCI bus id), the
 * versions of the optional GPU libraries (NCCL, cuDNN, cuBLAS, CUDA runtime
 * and driver), HDF5's version and thread safety, and a short allreduce
 * bandwidth test over the same code path training uses. Every problem it
 * can name (a mis-launch as singletons, two ranks on one GPU, a CUDA
 * backend that does not load, a wrong allreduce sum, GPUs without NCCL) is
 * printed as "problem: ..." and makes the exit code 1 on every rank.
 *
 * GPU libraries are dlopen'ed, never linked (the same binary runs on CPU
 * machines), with their C entry points declared here by hand: each is a
 * plain function returning an int status or a version number, stable
 * across the major versions we support. Problems found on any rank are
 * gathered to rank 0 (one line per rank: the first problem and a count),
 * which prints them; the verdict is agreed with an allreduce.
 *
 * Doctor runs before the long job, often right after a node was replaced,
 * so a peer that dies or never arrives is exactly what it must survive:
 * every collective goes through comm.h (nonblocking, finished by the
 * guard's deadline wait, comm/guard.c), never raw MPI on MPI_COMM_WORLD.
 * Min, max and gather are built from those sum allreduces and broadcasts
 * (one slot per rank), which costs nothing at doctor's sizes. A collective
 * that fails is no "problem" to report later but the end of the run: the
 * rank prints one line naming the failed rank (or, on a timeout, the ranks
 * that never answered) and ends the job with exit code 1. `--timeout S`
 * bounds each wait (default 60 s); DLTRAIN_FAULT (launcher/fault.h) acts
 * out a fault at doctor's checkpoints, for the tests. */
#include <dlfcn.h>
#include <hdf5.h>
#include <mpi.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "comm/comm.h"
#include "core/device.h"
#include "launcher/commands.h"
#include "launcher/fault.h"

#define PROBLEM_LEN 480

typedef struct {
    dlt_comm_t comm;
    int rank, size;
    int problems;                /* on this rank */
    char first[PROBLEM_LEN];     /* this rank's first problem */
    int warnings;
    dlt_fault fault;             /* DLTRAIN_FAULT, acted out at checkpoints */
} doctor;

/* A collective failed (or this rank's injected fault fired): tells the
 * peers, prints one line and ends the job, exit code 1. The notice goes
 * first so the line can name the ranks that never answered it (dead or
 * hung) when the error itself names no rank, as on a timeout. */
static _Noreturn void fail_job(doctor *d)
{
    char msg[1024], silent[256] = "";
    snprintf(msg, sizeof msg, "%s", dlt_last_error());
    if (d->size > 1) dlt_comm_notify_failure(d->comm, msg, silent, sizeof silent);
    fflush(stdout);
    fprintf(stderr, "dltrain doctor: error: rank %d: %s%s%s%s\n", d->rank, msg,
            silent[0] ? "; no word from rank " : "", silent, silent[0] ? " (dead or hung)" : "");
    fflush(stderr);
    if (d->size > 1) dlt_comm_abort(d->comm, 1);
    exit(1);
}

/* Checkpoint `step` of doctor (0: before the first collective, 1: before
 * the bandwidth test, 2: before the verdict), for DLTRAIN_FAULT; also
 * records the phase that timeout messages name. */
static void checkpoint(doctor *d, int64_t step, const char *phase)
{
    dlt_comm_set_where(d->comm, -1, phase);
    if (dlt_fault_maybe(&d->fault, d->rank, step) != DLT_OK) fail_job(d);
}

/* Collective: on every rank all[r] (size doubles) receives rank r's
 * `mine`. A sum allreduce of one slot per rank: exact for the small
 * integers doctor gathers. Ends the job if the collective fails. */
static void gather_all(doctor *d, double *all, double mine)
{
    for (int r = 0; r < d->size; r++) all[r] = 0;
    all[d->rank] = mine;
    if (dlt_comm_allreduce_f64(d->comm, all, (size_t)d->size) != DLT_OK) fail_job(d);
}

static void problem(doctor *d, const char *fmt, const char *arg)
{
    char msg[PROBLEM_LEN];
    snprintf(msg, sizeof msg, fmt, arg);
    if (d->problems++ == 0) snprintf(d->first, sizeof d->first, "%s", msg);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* dlopen()s the first of `names` that loads; NULL if none. */
static void *open_lib(const char *const *names)
{
    for (; *names; names++) {
        void *h = dlopen(*names, RTLD_NOW | RTLD_LOCAL);
        if (h) return h;
    }
    return NULL;
}

/* "2.28.9" from a version code major*m1 + minor*m2 + patch. */
static void version_str(char *buf, size_t len, long code, long m1, long m2)
{
    snprintf(buf, len, "%ld.%ld.%ld", code / m1, (code % m1) / m2, code % m2);
}

/* What this rank sees of CUDA: visible GPUs, the bus id of the one it
 * would use (local rank modulo visible), runtime and driver versions. */
typedef struct {
    int loaded;          /* libcudart found */
    int count;           /* visible GPUs */
    int mine;            /* ordinal used by this rank, -1: none */
    char bus[32];
    int runtime, driver; /* CUDA versions as 13000 = 13.0 */
} cuda_info;

static void probe_cuda(cuda_info *ci, int local_rank)
{
    memset(ci, 0, sizeof *ci);
    ci->mine = -1;
    static const char *const names[] = { "libcudart.so.13", "libcudart.so.12", "libcudart.so",
                                         "/usr/local/cuda/lib64/libcudart.so", NULL };
    void *h = open_lib(names);
    if (!h) return;
    ci->loaded = 1;
    int (*get_count)(int *) = (int (*)(int *))dlsym(h, "cudaGetDeviceCount");
    int (*get_bus)(char *, int, int) = (int (*)(char *, int, int))dlsym(h, "cudaDeviceGetPCIBusId");
    int (*rt_ver)(int *) = (int (*)(int *))dlsym(h, "cudaRuntimeGetVersion");
    int (*drv_ver)(int *) = (int (*)(int *))dlsym(h, "cudaDriverGetVersion");
    int (*clear)(void) = (int (*)(void))dlsym(h, "cudaGetLastError");
    if (rt_ver) rt_ver(&ci->runtime);
    if (drv_ver) drv_ver(&ci->driver);
    /* errors 34, 35, 100 (no driver, old driver, no device) all mean "no GPU" */
    if (!get_count || get_count(&ci->count) != 0) ci->count = 0;
    if (clear) clear();
    if (ci->count > 0) {
        ci->mine = local_rank % ci->count;
        if (!get_bus || get_bus(ci->bus, (int)sizeof ci->bus, ci->mine) != 0) ci->bus[0] = '\0';
    }
    /* the runtime stays loaded: unloading CUDA libraries is not safe */
}

/* Versions of the optional GPU libraries, one line each (rank 0 prints). */
static void print_gpu_libs(doctor *d, const cuda_info *ci)
{
    char v[32];
    static const char *const nccl_names[] = { "libnccl.so.2", "libnccl.so", "/usr/local/cuda/lib64/libnccl.so.2",
                                              NULL };
    void *h = open_lib(nccl_names);
    int (*nccl_ver)(int *) = h ? (int (*)(int *))dlsym(h, "ncclGetVersion") : NULL;
    int code = 0;
    if (nccl_ver && nccl_ver(&code) == 0) {
        /* NCCL >= 2.9 encodes major*10000 + minor*100 + patch */
        version_str(v, sizeof v, code, code >= 10000 ? 10000 : 1000, 100);
        printf("NCCL:      %s\n", v);
    } else {
        printf("NCCL:      not found (optional; needed to train on GPUs)\n");
        if (ci->count > 0) problem(d, "%s", "GPUs are visible but libnccl.so.2 cannot be loaded");
    }

    static const char *const cudnn_names[] = { "libcudnn.so.9", "libcudnn.so.8", "libcudnn.so",
                                               "/usr/local/cuda/lib64/libcudnn.so.9", NULL };
    h = open_lib(cudnn_names);
    size_t (*cudnn_ver)(void) = h ? (size_t (*)(void))dlsym(h, "cudnnGetVersion") : NULL;
    if (cudnn_ver) {
        long c = (long)cudnn_ver();
        version_str(v, sizeof v, c, c >= 10000 ? 10000 : 1000, 100);
        printf("cuDNN:     %s\n", v);
    } else {
        printf("cuDNN:     not found (optional)\n");
    }

    /* cublasGetProperty(libraryPropertyType, int *): MAJOR 0, MINOR 1, PATCH 2 */
    static const char *const cublas_names[] = { "libcublas.so.13", "libcublas.so.12", "libcublas.so",
                                                "/usr/local/cuda/lib64/libcublas.so", NULL };
    h = open_lib(cublas_names);
    int (*prop)(int, int *) = h ? (int (*)(int, int *))dlsym(h, "cublasGetProperty") : NULL;
    int mj = 0, mn = 0, pl = 0;
    if (prop && prop(0, &mj) == 0 && prop(1, &mn) == 0 && prop(2, &pl) == 0)
        printf("cuBLAS:    %d.%d.%d\n", mj, mn, pl);
    else
        printf("cuBLAS:    not found (optional)\n");

    if (ci->loaded)
        printf("CUDA:      runtime %d.%d, driver %s\n", ci->runtime / 1000, (ci->runtime % 1000) / 10,
               ci->driver ? (snprintf(v, sizeof v, "%d.%d", ci->driver / 1000, (ci->driver % 1000) / 10), v)
                          : "none");
    else
        printf("CUDA:      runtime not found (optional)\n");
}

/* MPI library, standard version and thread level (rank 0 prints). */
static void print_mpi(void)
{
    char lib[MPI_MAX_LIBRARY_VERSION_STRING];
    int len = 0, major = 0, minor = 0, level = 0;
    MPI_Get_library_version(lib, &len);
    lib[len > 0 ? len : 0] = '\0';
    char *nl = strpbrk(lib, ",\n");
    if (nl) *nl = '\0';
    MPI_Get_version(&major, &minor);
    MPI_Query_thread(&level);
    const char *levels[] = { "SINGLE", "FUNNELED", "SERIALIZED", "MULTIPLE" };
    int li = level == MPI_THREAD_MULTIPLE ? 3 : level == MPI_THREAD_SERIALIZED ? 2 : level == MPI_THREAD_FUNNELED ? 1 : 0;
    printf("MPI:       %s (MPI %d.%d, thread level %s)\n", lib, major, minor, levels[li]);
}

/* HDF5 version and thread safety (rank 0 prints). */
static void print_hdf5(doctor *d)
{
    unsigned mj = 0, mn = 0, rel = 0;
    hbool_t ts = 0;
    H5get_libversion(&mj, &mn, &rel);
    H5is_library_threadsafe(&ts);
    printf("HDF5:      %u.%u.%u, %s\n", mj, mn, rel,
           ts ? "thread-safe" : "NOT thread-safe (a data prefetch thread and checkpoint writes must not overlap)");
    if (!ts) d->warnings++;
}

/* Times `iters` allreduces of n floats; checks the sum of the last one. */
static double time_allreduce(doctor *d, float *buf, size_t n, int iters)
{
    double t = 0;
    for (int it = 0; it < iters + 1; it++) {
        for (size_t i = 0; i < n; i++) buf[i] = (float)(d->rank + 1);
        if (dlt_comm_barrier(d->comm) != DLT_OK) return -1;
        double t0 = now_s();
        if (dlt_comm_allreduce_f32(d->comm, buf, n) != DLT_OK) return -1;
        if (it > 0) t += now_s() - t0; /* the first call warms up buffers */
    }
    float want = (float)d->size * (float)(d->size + 1) / 2;
    for (size_t i = 0; i < n; i += n / 7 + 1)
        if (buf[i] != want) {
            problem(d, "%s", "allreduce returned a wrong sum: MPI is broken on this machine");
            break;
        }
    return t / iters;
}

/* The bandwidth sweep; every rank takes part, rank 0 prints. Bus bandwidth
 * as nccl-tests defines it for allreduce: algbw * 2 (n - 1) / n. */
static void bandwidth(doctor *d, int max_mib)
{
    if (d->size == 1) {
        if (d->rank == 0) printf("allreduce: 1 rank, nothing to measure (run under srun/mpirun)\n");
        return;
    }
    size_t max_n = (size_t)max_mib << 18; /* floats */
    float *buf = malloc(max_n * sizeof *buf);
    /* all ranks skip the test together, or none does: a rank that left
     * alone would meet its peers' allreduces with the verdict's */
    dlt_status st = dlt_comm_agree(
        d->comm, buf ? DLT_OK : DLT_ERR(DLT_ERR_NOMEM, "out of memory for the bandwidth test"));
    if (st == DLT_ERR_COMM) fail_job(d);
    if (st != DLT_OK) {
        if (!buf) problem(d, "%s", "out of memory for the bandwidth test");
        free(buf);
        return;
    }
    if (d->rank == 0) printf("allreduce (float32 sum, %d rank%s):\n", d->size, d->size > 1 ? "s" : "");
    for (size_t n = 1 << 10; n <= max_n; n *= 16) {
        int iters = n <= (1 << 16) ? 20 : n <= (1 << 20) ? 5 : 2;
        double t = time_allreduce(d, buf, n, iters);
        double tmax = t;
        if (t < 0 || dlt_comm_allreduce_f64(d->comm, &tmax, 1) != DLT_OK) {
            free(buf);
            fail_job(d);
        }
        tmax /= d->size; /* mean over ranks */
        double bytes = (double)n * sizeof(float);
        double alg = bytes / tmax / 1e9;
        if (d->rank == 0) {
            printf("  %9.0f KiB  %9.1f us  algbw %7.2f GB/s", bytes / 1024, tmax * 1e6, alg);
            if (d->size > 1) printf("  busbw %7.2f GB/s", alg * 2.0 * (d->size - 1) / d->size);
            printf("\n");
        }
        if (n == max_n) break;
        if (n * 16 > max_n) n = max_n / 16;
    }
    free(buf);
}

/* Contract: `dltrain doctor [--mib N] [--timeout S]` (N: largest
 * allreduce, MiB, default 16; S: seconds any one collective may wait,
 * default 60). Returns 0 when no problem was found on any rank, 1
 * otherwise, 2 on a usage error (or a bad DLTRAIN_FAULT). A collective that
 * fails or times out (a peer died, hung or failed) does not return: the
 * rank prints "dltrain doctor: error: rank R: ..." and the job ends with
 * exit code 1. */
int dlt_cmd_doctor(int argc, char **argv)
{
    int max_mib = 16;
    double timeout = 60;
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--mib") && i + 1 < argc) {
            max_mib = atoi(argv[++i]);
            if (max_mib < 1 || max_mib > 4096) {
                fprintf(stderr, "dltrain doctor: --mib wants 1..4096\n");
                return 2;
            }
        } else if (!strcmp(argv[i], "--timeout") && i + 1 < argc) {
            char *end;
            timeout = strtod(argv[++i], &end);
            if (*end || !(timeout > 0 && timeout <= 86400)) {
                fprintf(stderr, "dltrain doctor: --timeout wants seconds in (0, 86400]\n");
                return 2;
            }
        } else {
            fprintf(stderr,
                    "usage: dltrain doctor [--mib N] [--timeout S]   (run it as the job runs: srun/mpirun)\n");
            return 2;
        }
    }
    doctor d = { 0 };
    if (dlt_fault_from_env(&d.fault) != DLT_OK) {
        fprintf(stderr, "dltrain doctor: %s\n", dlt_last_error());
        return 2;
    }
    if (dlt_comm_init(NULL, NULL, &d.comm) != DLT_OK) {
        fprintf(stderr, "dltrain doctor: problem: MPI does not start: %s\n", dlt_last_error());
        return 1;
    }
    d.rank = dlt_comm_rank(d.comm);
    d.size = dlt_comm_size(d.comm);
    dlt_comm_set_timeout(d.comm, timeout);
    if (dlt_comm_check_launch(d.comm) != DLT_OK) problem(&d, "%s", dlt_last_error());

    if (d.rank == 0) {
        printf("dltrain doctor (dltrain %s)\n", DLT_VERSION);
        print_mpi();
    }
    /* one slot per rank, gathered by the guarded sum allreduce */
    double *slots = malloc((size_t)d.size * sizeof *slots);
    if (!slots) {
        fprintf(stderr, "dltrain doctor: error: rank %d: out of memory\n", d.rank);
        dlt_comm_abort(d.comm, 1);
        return 1;
    }
    checkpoint(&d, 0, "doctor: world");
    /* nodes: ranks with local rank 0; ranks per node from each node's size */
    gather_all(&d, slots, dlt_comm_local_rank(d.comm) == 0);
    double nodes = 0;
    for (int r = 0; r < d.size; r++) nodes += slots[r];
    gather_all(&d, slots, dlt_comm_local_size(d.comm));
    int lmin = (int)slots[0], lmax = lmin;
    for (int r = 1; r < d.size; r++) {
        if ((int)slots[r] < lmin) lmin = (int)slots[r];
        if ((int)slots[r] > lmax) lmax = (int)slots[r];
    }
    if (d.rank == 0) {
        printf("world:     %d rank%s on %.0f node%s, ", d.size, d.size > 1 ? "s" : "", nodes,
               nodes > 1 ? "s" : "");
        if (lmin == lmax) printf("%d rank%s per node\n", lmin, lmin > 1 ? "s" : "");
        else printf("%d to %d ranks per node\n", lmin, lmax);
    }

    cuda_info ci;
    probe_cuda(&ci, dlt_comm_local_rank(d.comm));
    cpu_set_t set;
    int cpus = sched_getaffinity(0, sizeof set, &set) == 0 ? CPU_COUNT(&set) : 0;
    char device[256];
    dlt_backend *be = NULL;
    if (dlt_device_open("auto", dlt_comm_local_rank(d.comm), &be) != DLT_OK) {
        problem(&d, "the compute device does not open: %s", dlt_last_error());
        snprintf(device, sizeof device, "none");
    } else {
        char desc[192];
        snprintf(device, sizeof device, "%s, %d CPU%s, %d GPU%s visible",
                 dlt_device_describe(be, desc, sizeof desc), cpus, cpus == 1 ? "" : "s", ci.count,
                 ci.count == 1 ? "" : "s");
        be->destroy(be);
    }
    if (ci.count > 0 && !strstr(device, "cuda"))
        problem(&d, "%s", "GPUs are visible but the CUDA backend did not open (is bin/libdltcuda.so built?)");
    char *table = NULL;
    dlt_comm_set_where(d.comm, -1, "doctor: rank table");
    dlt_status st = dlt_comm_rank_table(d.comm, device, ci.bus, &table);
    if (st == DLT_ERR_COMM) fail_job(&d);
    if (st != DLT_OK) problem(&d, "%s", dlt_last_error());
    if (d.rank == 0 && table) fputs(table, stdout);
    free(table);

    if (d.rank == 0) {
        print_gpu_libs(&d, &ci);
        print_hdf5(&d);
        fflush(stdout);
    }
    checkpoint(&d, 1, "doctor: bandwidth");
    bandwidth(&d, max_mib);

    /* every rank's problem count, then the first problem of each rank that
     * has one, broadcast by that rank; rank 0 prints */
    checkpoint(&d, 2, "doctor: verdict");
    gather_all(&d, slots, d.problems);
    int total = 0;
    for (int r = 0; r < d.size; r++) total += (int)slots[r];
    for (int r = 0; r < d.size; r++) {
        int n = (int)slots[r];
        if (!n) continue;
        char msg[PROBLEM_LEN] = "";
        if (r == d.rank) memcpy(msg, d.first, sizeof msg);
        if (r != 0 && dlt_comm_bcast(d.comm, msg, sizeof msg, r) != DLT_OK) fail_job(&d);
        if (d.rank != 0) continue;
        msg[PROBLEM_LEN - 1] = '\0';
        printf("problem: %s", msg);
        if (d.size > 1) printf(" (rank %d)", r);
        if (n > 1) printf(" (+%d more on that rank)", n - 1);
        printf("\n");
    }
    if (d.rank == 0) {
        if (total == 0) printf("doctor: no problems found%s\n", d.warnings ? " (see the notes above)" : "");
        else printf("doctor: %d problem%s found\n", total, total > 1 ? "s" : "");
        fflush(stdout);
    }
    free(slots);
    dlt_comm_free(d.comm);
    return total ? 1 : 0;
}
