/* Start-up checks of the process group (see comm.h): a mis-launched job, ranks
 * that run different configs or binaries, two ranks on one GPU.
 *
 * All of them are cheap and run once, before the first step, because each
 * failure they catch otherwise shows up much later and far from its cause:
 * N singletons each train alone on the full batch and silently write N
 * copies of the same run; a rank with another config or binary diverges or
 * deadlocks in a collective of another size; two ranks on one GPU either
 * hang inside NCCL's init or share the GPU at half speed.
 *
 * The collective checks are deterministic: every rank gathers the same data
 * (MPI_Allgather) and applies the same rule, so every rank returns the same
 * status and message without a further agreement round. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "comm/comm.h"
#include "comm/comm_internal.h"
#include "core/status.h"

/* Fixed-size record of one rank for the rank table. */
#define HOST_LEN 64
#define DEVICE_LEN 128
#define BUS_LEN 32
typedef struct {
    int local_rank;
    char host[HOST_LEN];
    char device[DEVICE_LEN];
    char bus[BUS_LEN];
} rank_rec;

/* The world size an environment variable announces, 0 if unset or not a number. */
static long env_world(const char *name)
{
    const char *v = getenv(name);
    if (!v || !v[0]) return 0;
    char *end;
    errno = 0;
    long n = strtol(v, &end, 10);
    return errno || *end ? 0 : n;
}

/* Contract: see comm.h. */
dlt_status dlt_comm_check_launch(dlt_comm_t c)
{
    if (dlt_comm_size(c) != 1) return DLT_OK;
    const char *vars[] = { "SLURM_NTASKS", "OMPI_COMM_WORLD_SIZE" };
    for (int i = 0; i < 2; i++) {
        long n = env_world(vars[i]);
        if (n > 1)
            return DLT_ERR(DLT_ERR_COMM,
                           "started as %ld singletons: launch with srun --mpi=pmix or mpirun "
                           "(%s=%ld but this MPI world has 1 rank)",
                           n, vars[i], n);
    }
    return DLT_OK;
}

/* Contract: see comm.h. */
uint64_t dlt_hash_bytes(uint64_t h, const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) {
        h ^= b[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

/* Contract: see comm.h. */
dlt_status dlt_hash_file(const char *path, uint64_t *out)
{
    FILE *f = fopen(path, "rb");
    if (!f) return DLT_ERR(DLT_ERR_IO, "%s: cannot read: %s", path, strerror(errno));
    uint64_t h = DLT_HASH_INIT;
    unsigned char buf[1 << 16];
    size_t got;
    while ((got = fread(buf, 1, sizeof buf, f)) > 0) h = dlt_hash_bytes(h, buf, got);
    int bad = ferror(f);
    fclose(f);
    if (bad) return DLT_ERR(DLT_ERR_IO, "%s: read error", path);
    *out = h;
    return DLT_OK;
}

/* Contract: see comm.h. Collective. */
dlt_status dlt_comm_check_same(dlt_comm_t c, const char *what, uint64_t hash)
{
    int size = dlt_comm_size(c);
    if (size == 1) return DLT_OK;
    unsigned long long mine = hash;
    unsigned long long *all = malloc((size_t)size * sizeof *all);
    if (!all) return DLT_ERR(DLT_ERR_NOMEM, "out of memory checking the %s of every rank", what);
    int rc = MPI_Allgather(&mine, 1, MPI_UNSIGNED_LONG_LONG, all, 1, MPI_UNSIGNED_LONG_LONG,
                           dlt_comm_mpi(c));
    if (rc != MPI_SUCCESS) {
        free(all);
        return dlt_comm_mpi_error(rc, "MPI_Allgather", __FILE__, __LINE__);
    }
    dlt_status st = DLT_OK;
    for (int r = 1; r < size; r++)
        if (all[r] != all[0]) {
            st = DLT_ERR(DLT_ERR_CONFIG,
                         "rank %d runs a different %s than rank 0 (hash %016llx, rank 0: %016llx); "
                         "start every rank with the same %s",
                         r, what, all[r], all[0], what);
            break;
        }
    free(all);
    return st;
}

/* Appends to a growing malloc'ed string; returns 0 when out of memory. */
static int append(char **s, size_t *len, size_t *cap, const char *line)
{
    size_t n = strlen(line);
    if (*len + n + 1 > *cap) {
        size_t nc = (*cap ? *cap * 2 : 256) + n;
        char *p = realloc(*s, nc);
        if (!p) return 0;
        *s = p;
        *cap = nc;
    }
    memcpy(*s + *len, line, n + 1);
    *len += n;
    return 1;
}

/* Contract: see comm.h. Collective. */
dlt_status dlt_comm_rank_table(dlt_comm_t c, const char *device, const char *bus_id,
                               char **table)
{
    if (!table) return DLT_ERR(DLT_ERR_INVALID, "dlt_comm_rank_table: NULL output");
    *table = NULL;
    int size = dlt_comm_size(c);
    rank_rec me;
    memset(&me, 0, sizeof me);
    me.local_rank = dlt_comm_local_rank(c);
    snprintf(me.host, sizeof me.host, "%s", dlt_comm_host(c));
    snprintf(me.device, sizeof me.device, "%s", device ? device : "");
    snprintf(me.bus, sizeof me.bus, "%s", bus_id ? bus_id : "");
    rank_rec *all = malloc((size_t)size * sizeof *all);
    if (!all) return DLT_ERR(DLT_ERR_NOMEM, "out of memory gathering the rank table");
    int rc = MPI_Allgather(&me, (int)sizeof me, MPI_BYTE, all, (int)sizeof me, MPI_BYTE,
                           dlt_comm_mpi(c));
    if (rc != MPI_SUCCESS) {
        free(all);
        return dlt_comm_mpi_error(rc, "MPI_Allgather", __FILE__, __LINE__);
    }

    char *s = NULL;
    size_t len = 0, cap = 0;
    int ok = append(&s, &len, &cap, "");
    for (int r = 0; ok && r < size; r++) {
        char line[HOST_LEN + DEVICE_LEN + BUS_LEN + 96];
        snprintf(line, sizeof line, "rank %d: host %s, local rank %d, device %s%s%s\n", r,
                 all[r].host, all[r].local_rank, all[r].device, all[r].bus[0] ? ", bus " : "",
                 all[r].bus);
        ok = append(&s, &len, &cap, line);
    }
    if (!ok) {
        free(s);
        free(all);
        return DLT_ERR(DLT_ERR_NOMEM, "out of memory formatting the rank table");
    }
    *table = s;

    dlt_status st = DLT_OK;
    for (int a = 0; a < size && st == DLT_OK; a++) {
        if (!all[a].bus[0]) continue;
        for (int b = a + 1; b < size; b++)
            if (!strcmp(all[a].bus, all[b].bus) && !strcmp(all[a].host, all[b].host)) {
                st = DLT_ERR(DLT_ERR_DEVICE,
                             "ranks %d and %d both use the GPU at PCI bus id %s on host %s: "
                             "give every rank its own GPU (one task per GPU, "
                             "CUDA_VISIBLE_DEVICES per task) or start fewer ranks per node",
                             a, b, all[a].bus, all[a].host);
                break;
            }
    }
    free(all);
    return st;
}
