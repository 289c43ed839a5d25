#!/bin/sh
# make bench-seq: training throughput of the sequence models on the CPU ->
# bench/results/seq-YYYY-MM-DD.md: tokens/s of the LSTM language model
# (configs/lstm_lm.yaml), sequences/s of BERT-tiny and BERT-base masked-LM
# pretraining (configs/bert_tiny.yaml, bert_base.yaml) at a short sequence
# length, against the sgemm peak and PyTorch measured in the same run.
#
# Design: as bench/run.sh, three measurements on the same machine, threads
# and data: bench_sgemm's best 1024^3 rate at T threads (the ceiling);
# dltrain (one process, T threads, data.test= so no evaluation) on WordNet
# glosses prepared here by dlprep (the configs' own vocabularies: 10000
# words for the LM, 8000 WordPiece ids for BERT; 35 tokens per LM row, 64
# per BERT row); bench/torch_seq.py, the same config in PyTorch on the same
# shards (T intra-op threads, and T BLAS threads: Debian's torch calls the
# system OpenBLAS, which ignores torch.set_num_threads and would otherwise
# run its GEMMs on every core). Both exclude the first 5 steps. FLOPs are
# counted once, by torch_seq.py, as dltrain's layers count them (2 per
# multiply-add; its flops_model is checked against dltrain's
# flops_per_sample): the executed count puts the MLM decoder on the masked
# targets only, which is what both programs run (torch_seq --decoder
# targets); BERT-tiny is also run in PyTorch with the decoder on every
# position (--decoder full, as Hugging Face's BertForMaskedLM does).
# Achieved GFLOP/s = 3 x executed forward FLOPs x samples/s.
# The machine may be shared: the load average before and after is recorded.
# A benchmark, not a test: it fails only when a program fails.
#
# Threads: 1 by default. On a shared machine (more runnable threads than
# cores) multi-threaded OpenMP regions wait on preempted threads; PyTorch's
# many small LSTM ops then slow down ten-fold (measured: 0.5 s per LSTM
# forward+backward on 1 thread, 6-12 s on 2 threads at load 9 on 2 cores),
# which would measure the neighbours, not the frameworks. THREADS=2 on a
# quiet machine measures both cores.
#
# Environment (optional): BIN (bin), PY (/usr/bin/python3), THREADS (1),
# MODELS ("lstm_lm bert_tiny bert_base"), REPS (2), RESULTS, WORK.
# Each model runs REPS times, dltrain and PyTorch alternating, and the best
# rate of each side is reported (the neighbours' load only ever slows a run
# down; every run's rate is listed too).
set -eu
BIN=${BIN:-bin}
PY=${PY:-/usr/bin/python3}
THREADS=${THREADS:-1}
MODELS=${MODELS:-"lstm_lm bert_tiny bert_base"}
REPS=${REPS:-2}
DATE=$(date +%F)
RESULTS=${RESULTS:-bench/results/seq-$DATE.md}
WORK=${WORK:-$(mktemp -d /tmp/dlt-seq.XXXXXX)}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1

die() { echo "bench-seq: $*" >&2; exit 1; }
for p in "$BIN/dltrain" "$BIN/dlprep" "$BIN/bench_sgemm"; do
    [ -x "$p" ] || die "$p not found: run 'make bench-seq'"
done
[ -f /usr/share/wordnet/data.noun ] || die "wordnet-base is not installed (scripts/install-deps.sh)"
mkdir -p "$WORK" "$(dirname "$RESULTS")"
: > "$WORK/commands.txt"
: > "$WORK/runs.txt"
run() {
    echo "$*" >> "$WORK/commands.txt"
    "$@"
}

echo "bench-seq: scratch in $WORK; load before start: $(cut -d' ' -f1-3 /proc/loadavg)"
cut -d' ' -f1-3 /proc/loadavg > "$WORK/loadavg.txt"
run "$BIN/dlprep" text "$WORK/lm" --layout stream --vocab word --vocab-size 10000 --seq-len 35 \
    --max-units 20000 --test-frac 0.05 > "$WORK/dlprep.log" 2>&1 || die "dlprep (lm)"
