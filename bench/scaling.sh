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
#   3. Hidden share: each N > 1 runs twice, with comm.bucket_mb=0 (one
#      bucket, which can only start after backward: the whole reduction is
#      exposed) and with BUCKET_MB buckets (overlapped). comm.json gives the
#      mean time per step spent waiting for reductions after backward;
#      hidden = 1 - wait(overlapped) / wait(one bucket).
# A benchmark, not a test: it fails only when a program fails.
set -eu

BIN=${BIN:-bin}
PY=${PY:-/usr/bin/python3}
RANKS=${RANKS:-"1 2 4"}
PER_RANK=${PER_RANK:-32}
STEPS=${STEPS:-60}
BUCKET_MB=${BUCKET_MB:-0.25}
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
    echo "Produced by \`BIN=$BIN sh bench/scaling.sh\`."
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
} >"$RESULTS"

# train NAME NP BUCKET_MB: one CNN run, 1 thread per rank
train() {
    $MPIRUN -np "$2" "$BIN/dltrain" train "$WORK/cnn.yaml" run_dir="$WORK/$1" train.threads=1 \
        train.batch_size=$((PER_RANK * $2)) train.max_steps="$STEPS" log.every=1000 schedule.type=constant \
        comm.bucket_mb="$3" >"$WORK/$1.log" 2>&1 || { cat "$WORK/$1.log" >&2; exit 1; }
}
for np in $RANKS; do
    train "np$np" "$np" "$BUCKET_MB"
    [ "$np" = 1 ] || train "np$np-one" "$np" 0
done

"$PY" - "$WORK" "$RANKS" "$PER_RANK" "$STEPS" "$BUCKET_MB" "$(nproc)" >>"$RESULTS" <<'PY'
import json, sys
work, ranks, per_rank, steps, mb, cores = sys.argv[1], [int(r) for r in sys.argv[2].split()], *sys.argv[3:]
def load(name, f):
    return json.load(open(f"{work}/{name}/{f}"))
base = load("np1", "summary.json")["samples_per_s"]
print(f"""
## CNN weak scaling

LeNet-style CNN (configs/cnn_fashion.yaml layers, {load('np1', 'comm.json')['grad_floats']} parameters) on
synthetic 1x28x28 data, {per_rank} samples per rank and step, {steps} steps (the first 5 not timed),
1 thread per rank, {cores} cores: runs with more ranks than cores share cores.
Overlapped runs use comm.bucket_mb={mb}; "one bucket" runs use comm.bucket_mb=0.

Command per run: `mpirun -np N dltrain train cnn.yaml train.threads=1 train.batch_size=$((32*N))
train.max_steps={steps} comm.bucket_mb={mb}` (and the same with comm.bucket_mb=0).

| ranks | global batch | buckets | samples/s | efficiency | backward ms/step | exposed comm ms/step (overlapped) | exposed comm ms/step (one bucket) | comm hidden |
| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |""")
for n in ranks:
    s, c = load(f"np{n}", "summary.json"), load(f"np{n}", "comm.json")
    eff = s["samples_per_s"] / (n * base)
    row = f"| {n} | {s['batch_size']} | {c['buckets']} | {s['samples_per_s']:.0f} | {100 * eff:.0f}% | " \
          f"{1e3 * c['backward_s_per_step']:.2f} | "
    if n == 1:
        row += "- | - | - |"
    else:
        one = load(f"np{n}-one", "comm.json")
        hidden = 1 - c["wait_s_per_step"] / one["wait_s_per_step"] if one["wait_s_per_step"] > 0 else float("nan")
        row += f"{1e3 * c['wait_s_per_step']:.2f} | {1e3 * one['wait_s_per_step']:.2f} | {100 * hidden:.0f}% |"
    print(row)
PY
echo "scaling: results in $RESULTS"
