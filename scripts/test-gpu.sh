#!/bin/sh
# GPU test suite: compares every op of the CUDA backend with the CPU backend
# (tests/gpu/test_cuda_ops.c) and runs a one-rank NCCL allreduce.
#
# Usage: sh scripts/test-gpu.sh        (normally through `make test-gpu`)
# Environment: BUILD (default build), BIN (default bin) as in the Makefile.
# Exit status: 0 all passed, or skipped because no GPU is visible (a clear
# SKIP line says so; set DLT_REQUIRE_GPU=1 to make that an error, 77);
# 1 on any mismatch or failure.
set -u

BUILD=${BUILD:-build}
BIN=${BIN:-bin}
TEST="$BUILD/tests/gpu/test_cuda_ops"
LIB="$BIN/libdltcuda.so"

for f in "$TEST" "$LIB"; do
    if [ ! -f "$f" ]; then
        echo "test-gpu: $f is missing: build it with 'make gpu-tests' (needs nvcc, CUDA=1)" >&2
        exit 1
    fi
done

# Libraries the loader cannot find (e.g. a GPU machine without OpenBLAS) are
# named up front instead of failing with a bare loader error.
missing=$( (ldd "$TEST"; ldd "$LIB") 2>/dev/null | grep "not found" | sort -u)
if [ -n "$missing" ]; then
    echo "test-gpu: shared libraries not found (install them or set LD_LIBRARY_PATH):" >&2
    echo "$missing" >&2
    exit 1
fi

if command -v nvidia-smi >/dev/null 2>&1; then
    nvidia-smi --query-gpu=index,name,driver_version,memory.total --format=csv,noheader 2>/dev/null |
        sed 's/^/test-gpu: GPU /'
fi

"$TEST" "$LIB"
rc=$?
case $rc in
    0)  echo "test-gpu: all GPU checks passed" ;;
    77) if [ "${DLT_REQUIRE_GPU:-0}" = 1 ]; then
            echo "test-gpu: no GPU visible but DLT_REQUIRE_GPU=1" >&2
            exit 77
        fi
        echo "test-gpu: SKIPPED (no GPU visible on $(hostname))"
        rc=0 ;;
    *)  echo "test-gpu: FAILED (exit $rc)" >&2 ;;
esac
exit $rc
