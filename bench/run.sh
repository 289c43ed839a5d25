#!/bin/sh
# make bench: CPU training throughput of dltrain, against the machine's GEMM
# peak and against PyTorch, written to bench/results/cpu-YYYY-MM-DD.md.
#
# Design: three measurements taken in the same run, on the same machine and
# thread counts, so that their ratios mean something:
#   1. bench_sgemm (bench/sgemm.c): best OpenBLAS sgemm GFLOP/s per thread
#      count, the ceiling for a GEMM-bound trainer;
#   2. dltrain on each model under `mpirun -np 1` and `-np 2` (mpirun binds
#      one core per rank, so 1 thread per rank); it writes summary.json with
#      samples/s (excluding the first 5 steps) and forward FLOPs per sample.
#      `data.test=` switches evaluation off (eval.every_epochs must be >= 1);
#   3. bench/torch_ref.py: the same config in PyTorch (DDP over gloo when
#      ranks > 1), same global batch, optimizer, steps and threads per rank.
# Achieved GFLOP/s = 3 x flops_per_sample x samples/s (forward + 2x for
# backward); it is compared with sgemm(threads per rank) x ranks.
# This is a benchmark, not a test: it fails only when a program fails.
#
# Environment (all optional): BIN (default bin), PY (/usr/bin/python3),
# CONFIGS, RANKS ("1 2"), STEPS_MLP (1000), STEPS_CNN (300; any config whose
# name does not start with mlp), RESULTS (output file), WORK (scratch dir).
set -eu

BIN=${BIN:-bin}
PY=${PY:-/usr/bin/python3}
CONFIGS=${CONFIGS:-"configs/mlp_fashion.yaml configs/cnn_fashion.yaml"}
RANKS=${RANKS:-"1 2"}
DATE=$(date +%F)
RESULTS=${RESULTS:-bench/results/cpu-$DATE.md}
WORK=${WORK:-$(mktemp -d /tmp/dlt-bench.XXXXXX)}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_rmaps_base_oversubscribe=1

die() { echo "bench: $*" >&2; exit 1; }

for p in "$BIN/dltrain" "$BIN/dlprep" "$BIN/bench_sgemm"; do
    [ -x "$p" ] || die "$p not found: run 'make bench' (or make all $BIN/bench_sgemm)"
done
for c in $CONFIGS; do [ -f "$c" ] || die "config $c not found"; done
mkdir -p "$WORK" "$(dirname "$RESULTS")"
: > "$WORK/commands.txt"
: > "$WORK/runs.txt"

# Runs a command, recording it (as typed) for the results file.
run() {
    echo "$*" >> "$WORK/commands.txt"
    "$@"
}

steps_for() {
    case $(basename "$1") in
        mlp*) echo "${STEPS_MLP:-1000}" ;;
        *) echo "${STEPS_CNN:-300}" ;;
    esac
}

echo "bench: scratch in $WORK; load before start: $(cut -d' ' -f1-3 /proc/loadavg)"
cut -d' ' -f1-3 /proc/loadavg > "$WORK/loadavg.txt"

# The trainer reads real shards; prepare Fashion-MNIST once if it is missing.
if ! ls data/fashion-mnist/*.h5 >/dev/null 2>&1; then
    echo "bench: preparing data/fashion-mnist"
    run "$BIN/dlprep" fashion-mnist data/fashion-mnist > "$WORK/dlprep.log" 2>&1 ||
        { tail -n 20 "$WORK/dlprep.log" >&2; die "dlprep failed"; }
fi

NCPU=$(nproc)
THREADS=$(seq -s, 1 "$NCPU")
echo "bench: sgemm on $THREADS threads"
run "$BIN/bench_sgemm" --threads "$THREADS" --reps 5 > "$WORK/sgemm.txt"
cat "$WORK/sgemm.txt"

for cfg in $CONFIGS; do
    steps=$(steps_for "$cfg")
    name=$(basename "$cfg" .yaml)
    for np in $RANKS; do
        dir="$WORK/$name-np$np"
        echo "bench: dltrain $name, $np rank(s), $steps steps"
        run mpirun -np "$np" "$BIN/dltrain" train "$cfg" train.max_steps="$steps" train.epochs=1000 \
            data.test= log.every="$steps" run_dir="$dir" > "$WORK/$name-np$np.log" 2>&1 ||
            { tail -n 20 "$WORK/$name-np$np.log" >&2; die "dltrain failed on $cfg, np $np"; }
        [ -f "$dir/summary.json" ] || die "$dir/summary.json was not written"
        threads=$("$PY" -c 'import json,sys; print(int(json.load(open(sys.argv[1]))["threads"]))' \
            "$dir/summary.json") || die "no threads in $dir/summary.json"
        [ "$threads" -ge 1 ] || threads=1
        echo "bench: pytorch $name, world $np, $threads thread(s) per rank"
        # Debian's torch calls OpenBLAS, which ignores torch.set_num_threads
        run env OMP_NUM_THREADS="$threads" OPENBLAS_NUM_THREADS="$threads" \
            "$PY" bench/torch_ref.py "$cfg" --steps "$steps" --world "$np" --threads "$threads" \
            > "$WORK/$name-np$np.torch.json" 2> "$WORK/$name-np$np.torch.log" ||
            { tail -n 20 "$WORK/$name-np$np.torch.log" >&2; die "torch_ref failed on $cfg"; }
        echo "$name $np $steps $dir/summary.json $WORK/$name-np$np.torch.json" >> "$WORK/runs.txt"
    done
done

cut -d' ' -f1-3 /proc/loadavg >> "$WORK/loadavg.txt"
MODEL=$(lscpu | sed -n 's/^Model name: *//p' | head -n 1)
COMMIT=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
if [ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ]; then
    COMMIT="$COMMIT (working tree modified)"
