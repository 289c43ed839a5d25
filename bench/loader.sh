#!/bin/sh
# Loader throughput benchmark -> bench/results/loader-YYYY-MM-DD.md.
#
# Design: `dlprep scan` reads one epoch through the real loader (streaming
# reader, sampler, prefetch workers, augmentation) and reports samples/s.
# "threads 0" runs everything on the calling thread: that is the per-core
# rate. With T prefetch workers the consumer only waits, so per core =
# samples/s / T. Two data sets: Fashion-MNIST shards (1x28x28) and a
# generated 3x224x224 set (uncompressed, chunks of 6 samples), read once
# beforehand so the page cache holds it and the numbers are CPU, not disk.
# Last, the data-wait fraction (time in dlt_loader_next_ref / step time,
# from metrics.jsonl) of a short CNN training run on 1 and 2 ranks, with the
# default prefetch and synchronous. The load average is recorded at the
# start and the end: the machine may be shared, so compare runs with care.
# A benchmark, not a test: it fails only when a program fails.
#
# Environment (optional): BIN (bin), PY (/usr/bin/python3), N224 (2000),
# RESULTS, WORK.
set -eu
BIN=${BIN:-bin}
PY=${PY:-/usr/bin/python3}
N224=${N224:-2000}
DATE=$(date +%F)
RESULTS=${RESULTS:-bench/results/loader-$DATE.md}
if [ -z "${WORK:-}" ]; then   # our own scratch (300 MB of shards): removed at exit
    WORK=$(mktemp -d /tmp/dlt-loader.XXXXXX)
    trap 'rm -rf "$WORK"' EXIT
fi
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
mkdir -p "$(dirname "$RESULTS")"
LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
[ -f data/fashion-mnist/train-00000.h5 ] || "$BIN/dlprep" fashion-mnist data/fashion-mnist > /dev/null
"$BIN/dlprep" synthetic "$WORK/s224" --n "$N224" --shape 3,224,224 --classes 10 --test-n 0 \
    --shard-size 1000 > /dev/null
cat "$WORK"/s224/*.h5 > /dev/null   # into the page cache

: > "$WORK/rows.txt"
for set in fashion s224; do
    case $set in
        fashion) glob="data/fashion-mnist/train-*.h5"; name="Fashion-MNIST 1x28x28" ;;
        s224) glob="$WORK/s224/train-*.h5"; name="generated 3x224x224" ;;
    esac
    for aug in none rrc,flip; do
        for t in 0 1 2; do
            best=0
            for rep in 1 2 3; do   # best of 3: the machine may be shared
                out=$("$BIN/dlprep" scan "$glob" --batch 64 --threads "$t" --prefetch 4 \
                    --shuffle-block 384 --augment "$aug")
                r=$(echo "$out" | sed -n 's/.*: \([0-9]*\) samples\/s.*/\1/p')
                [ "$r" -gt "$best" ] && best=$r
            done
            echo "$name|$aug|$t|$best" >> "$WORK/rows.txt"
            echo "bench: $name aug=$aug threads=$t: $best samples/s"
        done
    done
done

# data-wait fraction of a short training run (defaults: prefetch 2, 1 worker)
for np in 1 2; do
    for pf in 2 0; do
        run_dir="$WORK/cnn-np$np-pf$pf"
        mpirun -np "$np" "$BIN/dltrain" train configs/cnn_fashion.yaml train.max_steps=300 \
            train.epochs=100 data.test= log.every=50 data.prefetch=$pf run_dir="$run_dir" \
            > "$run_dir.log" 2>&1 || { tail -n 20 "$run_dir.log" >&2; exit 1; }
    done
done

MODEL=$(lscpu | sed -n 's/^Model name: *//p' | head -n 1)
"$PY" - "$WORK" "$RESULTS" "$DATE" "$MODEL" "$(nproc)" "$LOAD0" "$(cut -d' ' -f1-3 /proc/loadavg)" <<'PY'
import json, sys
work, out, date, model, ncpu, load0, load = sys.argv[1:8]
def wait(d):
    w = [json.loads(l) for l in open(d + "/metrics.jsonl")]
    w = [r for r in w if r.get("split") == "train" and r.get("data_wait") is not None][1:]
    return sum(r["data_wait"] for r in w) / max(1, len(w)), sum(r["samples_per_s"] for r in w) / max(1, len(w))
L = ["# dltrain loader benchmark, %s" % date, "",
     "- machine: %s, %s cores; load average at the start: %s, at the end: %s" % (model, ncpu, load0, load),
     "- `dlprep scan SHARDS --batch 64 --threads T --prefetch 4 --shuffle-block 384 --augment A`,"
     " best of 3; one epoch; normalisation always on",
     "- threads 0: the loader runs on the calling thread (1 core). threads T > 0: T prefetch"
     " workers, per core = samples/s / T", "",
     "| data set | augmentation | threads | samples/s | samples/s per core |",
     "| --- | --- | ---: | ---: | ---: |"]
for line in open(work + "/rows.txt"):
    name, aug, t, r = line.strip().split("|")
    t, r = int(t), float(r)
    L.append("| %s | %s | %d | %.0f | %.0f |" % (name, aug.replace(",", " + "), t, r, r / max(1, t)))
L += ["", "## Data wait in training", "",
      "configs/cnn_fashion.yaml, 300 steps, fraction of step time inside dlt_loader_next_ref"
      " (metrics.jsonl data_wait of rank 0, first window skipped):", "",
      "| ranks | loader | data-wait fraction | samples/s |", "| ---: | --- | ---: | ---: |"]
for np in (1, 2):
    for pf, name in ((2, "data.prefetch=2 (default)"), (0, "data.prefetch=0 (synchronous)")):
        w, s = wait("%s/cnn-np%d-pf%d" % (work, np, pf))
        L.append("| %d | %s | %.2f%% | %.0f |" % (np, name, 100 * w, s))
L.append("")
open(out, "w").write("\n".join(L))
PY
cat "$RESULTS"
echo "bench: wrote $RESULTS"