run "$BIN/dlprep" text "$WORK/bert" --layout sentences --vocab wordpiece --vocab-size 8000 \
    --seq-len 64 --max-units 20000 --test-frac 0.05 >> "$WORK/dlprep.log" 2>&1 || die "dlprep (bert)"
run "$BIN/bench_sgemm" --threads "$THREADS" --reps 5 > "$WORK/sgemm.txt" || die "bench_sgemm"
cat "$WORK/sgemm.txt"

# model -> data, global batch, steps (5 of them warm-up)
plan() {
    case $1 in
        lstm_lm) echo "lm 32 30" ;;
        bert_tiny) echo "bert 64 20" ;;
        bert_base) echo "bert 8 10" ;;
        *) die "unknown model $1" ;;
    esac
}

for m in $MODELS; do
    set -- $(plan "$m")
    data=$1 batch=$2 steps=$3
    cfg=configs/$m.yaml
    decs="targets"
    [ "$m" = bert_tiny ] && decs="targets full"
    for r in $(seq 1 "$REPS"); do
        echo "bench-seq: dltrain $m, batch $batch, $steps steps, $THREADS threads (run $r)"
        run "$BIN/dltrain" train "$cfg" data.train="$WORK/$data/train-*.h5" data.test= \
            train.batch_size="$batch" train.max_steps="$steps" train.epochs=1000 train.threads="$THREADS" \
            schedule.warmup_steps=1 log.every="$steps" run_dir="$WORK/$m.$r" > "$WORK/$m.$r.log" 2>&1 ||
            { tail -n 20 "$WORK/$m.$r.log" >&2; die "dltrain failed on $m"; }
        for d in $decs; do
            echo "bench-seq: pytorch $m, decoder on $d (run $r)"
            run env OMP_NUM_THREADS="$THREADS" OPENBLAS_NUM_THREADS="$THREADS" MKL_NUM_THREADS="$THREADS" \
                "$PY" bench/torch_seq.py "$cfg" --train "$WORK/$data/train-*.h5" --batch-size "$batch" \
                --steps "$steps" --threads "$THREADS" --decoder "$d" > "$WORK/$m.$d.$r.json" \
                2> "$WORK/$m.$d.$r.log" || { tail -n 20 "$WORK/$m.$d.$r.log" >&2; die "torch_seq failed on $m"; }
        done
    done
    echo "$m $data $WORK/$m" >> "$WORK/runs.txt"
done
cut -d' ' -f1-3 /proc/loadavg >> "$WORK/loadavg.txt"

MODEL=$(lscpu | sed -n 's/^Model name: *//p' | head -n 1)
COMMIT=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
[ -z "$(git status --porcelain --untracked-files=no 2>/dev/null)" ] || COMMIT="$COMMIT (working tree modified)"
"$PY" - "$WORK" "$RESULTS" "$DATE" "$MODEL" "$THREADS" "$COMMIT" <<'EOF'
import json, os, sys
work, out, date, cpu, threads, commit = sys.argv[1:7]
threads = int(threads)
peak = None
for line in open(work + "/sgemm.txt"):
    f = line.split()
    if len(f) == 7 and f[0] == "sgemm" and f[1] == "square1024" and int(f[5]) == threads:
        peak = float(f[6])
if peak is None:
    sys.exit("bench-seq: no square1024 sgemm rate at %d threads" % threads)
load = [l.strip() for l in open(work + "/loadavg.txt")]
rows, notes, flops_rows = [], [], []
import glob
def runs(pattern):
    return [json.load(open(f)) for f in sorted(glob.glob(pattern))]
