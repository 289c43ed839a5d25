/* Choosing and opening the compute device.
 *
 * The CPU backend is linked into every program; the CUDA backend lives in
 * bin/libdltcuda.so (built when nvcc is found) and is loaded with dlopen only
 * when asked for, so one binary runs on machines with and without GPUs and
 * CPU-only ranks never load cuBLAS. The program itself never links a CUDA
 * library. */
#ifndef DLT_DEVICE_H
#define DLT_DEVICE_H

#include <stddef.h>

#include "core/backend.h"

/* Name of the function libdltcuda.so exports, and its type: creates the CUDA
 * backend on GPU (device_ordinal modulo the visible GPUs). Returns
 * DLT_ERR_INVALID on an ABI mismatch, DLT_ERR_UNSUPPORTED when no GPU is
 * visible, DLT_ERR_DEVICE on any other CUDA failure. */
#define DLT_CUDA_CREATE_SYMBOL "dlt_cuda_backend_create"
typedef dlt_status (*dlt_cuda_create_fn)(int abi, int device_ordinal, dlt_backend **out);

/* Opens the backend named by `device`:
 *   "cpu"   the CPU backend;
 *   "cuda"  the CUDA backend on GPU local_rank modulo the visible GPUs;
 *           DLT_ERR_DEVICE with a one-line reason when the library was not
 *           built, cannot be loaded, or no GPU is visible;
 *   "auto"  CUDA when the library loads and a GPU is visible, otherwise the
 *           CPU without complaint (a stale or broken library is still an
 *           error).
 * The library is <directory of the running program>/libdltcuda.so, or the
 * path in the environment variable DLT_CUDA_LIB when set (tests use this).
 * Release the backend with (*out)->destroy(*out); the library stays loaded
 * until the process ends. Returns DLT_ERR_INVALID for an unknown name. */
dlt_status dlt_device_open(const char *device, int local_rank, dlt_backend **out);

/* One line for logs describing be, e.g. "cpu (2 threads)" or
 * "cuda:0 NVIDIA H100 80GB HBM3 (sm_90, 79.1 GiB, cuDNN 91900)", written
 * into buf (len bytes) and returned. */
const char *dlt_device_describe(const dlt_backend *be, char *buf, size_t len);

/* Symbol libdltcuda.so exports for dlt_device_describe. */
#define DLT_CUDA_DESCRIBE_SYMBOL "dlt_cuda_describe"
typedef const char *(*dlt_cuda_describe_fn)(const dlt_backend *be, char *buf, size_t len);

/* Symbol libdltcuda.so exports for dlt_device_set_precision. */
#define DLT_CUDA_SET_PRECISION_SYMBOL "dlt_cuda_set_precision"
typedef dlt_status (*dlt_cuda_set_precision_fn)(dlt_backend *be, const char *precision);

/* Sets the compute precision of be (train.precision). On CUDA: "auto" and
 * "bf16" run GEMMs (linear layers, attention, LSTM) on bf16 tensor cores,
 * "fp16" on fp16 tensor cores, "fp32" on TF32 tensor cores (strict fp32
 * FMA when the environment has DLT_CUDA_STRICT_FP32=1); inputs are rounded
 * inside cuBLAS, accumulation, storage, weights (master copy) and every
 * other op stay fp32. Convolutions run in cuDNN's default math (TF32) in
 * every mode. On the CPU "auto" and "fp32" are accepted (fp32), "bf16" and
 * "fp16" are DLT_ERR_UNSUPPORTED. DLT_ERR_INVALID for any other name. */
dlt_status dlt_device_set_precision(dlt_backend *be, const char *precision);

#endif
