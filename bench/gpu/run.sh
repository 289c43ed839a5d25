#!/bin/sh
# GPU benchmark (make bench-gpu; on a lent machine through scripts/gpu-run.sh):
# training throughput of dltrain and of the same model in PyTorch on the same
# GPU in the same run, and MFU against the bf16 GEMM peak measured here.
#   1. peak: torch bf16 8192^3 matmul TFLOP/s (bench/gpu/torch_bench.py peak),
#      measured once and used for every MFU below
#   2. dltrain (train.precision bf16), samples/s from summary.json (steps
#      after the 5th) and MFU = 3 x flops_per_sample (summary.json: the
#      model's forward FLOPs) x samples/s / peak:
#        resnet50-synthetic: configs/resnet50_imagenet.yaml on 256 synthetic
#          3x224x224 images (two batches, in the page cache: compute bound)
#        resnet50-hdf5: the same on 4096 images in 4 HDF5 shards with the
#          ImageNet input pipeline (random resized crop + flip, 8 loader
#          threads): what a real run on local disk sees
#        BERT-base MLM at seq 128 and 512 (also with attention_impl: probs,
#          and with DLT_CUDA_LT=0), LSTM LM
#   3. torch: the same shapes, eager fp32, AMP bf16, channels_last (ResNet),
#      torch.compile when it works; ResNet-50 from HDF5 with h5py + DataLoader
#      when h5py is importable
# Writes $OUT/gpu-<date>.md (OUT default bench/results). Environment: DLT_BIN
# (default bin), DLT_BENCH_STEPS (default 30).
set -u
here=$(cd "$(dirname "$0")/../.." && pwd)
BIN=${DLT_BIN:-$here/bin}
OUT=${OUT:-$here/bench/results}
STEPS=${DLT_BENCH_STEPS:-30}
W=$(mktemp -d)
mkdir -p "$OUT"
md="$OUT/gpu-$(date +%Y-%m-%d).md"
PY=${PY:-python3}
TORCH="env -u LD_LIBRARY_PATH $PY $here/bench/gpu/torch_bench.py" # the machine's own libraries

# summary.json -> "samples/s | MFU" (MFU = 3 x forward FLOPs x samples/s / peak)
rate() {
    $PY - "$1" "$PEAK" <<'PY' 2>/dev/null || echo "n/a | n/a"
import json, sys
s = json.load(open(sys.argv[1]))
sps, f = s["samples_per_s"], s.get("flops_per_sample", 0)
try:
    pk = float(sys.argv[2])
except ValueError:
    pk = 0
mfu = "%.1f%%" % (100 * 3 * f * sps / (pk * 1e12)) if f and pk else "n/a"
print("%.1f | %s" % (sps, mfu))
PY
}

run_dlt() { # name config overrides...
    name=$1 cfg=$2
    shift 2
    if timeout 240 "$BIN/dltrain" train "$cfg" train.device=cuda train.precision=bf16 \
        train.max_steps="$STEPS" log.every=5 log.progress=plain run_dir="$W/$name" "$@" \
        >"$W/$name.log" 2>&1; then
        echo "| dltrain | $name | $(rate "$W/$name/summary.json") |" >>"$md"
    else
        echo "| dltrain | $name | failed: $(tail -n 1 "$W/$name.log" | tr '|' ' ') | |" >>"$md"
    fi
}

PEAK=$($TORCH peak 2>"$W/peak.err" | tail -n 1)
[ -n "$PEAK" ] || PEAK="n/a ($(tail -n 1 "$W/peak.err"))"
{
    echo "# GPU benchmark $(date -u +%Y-%m-%dT%H:%MZ)"
    echo
    echo "- device: $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null)"
    echo "- commit: $(git -C "$here" rev-parse --short HEAD 2>/dev/null || echo unknown)"
    echo "- command: sh bench/gpu/run.sh (steps $STEPS)"
    echo "- bf16 GEMM peak (8192^3, torch): $PEAK TFLOP/s"
    echo
    echo "| framework | model | samples/s | MFU |"
    echo "| --- | --- | --- | --- |"
} >"$md"

# synthetic data: ImageNet-shaped images, token rows from a generated corpus
"$BIN/dlprep" synthetic "$W/img" --n 256 --shape 3,224,224 --classes 1000 --test-n 0 >/dev/null 2>&1
"$BIN/dlprep" synthetic "$W/imgh5" --n 4096 --shape 3,224,224 --classes 1000 --test-n 0 \
    --shard-size 1024 --seed 1 >/dev/null 2>&1
$PY -c 'import random
r=random.Random(0); w=["w%d"%i for i in range(6000)]
print("\n".join(" ".join(r.choice(w) for _ in range(600)) for _ in range(400)))' >"$W/corpus.txt"
for L in 128 512; do
    "$BIN/dlprep" text "$W/tok$L" --corpus "$W/corpus.txt" --layout stream --vocab-size 8000 \
        --seq-len "$L" --test-frac 0.01 >/dev/null 2>&1
done
R50="$here/configs/resnet50_imagenet.yaml"
run_dlt resnet50-synthetic-b128 "$R50" data.train="$W/img/train-*.h5" data.test="" \
    train.batch_size=128 schedule.warmup_steps=0
run_dlt resnet50-hdf5-b128 "$R50" data.train="$W/imgh5/train-*.h5" data.test="" \
    train.batch_size=128 schedule.warmup_steps=0 data.threads=8 data.prefetch=4 \
    "data.augment.resized_crop=[0.08,1]" data.augment.hflip=0.5
run_dlt bert-base-mlm-seq128-b64 "$here/configs/bert_base.yaml" data.train="$W/tok128/train-*.h5" data.test="" train.batch_size=64
run_dlt bert-base-mlm-seq512-b16 "$here/configs/bert_base.yaml" data.train="$W/tok512/train-*.h5" data.test="" train.batch_size=16
# the attention and bias paths not yet measured on a GPU: the flash kernels
# (default, fp32 SIMT) against the probabilities path (tensor-core gemms), and
# cuBLASLt's fused bias against gemm + a bias kernel (DLT_CUDA_LT=0)
sed 's/ff: 3072,/ff: 3072, attention_impl: probs,/' "$here/configs/bert_base.yaml" >"$W/bert_probs.yaml"
run_dlt bert-base-mlm-seq128-b64-probs "$W/bert_probs.yaml" data.train="$W/tok128/train-*.h5" data.test="" train.batch_size=64
run_dlt bert-base-mlm-seq512-b16-probs "$W/bert_probs.yaml" data.train="$W/tok512/train-*.h5" data.test="" train.batch_size=16
(export DLT_CUDA_LT=0; run_dlt bert-base-mlm-seq128-b64-no-lt "$here/configs/bert_base.yaml" \
    data.train="$W/tok128/train-*.h5" data.test="" train.batch_size=64)
run_dlt lstm-lm-b32 "$here/configs/lstm_lm.yaml" data.train="$W/tok128/train-*.h5" data.test=""

# PyTorch on the same GPU, MFU against the same peak
$TORCH models "$PEAK" "$W/imgh5/train-*.h5" >>"$md" 2>"$W/torch.err" ||
    echo "| torch | failed: $(tail -n 1 "$W/torch.err") | | |" >>"$md"
echo >>"$md"
echo "MFU = 3 x forward FLOPs per sample x samples/s / measured bf16 peak (dltrain: flops_per_sample" >>"$md"
echo "of summary.json; torch: the same counts, bench/gpu/torch_bench.py)." >>"$md"
cat "$md"
rm -rf "$W"