each, nreps = [], 0
for line in open(work + "/runs.txt"):
    name, data, base = line.split()
    ss, ts, fs = runs(base + ".*/summary.json"), runs(base + ".targets.*.json"), runs(base + ".full.*.json")
    best = lambda rs: max(rs, key=lambda r: r["samples_per_s"]) if rs else None
    s, t, full = best(ss), best(ts), best(fs)
    nreps = len(ss)
    each.append("%s: dltrain %s, PyTorch %s%s sequences/s" % (
        name, ", ".join("%.2f" % r["samples_per_s"] for r in ss),
        ", ".join("%.2f" % r["samples_per_s"] for r in ts),
        "; PyTorch with the decoder on every position " + ", ".join("%.2f" % r["samples_per_s"] for r in fs)
        if fs else ""))
    L = round(t["tokens_per_s"] / t["samples_per_s"])
    sps = s["samples_per_s"]
    gf = 3 * t["flops_executed"] * sps * 1e-9
    tgf = 3 * t["flops_executed"] * t["samples_per_s"] * 1e-9
    unit = "tokens/s" if data == "lm" else "sequences/s"
    rate = sps * L if data == "lm" else sps
    trate = t["tokens_per_s"] if data == "lm" else t["samples_per_s"]
    fmt = lambda x: "%.0f" % x if x >= 100 else "%.1f" % x if x >= 10 else "%.2f" % x
    rows.append("| %s | %d x %d | %s | %s | %.1f | %.1f%% | %s | %.1f | %s | **%.2f** |" % (
        name, int(s["batch_size"]), int(L), unit, fmt(rate), gf, 100 * gf / peak, fmt(trate), tgf,
        fmt(full["samples_per_s"]) if full else "", rate / trate))
    flops_rows.append("| %s | %.4g | %.4g | %.4g | %.2f |" % (
        name, s["flops_per_sample"], t["flops_model"], t["flops_executed"], t["targets_per_sample"]))
    if abs(s["flops_per_sample"] - t["flops_model"]) > 0.01 * t["flops_model"]:
        notes.append("%s: dltrain counts %.4g forward FLOPs/sample, torch_seq.py %.4g"
                     % (name, s["flops_per_sample"], t["flops_model"]))
    if int(s["threads"]) != threads:
        notes.append("%s: dltrain ran %s threads, not %d" % (name, s["threads"], threads))
if float(load[0].split()[0]) > 0.5 or float(load[-1].split()[0]) > threads + 0.5:
    notes.append("the machine was shared (1-minute load average %s before, %s after the run, "
                 "on %d cores): the numbers are noisy and lower bounds, for dltrain and PyTorch "
                 "alike; runs were sequential, so a ratio compares two moments"
                 % (load[0].split()[0], load[-1].split()[0], os.cpu_count()))
L = ["# dltrain sequence-model benchmark (CPU), %s" % date, "",
     "- machine: %s, %d cores (`lscpu`, `nproc`); one process with %d thread%s (OpenMP + "
     "OpenBLAS for dltrain, torch.set_num_threads and OPENBLAS_NUM_THREADS for PyTorch)"
     % (cpu, os.cpu_count(), threads, "s" if threads > 1 else ""),
     "- commit: %s" % commit,
     "- load average (1, 5, 15 min) before the run: %s; after: %s" % (load[0], load[-1]),
     "- sgemm peak (bench_sgemm, 1024^3, best of 5, %d threads): %.1f GFLOP/s" % (threads, peak),
     "", "## Training throughput", "",
     "| model | batch x length | unit | dltrain | dltrain GFLOP/s | of sgemm peak | PyTorch "
     "| PyTorch GFLOP/s | PyTorch, decoder on every position (seq/s) | dltrain / PyTorch |",
     "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"] + rows + [
     "",
     "Both sides train the config's model (AdamW/Adam, clipping, dropout as configured) on the same",
     "WordNet-gloss shards with the same batch and threads; the first 5 steps are excluded. Masked-LM",
     "targets are 15% of the non-special tokens; both run the MLM decoder on the targets only.",
     "GFLOP/s = 3 x executed forward FLOPs per sample x samples/s. Best of %d runs per side,"
     % nreps,
     "alternating; every run (samples/s):", ""] + ["- " + e for e in each] + ["",
     "## FLOPs per sample (forward)", "",
     "| model | dltrain (dlt_model_flops) | torch_seq.py, decoder on every position | executed "
     "(decoder on the targets) | targets per sample |",
     "| --- | ---: | ---: | ---: | ---: |"] + flops_rows
if notes:
    L += ["", "## Notes", ""] + ["- " + n for n in notes]
L += ["", "## Commands", "", "```", "make bench-seq   # bench/seq.sh after make all $(BIN)/bench_sgemm"]
L += [c.rstrip("\n") for c in open(work + "/commands.txt")]
L += ["```", ""]
open(out, "w").write("\n".join(L))
EOF
echo
cat "$RESULTS"
echo "bench-seq: wrote $RESULTS"
