#!/bin/sh
# Scaling benchmark: MPI allreduce bandwidth and weak scaling of CNN training
# with the share of gradient communication hidden behind backward, written
# to bench/results/scaling-YYYY-MM-DD.md (commands included).
#
#   BIN=bin sh bench/scaling.sh          (make all bin/bench_allreduce first)
#
# Design:
#   1. bench_allreduce (bench/allreduce.c) on 2 and 4 ranks: algbw and busbw
#      as nccl-tests define them.
#   2. The LeNet-style CNN of configs/cnn_fashion.yaml on synthetic 1x28x28
#      data, 1 thread per rank, PER_RANK samples per rank and step (weak
#      scaling: global batch = PER_RANK x ranks), STEPS steps. Efficiency at
#      N ranks = samples/s(N) / (N x samples/s(1)).
#   3. Hidden share: each N > 1 runs with comm.bucket_mb=0 (one bucket,
#      which can only start after backward: the whole reduction is exposed)
#      and with BUCKET_MB buckets (overlapped), each both with the
#      communication thread (comm/bucket.c, the default) and without it
#      (DLT_COMM_THREAD=0: the compute thread drives MPI between layers).
#      comm.json gives, per step, the time waiting for reductions after
#      backward ("exposed") and the time any reduction was in flight;
#      hidden = 1 - exposed(overlapped) / exposed(one bucket), and
#      in-flight hidden = 1 - exposed / in-flight of the same run.
#   4. ZERO=1 runs every configuration with comm.zero=1 (ZeRO-1: reduce-
#      scatter + all-gather instead of allreduce, sharded optimizer state).
#   5. The machine is shared: every run is repeated REPS times, interleaved,
#      and the median is reported; the load average is printed before and
#      after.
# A benchmark, not a test: it fails only when a program fails.
set -eu

BIN=${BIN:-bin}
PY=${PY:-/usr/bin/python3}
RANKS=${RANKS:-"1 2 4"}
PER_RANK=${PER_RANK:-32}
STEPS=${STEPS:-100}
REPS=${REPS:-3}
SWEEP=${SWEEP:-1}
BUCKET_MB=${BUCKET_MB:-0.25}
ZERO=${ZERO:-0}
DATE=$(date +%F)
RESULTS=${RESULTS:-bench/results/scaling-$DATE.md}
WORK=${WORK:-$(mktemp -d /tmp/dlt-scaling.XXXXXX)}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_rmaps_base_oversubscribe=1
MPIRUN="mpirun --bind-to none"

for p in "$BIN/dltrain" "$BIN/dlprep" "$BIN/bench_allreduce"; do
    [ -x "$p" ] || { echo "scaling: $p not found (make all $BIN/bench_allreduce)" >&2; exit 1; }
done
mkdir -p "$WORK" "$(dirname "$RESULTS")"

"$BIN/dlprep" synthetic "$WORK/syn" --n 16384 --shape 1,28,28 --classes 10 --seed 7 >/dev/null
sed -e "s|data/fashion-mnist/train-\*.h5|$WORK/syn/train-*.h5|" -e 's|^  test:.*|  test: ""|' \
    configs/cnn_fashion.yaml >"$WORK/cnn.yaml"

{
    echo "# Scaling on $(hostname): MPI allreduce and CNN weak scaling ($DATE)"
    echo
    echo "Machine: $(nproc) CPU cores ($(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //')), Open MPI"
    echo "$(mpirun --version 2>/dev/null | head -1 | sed 's/.*) //'), shared memory (vader) transport."
    echo "Produced by \`BIN=$BIN sh bench/scaling.sh\` (REPS=$REPS, STEPS=$STEPS, ZERO=$ZERO)."
    echo
    echo "Load average at start: $(cut -d' ' -f1-3 /proc/loadavg) (1, 5, 15 min)."
    if [ "$SWEEP" = 1 ]; then
        echo
        echo "## Allreduce bandwidth"
        echo
        echo "algbw = bytes / time; busbw = algbw x 2(N-1)/N (nccl-tests); time = slowest rank's mean."
        for np in 2 4; do
            echo
            echo "\`$MPIRUN -np $np $BIN/bench_allreduce\`"
            echo
            $MPIRUN -np "$np" "$BIN/bench_allreduce" | tail -n +2
        done
    fi
} >"$RESULTS"

