/* Device selection: the CPU backend directly, the CUDA backend through
 * dlopen (see device.h).
 *
 * The CUDA backend is a shared object next to the program. Loading it with
 * RTLD_LOCAL keeps its symbols (and those of cuBLAS/cuDNN/NCCL it pulls in)
 * out of the global namespace; the one entry point is looked up with dlsym
 * and is told the backend-table ABI version this program was built with, so
 * a stale library is refused instead of called through a mismatched table.
 * The handle is deliberately never closed: the backend's functions live in
 * the library, and unloading CUDA libraries while a process runs is not
 * supported by CUDA anyway. dlopen reference-counts, so opening twice costs
 * nothing and no handle has to be kept in global state.
 *
 * "auto" first asks the CUDA driver (libcuda.so.1, dlopen'ed) whether it
 * sees a GPU, and loads the backend library only then: a CPU-only rank never
 * maps cuBLAS. "cuda" loads the library directly, so that the failure comes
 * with the CUDA runtime's own explanation (cudaGetDeviceCount).
 *
 * The library records its errors with dlt_error(). The program exports that
 * symbol (see the Makefile), so the library's calls resolve to the program's
 * copy and messages land in the program's dlt_last_error(); should that ever
 * be missing, the library's own message is read back through dlsym when
 * creation fails, so at least the reason for a failed open is never lost. */
#include "core/device.h"

#include <dlfcn.h>
#include <limits.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/status.h"

#define CUDA_LIB_NAME "libdltcuda.so"

/* Path of the CUDA library into buf: $DLT_CUDA_LIB, else next to
 * /proc/self/exe. Returns DLT_ERR_DEVICE if the program's path is unknown. */
static dlt_status cuda_lib_path(char *buf, size_t len)
{
    const char *env = getenv("DLT_CUDA_LIB");
    if (env && env[0]) {
        if ((size_t)snprintf(buf, len, "%s", env) >= len)
            return DLT_ERR(DLT_ERR_DEVICE, "device: DLT_CUDA_LIB path is too long");
        return DLT_OK;
    }
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0) return DLT_ERR(DLT_ERR_DEVICE, "device: cannot resolve /proc/self/exe");
    exe[n] = '\0';
    char *slash = strrchr(exe, '/');
    if (slash) *slash = '\0';
    if ((size_t)snprintf(buf, len, "%s/%s", slash ? exe : ".", CUDA_LIB_NAME) >= len)
        return DLT_ERR(DLT_ERR_DEVICE, "device: library path is too long");
    return DLT_OK;
}

/* The library's failure message: ours if the library reported through the
 * program's dlt_error, else the library's private copy. */
static const char *lib_message(void *h, dlt_status st)
{
    const char *msg = dlt_last_error();
    if (msg[0]) return msg;
    const char *(*lib_last)(void) = NULL;
    void *sym = dlsym(h, "dlt_last_error");
    memcpy(&lib_last, &sym, sizeof sym); /* object -> function pointer without a cast warning */
    if (lib_last && lib_last()[0]) return lib_last();
    return dlt_status_str(st);
}

/* 1 if the CUDA driver is installed and sees at least one GPU. Asked of the
 * driver library directly (dlopen, never linked) so that "auto" on a machine
 * without a GPU does not load libdltcuda.so, whose cuBLAS/cuDNN/NCCL cost
 * ~150 MB of memory and ~0.1 s per process before cudaGetDeviceCount could
 * say there is nothing to use. The handle is kept: the CUDA runtime loads the
 * same library, and one that ran cuInit must not be unloaded. */
static int driver_sees_gpu(void)
{
    void *h = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!h) return 0;
    int (*cu_init)(unsigned) = NULL;
    int (*cu_count)(int *) = NULL;
    void *s1 = dlsym(h, "cuInit"), *s2 = dlsym(h, "cuDeviceGetCount");
    memcpy(&cu_init, &s1, sizeof s1);
    memcpy(&cu_count, &s2, sizeof s2);
    int n = 0;
    /* CUDA_SUCCESS is 0; "no device", "stub library" and "no driver" are not */
    return cu_init && cu_count && cu_init(0) == 0 && cu_count(&n) == 0 && n > 0;
}

/* Opens the CUDA backend. required = 0 (auto): a missing library, one that
 * does not load, or no visible GPU return DLT_ERR_UNSUPPORTED quietly (no
 * message) so the caller falls back to the CPU. */
