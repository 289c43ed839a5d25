#!/bin/sh
# Runs the GPU suite and benchmark on a lent GPU machine that has CUDA,
# cuDNN, NCCL and PyTorch but no MPI, HDF5, Check or OpenBLAS.
#
# Two halves:
#   sh scripts/gpu-run.sh pack     HERE (no GPU): builds the programs in
#       build-gpu/ and writes gpu-carry/dltrain-gpu.tar.xz: bin/ (dltrain,
#       dlprep, libdltcuda.so, test_cuda_ops), lib/ (every non-glibc,
#       non-CUDA shared library they need, found with ldd), and Open MPI's
#       plugins and help files (usr/...) so that a single process can call
#       MPI_Init without mpirun. gpu-carry/ is added to .git/info/exclude;
#       name it in the device tool's `carry`.
#   sh scripts/gpu-run.sh device   THERE: the one command to give the device
#       `run` tool (with carry ["gpu-carry"]):
#           sh scripts/gpu-run.sh device
#       Unpacks to /tmp/dlt and runs, each step logged and timed, none
#       stopping the others:
#         1. env.txt       nvidia-smi, the carried libraries ldd resolves
#         2. test-gpu.log  every op vs the CPU backend + NCCL 1 rank (test_cuda_ops)
#         3. parity.log    6 training steps on CPU and GPU (fp32) from the
#                          same seed: losses (and parameters, with h5py)
#                          compared (scripts/gpu-checks.sh)
#         4. memcheck.log  compute-sanitizer memcheck on 2 GPU training steps
#         5. sanitize-ops.log  compute-sanitizer memcheck and racecheck over
#                          the op suite (own kernels: flash attention, reductions)
#         6. bench: bench/gpu/run.sh -> gpu-<date>.md (+ bench.log)
#       Budget: steps 2-4 take up to 8.5 minutes, step 5 up to 5 and the bench up
#       to 9, over the tool's 10 minutes per command, so give it three calls:
#           DLT_GPU_SKIP="sanitize-ops bench" sh scripts/gpu-run.sh device
#           DLT_GPU_SKIP="test-gpu parity memcheck sanitize-ops" sh scripts/gpu-run.sh device
#           DLT_GPU_SKIP="test-gpu parity memcheck bench" sh scripts/gpu-run.sh device
#       (DLT_GPU_SKIP names the steps to drop). Everything goes to $OUT (the
#       tool's result folder; /tmp/out when unset).
# Exit status: 0 when steps 2-5 passed, else 1 (the bench never fails it).
set -u

here=$(cd "$(dirname "$0")/.." && pwd)
CARRY=$here/gpu-carry
TARBALL=$CARRY/dltrain-gpu.tar.xz

