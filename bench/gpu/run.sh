#!/bin/sh
# GPU benchmark (make bench-gpu; on a lent machine through scripts/gpu-run.sh):
# training throughput of dltrain and of the same model in PyTorch on the same
# GPU in the same run, and MFU against the bf16 GEMM peak measured here.
#   1. peak: torch bf16 8192^3 matmul TFLOP/s (bench/gpu/torch_bench.py peak)
#   2. dltrain (bf16 precision, synthetic data written by dlprep):
#      resnet34 on 3x224x224 (BasicBlock stack [3,4,6,3]: the layer set has no
#      bottleneck block yet, so ResNet-50 itself is not built), BERT-base MLM
#      at seq 128 (and 512), LSTM LM; samples/s from metrics.jsonl
#   3. torch: the same shapes, eager fp32, AMP bf16, channels_last (ResNet),
#      torch.compile when it works
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

sps() { # metrics.jsonl -> mean samples/s of the train records after the first (warm-up)
    $PY -c 'import json,sys
r=[json.loads(l) for l in open(sys.argv[1]) if "\"train\"" in l]
v=[x.get("samples_per_s",0) for x in r[1:]] or [0]
print("%.1f" % (sum(v)/len(v)))' "$1" 2>/dev/null || echo "n/a"
}

run_dlt() { # name config overrides...
    name=$1 cfg=$2
    shift 2
    if timeout 240 "$BIN/dltrain" train "$cfg" train.device=cuda train.precision=bf16 \
        train.max_steps="$STEPS" log.every=5 run_dir="$W/$name" "$@" >"$W/$name.log" 2>&1; then
        echo "| dltrain | $name | $(sps "$W/$name/metrics.jsonl") |" >>"$md"
    else
        echo "| dltrain | $name | failed: $(tail -n 1 "$W/$name.log" | tr '|' ' ') |" >>"$md"
    fi
}

{
    echo "# GPU benchmark $(date -u +%Y-%m-%dT%H:%MZ)"
    echo
    echo "- device: $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null)"
    echo "- commit: $(git -C "$here" rev-parse --short HEAD 2>/dev/null || echo unknown)"
    echo "- command: sh bench/gpu/run.sh (steps $STEPS)"
    echo "- bf16 GEMM peak (8192^3, torch): $($PY "$here/bench/gpu/torch_bench.py" peak 2>&1 | tail -n 1) TFLOP/s"
    echo
    echo "| framework | model | samples/s |"
    echo "| --- | --- | --- |"
} >"$md"

# synthetic data: ImageNet-shaped images, token rows from a generated corpus
"$BIN/dlprep" synthetic "$W/img" --n 2048 --shape 3,224,224 --classes 1000 --test-n 0 >/dev/null 2>&1
$PY -c 'import random
r=random.Random(0); w=["w%d"%i for i in range(6000)]
print("\n".join(" ".join(r.choice(w) for _ in range(600)) for _ in range(400)))' >"$W/corpus.txt"
for L in 128 512; do
    "$BIN/dlprep" text "$W/tok$L" --corpus "$W/corpus.txt" --layout stream --vocab-size 8000 \
        --seq-len "$L" --test-frac 0.01 >/dev/null 2>&1
done
cat >"$W/resnet34.yaml" <<YAML
data: {train: $W/img/train-*.h5, test: ""}
model:
  input: [3, 224, 224]
  loss: softmax_cross_entropy
  layers:
    - {type: conv2d, filters: 64, kernel: 7, stride: 2, padding: 3, bias: false}
    - {type: batchnorm}
    - {type: relu}
    - {type: maxpool, size: 3, stride: 2, padding: 1}
$(for s in "64 1 3" "128 2 4" "256 2 6" "512 2 3"; do set -- $s; i=0; while [ $i -lt $3 ]; do
    st=1; [ $i -eq 0 ] && st=$2; echo "    - {type: resblock, filters: $1, stride: $st}"; i=$((i + 1)); done; done)
    - {type: global_avgpool}
    - {type: dense, units: 1000}
train: {epochs: 100, batch_size: 128}
optimizer: {type: sgd, lr: 0.1, momentum: 0.9}
YAML
run_dlt resnet34-synthetic-b128 "$W/resnet34.yaml"
run_dlt bert-base-mlm-seq128-b64 "$here/configs/bert_base.yaml" data.train="$W/tok128/train-*.h5" data.test="" train.batch_size=64
run_dlt bert-base-mlm-seq512-b16 "$here/configs/bert_base.yaml" data.train="$W/tok512/train-*.h5" data.test="" train.batch_size=16
run_dlt lstm-lm-b32 "$here/configs/lstm_lm.yaml" data.train="$W/tok128/train-*.h5" data.test=""

# PyTorch on the same GPU (uses the machine's own libraries)
env -u LD_LIBRARY_PATH $PY "$here/bench/gpu/torch_bench.py" models >>"$md" 2>"$W/torch.err" ||
    echo "| torch | failed: $(tail -n 1 "$W/torch.err") | |" >>"$md"
echo >>"$md"
echo "MFU = model FLOPs/s / measured peak; see bench/gpu/torch_bench.py for FLOP counts." >>"$md"
cat "$md"
rm -rf "$W"