fi

"$PY" - "$WORK" "$RESULTS" "$DATE" "$MODEL" "$NCPU" "$COMMIT" <<'EOF'
import json, sys
work, out, date, model, ncpu, commit = sys.argv[1:7]
sgemm = {}   # (shape, threads) -> GFLOP/s
dims = {}
for line in open(work + "/sgemm.txt"):
    f = line.split()
    if len(f) == 7 and f[0] == "sgemm":
        sgemm[(f[1], int(f[5]))] = float(f[6])
        dims[f[1]] = "%s x %s x %s" % (f[2], f[3], f[4])
maxt = max(t for _, t in sgemm)

def peak(threads):
    return sgemm[("square1024", min(threads, maxt))]

need = ("samples_per_s", "flops_per_sample", "steps", "world", "batch_size", "threads")
rows, notes = [], []
load = [l.strip() for l in open(work + "/loadavg.txt")]
if float(load[0].split()[0]) > 0.5:
    notes.append("the 1-minute load average was %s before the run: other processes shared the "
                 "cores, so every number here is a lower bound" % load[0].split()[0])
for line in open(work + "/runs.txt"):
    name, np_, steps, summ, tref = line.split()
    s = json.load(open(summ))
    missing = [k for k in need if k not in s]
    if missing:
        sys.exit("bench: %s lacks %s" % (summ, ", ".join(missing)))
    t = json.load(open(tref))
    threads = max(1, int(s["threads"]))
    world = int(s["world"])
    if world != int(np_) or int(s["steps"]) != int(steps):
        notes.append("%s np %s: summary says world %d, steps %d (asked %s)"
                     % (name, np_, world, int(s["steps"]), steps))
    if abs(s["flops_per_sample"] - t["flops_per_sample"]) > 0.02 * t["flops_per_sample"]:
        notes.append("%s: dltrain counts %.3g forward FLOPs/sample, the PyTorch model %.3g"
                     % (name, s["flops_per_sample"], t["flops_per_sample"]))
    gflops = 3 * s["flops_per_sample"] * s["samples_per_s"] * 1e-9
    ref = peak(threads) * world
    rows.append("| %s | %d | %d | %d | %d | %.0f | %.1f | %.0f | %.1f%% | %.0f | %.2f |" % (
        name, world, threads, int(s["batch_size"]), int(s["steps"]), s["samples_per_s"], gflops,
        ref, 100 * gflops / ref, t["samples_per_s"], s["samples_per_s"] / t["samples_per_s"]))

L = ["# dltrain CPU benchmark, %s" % date, "",
     "- machine: %s, %s cores (`lscpu`, `nproc`)" % (model, ncpu),
     "- commit: %s" % commit,
     "- load average (1, 5, 15 min) before the run: %s; after: %s" % (load[0], load[-1]),
     "", "## Training throughput", "",
     "| model | ranks | threads/rank | global batch | steps | dltrain samples/s | dltrain GFLOP/s "
     "| sgemm GFLOP/s (threads x ranks) | of sgemm | PyTorch samples/s | dltrain / PyTorch |",
     "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"] + rows + [
     "",
     "GFLOP/s = 3 x forward FLOPs per sample (summary.json) x samples/s; samples/s excludes the first",
     "5 steps on both sides. The sgemm column is bench_sgemm's best 1024^3 rate at the rank's thread",
     "count times the number of ranks. PyTorch (same threads per rank, torch.set_num_threads) trains",
     "the same config on synthetic in-memory data (DDP over gloo for 2 ranks); dltrain reads the real",
     "shards through its input pipeline.", "",
     "## OpenBLAS sgemm (best of 5)", "",
     "| shape | M x N x K | " + " | ".join("%d thread%s" % (t, "s" if t > 1 else "")
                                          for t in range(1, maxt + 1)) + " |",
     "| --- | --- |" + " ---: |" * maxt]
for shape in dims:
    L.append("| %s | %s | " % (shape, dims[shape]) +
             " | ".join("%.1f" % sgemm.get((shape, t), float("nan")) for t in range(1, maxt + 1)) + " |")
if notes:
    L += ["", "## Notes", ""] + ["- " + n for n in notes]
L += ["", "## Commands", "", "```", "make bench   # runs bench/run.sh after make all"]
L += [c.rstrip("\n") for c in open(work + "/commands.txt")]
L += ["```", ""]
open(out, "w").write("\n".join(L))
EOF
echo
cat "$RESULTS"
echo "bench: wrote $RESULTS"