# train NAME NP BUCKET_MB THREAD: one CNN run, 1 thread per rank
train() {
    DLT_COMM_THREAD=$4 $MPIRUN -np "$2" "$BIN/dltrain" train "$WORK/cnn.yaml" run_dir="$WORK/$1" \
        train.threads=1 train.batch_size=$((PER_RANK * $2)) train.max_steps="$STEPS" log.every=1000 \
        schedule.type=constant comm.bucket_mb="$3" comm.zero="$ZERO" >"$WORK/$1.log" 2>&1 || { cat "$WORK/$1.log" >&2; exit 1; }
}
rep=1
while [ "$rep" -le "$REPS" ]; do
    for np in $RANKS; do
        if [ "$np" = 1 ]; then train "np1-r$rep" 1 0 1; continue; fi
        for thr in 1 0; do
            train "np$np-t$thr-r$rep" "$np" "$BUCKET_MB" "$thr"
            train "np$np-t$thr-one-r$rep" "$np" 0 "$thr"
        done
    done
    rep=$((rep + 1))
done
printf "\nLoad average at end of the training runs: %s.\n" "$(cut -d" " -f1-3 /proc/loadavg)" >>"$RESULTS"

"$PY" - "$WORK" "$RANKS" "$PER_RANK" "$STEPS" "$BUCKET_MB" "$(nproc)" "$REPS" >>"$RESULTS" <<'PY'
import json, statistics, sys
work, ranks, per_rank, steps, mb, cores, reps = sys.argv[1], [int(r) for r in sys.argv[2].split()], *sys.argv[3:]
reps = int(reps)
def med(name, f, key):
    return statistics.median(json.load(open(f"{work}/{name}-r{r}/{f}"))[key] for r in range(1, reps + 1))
base = med("np1", "summary.json", "samples_per_s")
print(f"""
## CNN weak scaling

LeNet-style CNN (configs/cnn_fashion.yaml layers, {json.load(open(f"{work}/np1-r1/comm.json"))['grad_floats']} parameters) on
synthetic 1x28x28 data, {per_rank} samples per rank and step, {steps} steps (the first 5 not timed),
1 thread per rank, {cores} cores: runs with more ranks than cores share cores.
Overlapped runs use comm.bucket_mb={mb}; "one bucket" runs use comm.bucket_mb=0.
Mode "thread": the communication thread drives the reductions (default); "inline": DLT_COMM_THREAD=0,
the compute thread tests them between layers. Every value is the median of {reps} interleaved runs.

Command per run: `[DLT_COMM_THREAD=0] mpirun --bind-to none -np N dltrain train cnn.yaml train.threads=1
train.batch_size=$((32*N)) train.max_steps={steps} schedule.type=constant comm.bucket_mb={mb}` (and the
same with comm.bucket_mb=0).

| ranks | mode | samples/s | efficiency | backward ms/step | in flight ms/step | exposed ms/step | exposed ms/step (one bucket) | hidden vs one bucket | hidden of in-flight |
| ---: | :--- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |""")
for n in ranks:
    if n == 1:
        print(f"| 1 | - | {base:.0f} | 100% | {1e3 * med('np1', 'comm.json', 'backward_s_per_step'):.2f} | - | - | - | - | - |")
        continue
    for thr, mode in ((1, "thread"), (0, "inline")):
        name = f"np{n}-t{thr}"
        sps = med(name, "summary.json", "samples_per_s")
        bwd, wait, fly = (med(name, "comm.json", k) for k in ("backward_s_per_step", "wait_s_per_step", "comm_s_per_step"))
        one = med(name + "-one", "comm.json", "wait_s_per_step")
        h1 = 1 - wait / one if one > 0 else float("nan")
        h2 = 1 - wait / fly if fly > 0 else float("nan")
        print(f"| {n} | {mode} | {sps:.0f} | {100 * sps / (n * base):.0f}% | {1e3 * bwd:.2f} | {1e3 * fly:.2f} | "
              f"{1e3 * wait:.2f} | {1e3 * one:.2f} | {100 * h1:.0f}% | {100 * h2:.0f}% |")
PY
echo "scaling: results in $RESULTS"
