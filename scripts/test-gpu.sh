#!/bin/sh
# GPU test suite (`make test-gpu`), on a machine with a GPU:
#   1. every op of the CUDA backend against the CPU backend, the staging ops
#      and a one-rank NCCL allreduce (tests/gpu/test_cuda_ops);
#   2. training parity: 6 steps on the CPU and on the GPU from one seed;
#   3. compute-sanitizer memcheck on 2 GPU training steps
# (2 and 3: scripts/gpu-checks.sh). Each step runs even when an earlier one
# failed, and says PASS, FAIL or SKIP.
#
# Usage: sh scripts/test-gpu.sh        (normally through `make test-gpu`)
# Environment: BUILD (default build), BIN (default bin) as in the Makefile.
# Exit status: 0 all passed; 77 skipped because no GPU is visible (one
# SKIP line says why; nothing else ran); 1 on any mismatch or failure
# (a missing compute-sanitizer skips step 3 only, which the summary says).
set -u

BUILD=${BUILD:-build}
BIN=${BIN:-bin}
TEST="$BUILD/tests/gpu/test_cuda_ops"
LIB="$BIN/libdltcuda.so"
here=$(cd "$(dirname "$0")/.." && pwd)

for f in "$TEST" "$LIB" "$BIN/dltrain" "$BIN/dlprep"; do
    if [ ! -f "$f" ]; then
        echo "test-gpu: $f is missing: build it with 'make all gpu-tests' (needs nvcc, CUDA=1)" >&2
        exit 1
    fi
done

# Libraries the loader cannot find (e.g. a GPU machine without OpenBLAS) are
# named up front instead of failing with a bare loader error.
missing=$( (ldd "$TEST"; ldd "$LIB"; ldd "$BIN/dltrain") 2>/dev/null | grep "not found" | sort -u)
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
if [ $rc -eq 77 ]; then
    echo "test-gpu: SKIP: no GPU visible on $(hostname) (exit 77)"
    exit 77
fi
summary="ops:$([ $rc -eq 0 ] && echo PASS || echo FAIL)"
fails=$([ $rc -eq 0 ] && echo 0 || echo 1)

D=$(cd "$BIN" && pwd)
W=$(mktemp -d /tmp/dlt-gpu.XXXXXX)
trap 'rm -rf "$W"' EXIT
export D W DLT_CUDA_LIB="$D/libdltcuda.so"
. "$here/scripts/gpu-checks.sh"
for step in parity memcheck; do
    echo "== test-gpu: $step"
    "gpu_$step"
    src=$?
    case $src in
        0) summary="$summary $step:PASS" ;;
        77) summary="$summary $step:SKIP" ;;
        *) summary="$summary $step:FAIL"; fails=$((fails + 1)) ;;
    esac
done
if [ "$fails" -eq 0 ]; then
    echo "test-gpu: all GPU checks passed ($summary)"
    exit 0
fi
echo "test-gpu: FAILED ($summary)" >&2
exit 1