pack() {
    cd "$here" || exit 1
    make -j2 BUILD=build-gpu BIN=build-gpu/bin CUDA=1 all >/dev/null || { echo "gpu-run: build failed" >&2; exit 1; }
    stage=$(mktemp -d)
    mkdir -p "$stage/bin" "$stage/lib" "$stage/usr/lib/x86_64-linux-gnu" "$stage/usr/share" "$stage/etc"
    cp build-gpu/bin/dltrain build-gpu/bin/dlprep build-gpu/bin/libdltcuda.so \
       build-gpu/tests/gpu/test_cuda_ops "$stage/bin/"
    # glibc's own libraries and CUDA's stay: the lent machine has newer ones
    ldd "$stage"/bin/* 2>/dev/null | awk '/=>/ { print $3 }' | sort -u |
        grep -v -e '^/usr/local/cuda' -e '/libc\.so' -e '/libm\.so' -e '/libdl\.so' \
                -e '/libpthread\.so' -e '/librt\.so' -e '/libresolv\.so' -e '/ld-linux' \
                -e '/libutil\.so' -e '/libgcc_s\.so' -e '/libstdc++\.so' -e 'not' |
        while read -r lib; do cp -L "$lib" "$stage/lib/"; done
    # Open MPI loads its components at run time from its own prefix
    cp -a /usr/lib/x86_64-linux-gnu/openmpi "$stage/usr/lib/x86_64-linux-gnu/"
    cp -a /usr/share/openmpi "$stage/usr/share/" 2>/dev/null
    cp -a /etc/openmpi "$stage/etc/" 2>/dev/null
    for so in "$stage"/usr/lib/x86_64-linux-gnu/openmpi/lib/openmpi3/*.so; do
        ldd "$so" 2>/dev/null | awk '/=>/ { print $3 }'
    done | sort -u | grep -e libpmix -e libhwloc -e libevent -e libudev -e libfabric -e libucp \
        -e libucs -e libuct -e libpsm -e libibverbs -e librdmacm -e libnl |
        while read -r lib; do cp -L "$lib" "$stage/lib/" 2>/dev/null; done
    mkdir -p "$CARRY"
    grep -qx '/gpu-carry/' .git/info/exclude 2>/dev/null || echo '/gpu-carry/' >>.git/info/exclude
    tar -C "$stage" -cJf "$TARBALL" . || exit 1
    rm -rf "$stage"
    echo "gpu-run: wrote $TARBALL ($(du -h "$TARBALL" | cut -f1); the device tool carries at most 64 MiB with the tree)"
}

step() { # name timeout command...: runs one step, records its status and time
    name=$1 limit=$2
    shift 2
    case " ${DLT_GPU_SKIP:-} " in *" $name "*) echo "skip  $name" >>"$OUT/summary.txt"; return 0 ;; esac
    t0=$(date +%s)
    timeout "$limit" "$@" >"$OUT/$name.log" 2>&1
    rc=$?
    echo "rc=$rc  $name  $(( $(date +%s) - t0 ))s" >>"$OUT/summary.txt"
    tail -n 3 "$OUT/$name.log" | sed "s/^/    /" >>"$OUT/summary.txt"
    return $rc
}

device() {
    OUT=${OUT:-/tmp/out}
    mkdir -p "$OUT"
    D=/tmp/dlt W=/tmp/dlt-work
    rm -rf "$D" "$W" && mkdir -p "$D" "$W"
    tar -C "$D" -xJf "$TARBALL" || { echo "gpu-run: cannot unpack $TARBALL (carry gpu-carry)" >&2; exit 1; }
    export D W OUT
    export LD_LIBRARY_PATH="$D/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    export OPAL_PREFIX="$D/usr" OMPI_MCA_ess_singleton_isolated=1 OMPI_MCA_pml=ob1 \
        OMPI_MCA_btl=self,vader OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 \
        DLT_CUDA_LIB="$D/bin/libdltcuda.so" DLT_BIN="$D/bin"
    : >"$OUT/summary.txt"
    { nvidia-smi; echo; ldd "$D"/bin/* | grep -e "not found" -e "=> $D"; } >"$OUT/env.txt" 2>&1
    fails=0
    step test-gpu 240 "$D/bin/test_cuda_ops" "$D/bin/libdltcuda.so" || fails=$((fails + 1))
    # gpu-checks.sh wants D = the directory of the programs themselves
    step parity 120 env D="$D/bin" sh "$here/scripts/gpu-run.sh" _parity || fails=$((fails + 1))
    step memcheck 150 env D="$D/bin" sh "$here/scripts/gpu-run.sh" _memcheck || fails=$((fails + 1))
    step sanitize-ops 300 env D="$D/bin" sh "$here/scripts/gpu-run.sh" _sanitize_ops || fails=$((fails + 1))
    # The benchmark's torch runs use the machine's python/torch, not our libraries.
    step bench 540 sh "$here/bench/gpu/run.sh" || true
    cat "$OUT/summary.txt"
    [ "$fails" -eq 0 ]
}

case "${1:-}" in
    pack) pack ;;
    device) device ;;
    _parity) . "$here/scripts/gpu-checks.sh"; gpu_parity ;;     # steps of `device`, re-entered
    _memcheck) . "$here/scripts/gpu-checks.sh"; gpu_memcheck ;; # so that timeout can run them
    _sanitize_ops) . "$here/scripts/gpu-checks.sh"; gpu_sanitize_ops ;;
    *) echo "usage: sh scripts/gpu-run.sh pack|device" >&2; exit 2 ;;
esac