static dlt_status open_cuda(int required, int local_rank, dlt_backend **out)
{
    char path[PATH_MAX];
    DLT_CHECK(cuda_lib_path(path, sizeof path));

    if (access(path, F_OK) != 0) {
        if (!required) return DLT_ERR_UNSUPPORTED;
        return DLT_ERR(DLT_ERR_DEVICE,
                       "device: cuda requested but %s was not built (make CUDA=1)", path);
    }
    if (!required && !driver_sees_gpu()) return DLT_ERR_UNSUPPORTED;
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        if (!required) return DLT_ERR_UNSUPPORTED;
        const char *why = dlerror();
        return DLT_ERR(DLT_ERR_DEVICE, "device: cuda requested but %s cannot be loaded: %s", path,
                       why ? why : "unknown dlopen error");
    }
    dlt_cuda_create_fn create = NULL;
    void *sym = dlsym(h, DLT_CUDA_CREATE_SYMBOL);
    memcpy(&create, &sym, sizeof sym);
    if (!create)
        return DLT_ERR(DLT_ERR_DEVICE, "device: %s has no symbol %s (rebuild it with make)", path,
                       DLT_CUDA_CREATE_SYMBOL);

    dlt_clear_error();
    dlt_status st = create(DLT_BACKEND_ABI, local_rank < 0 ? 0 : local_rank, out);
    if (st == DLT_OK) {
        if (!*out || (*out)->abi != DLT_BACKEND_ABI)
            return DLT_ERR(DLT_ERR_DEVICE, "device: %s returned a backend of another ABI", path);
        return DLT_OK;
    }
    *out = NULL;
    if (st == DLT_ERR_UNSUPPORTED) { /* no GPU visible */
        if (!required) {
            dlt_clear_error();
            return DLT_ERR_UNSUPPORTED;
        }
        char msg[512];
        snprintf(msg, sizeof msg, "%s", lib_message(h, st));
        return DLT_ERR(DLT_ERR_DEVICE, "device: cuda requested but %s", msg);
    }
    char msg[512];
    snprintf(msg, sizeof msg, "%s", lib_message(h, st));
    return DLT_ERR(st == DLT_ERR_INVALID ? DLT_ERR_INVALID : DLT_ERR_DEVICE, "device: %s", msg);
}

/* Contract: see device.h. */
dlt_status dlt_device_open(const char *device, int local_rank, dlt_backend **out)
{
    if (!out) return DLT_ERR(DLT_ERR_INVALID, "dlt_device_open: NULL output pointer");
    *out = NULL;
    if (!device || strcmp(device, "cpu") == 0) return dlt_backend_cpu_create(out);
    if (strcmp(device, "cuda") == 0) return open_cuda(1, local_rank, out);
    if (strcmp(device, "auto") == 0) {
        dlt_status st = open_cuda(0, local_rank, out);
        if (st != DLT_ERR_UNSUPPORTED) return st;
        return dlt_backend_cpu_create(out);
    }
    return DLT_ERR(DLT_ERR_INVALID, "device: unknown device '%s' (expected auto, cpu or cuda)",
                   device);
}

/* Contract: see device.h. A CUDA backend is described by the library that
 * implements it, found from the address of its destroy function. */
const char *dlt_device_describe(const dlt_backend *be, char *buf, size_t len)
{
    if (!buf || len == 0) return "";
    if (!be) {
        snprintf(buf, len, "(no device)");
        return buf;
    }
    if (strcmp(be->name, "cpu") == 0) {
        snprintf(buf, len, "cpu (%d threads)", omp_get_max_threads());
        return buf;
    }
    snprintf(buf, len, "%s", be->name);
    Dl_info info;
    void *fn;
    memcpy(&fn, &be->destroy, sizeof fn);
    if (!fn || !dladdr(fn, &info) || !info.dli_fname) return buf;
    void *h = dlopen(info.dli_fname, RTLD_NOW | RTLD_LOCAL | RTLD_NOLOAD);
    if (!h) return buf;
    dlt_cuda_describe_fn describe = NULL;
    void *sym = dlsym(h, DLT_CUDA_DESCRIBE_SYMBOL);
    memcpy(&describe, &sym, sizeof sym);
    if (describe) describe(be, buf, len);
    dlclose(h); /* drops only the reference RTLD_NOLOAD added */
    return buf;
}

/* The library that implements backend be (a reference the caller drops with
 * dlclose), or NULL for the CPU backend. */
static void *backend_library(const dlt_backend *be)
{
    Dl_info info;
    void *fn;
    memcpy(&fn, &be->destroy, sizeof fn);
    if (!fn || !dladdr(fn, &info) || !info.dli_fname) return NULL;
    return dlopen(info.dli_fname, RTLD_NOW | RTLD_LOCAL | RTLD_NOLOAD);
}

/* Contract: see device.h. */
dlt_status dlt_device_set_precision(dlt_backend *be, const char *precision)
{
    if (!be) return DLT_ERR(DLT_ERR_INVALID, "set_precision: NULL backend");
    const char *p = precision ? precision : "auto";
    if (strcmp(p, "auto") && strcmp(p, "fp32") && strcmp(p, "bf16") && strcmp(p, "fp16"))
        return DLT_ERR(DLT_ERR_INVALID,
                       "train.precision: '%s' is not one of auto, fp32, bf16, fp16", p);
    if (strcmp(be->name, "cuda") != 0) {
        if (strcmp(p, "auto") && strcmp(p, "fp32"))
            return DLT_ERR(DLT_ERR_UNSUPPORTED,
                           "train.precision: %s needs a GPU; the %s backend computes in fp32 "
                           "(use auto or fp32)", p, be->name);
        return DLT_OK;
    }
    void *h = backend_library(be);
    if (!h) return DLT_ERR(DLT_ERR_DEVICE, "set_precision: cannot find the CUDA library");
    dlt_cuda_set_precision_fn set = NULL;
    void *sym = dlsym(h, DLT_CUDA_SET_PRECISION_SYMBOL);
    memcpy(&set, &sym, sizeof sym);
    dlt_status st = set ? set(be, p)
                        : DLT_ERR(DLT_ERR_DEVICE, "set_precision: %s does not export %s "
                                  "(stale library: rebuild with make)", "libdltcuda.so",
                                  DLT_CUDA_SET_PRECISION_SYMBOL);
    dlclose(h);
    return st;
}
