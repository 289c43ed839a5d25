# ResNet-50 at ImageNet shapes on the CPU: configs/resnet50_imagenet.yaml
# builds (bottleneck blocks) with exactly torchvision.models.resnet50's
# parameter count, 25,557,032, and about its 4.1 GMAC forward pass; then one
# training step at batch 2 runs through every layer with a finite loss.
. tests/integration/lib.sh
"$BIN/dlprep" synthetic "$TMP/syn" --n 4 --shape 3,224,224 --classes 1000 --test-n 0 --seed 3 >/dev/null
set -- data.train="$TMP/syn/train-*.h5" data.test="" train.batch_size=2 train.device=cpu \
    schedule.warmup_steps=0 train.threads=2
"$BIN/dltrain" train configs/resnet50_imagenet.yaml --dry-run "$@" >"$TMP/dry" 2>&1 ||
    { cat "$TMP/dry"; fail "resnet50 dry run"; }
grep -q "^total: 25557032 parameters" "$TMP/dry" ||
    { grep "^total" "$TMP/dry"; fail "resnet50 parameters differ from torchvision's 25557032"; }
mflop=$(sed -n 's/^total: .* parameters, \([0-9.e+]*\) MFLOP.*/\1/p' "$TMP/dry")
"$PY" -c "import sys; f=float(sys.argv[1]); assert 8.0e3 < f < 8.4e3, f'{f} MFLOP forward'" "$mflop" ||
    fail "resnet50 forward FLOPs $mflop MFLOP, expected ~8.2e3 (2 x 4.1 GMAC)"
"$BIN/dltrain" train configs/resnet50_imagenet.yaml "$@" run_dir="$TMP/run" train.max_steps=1 \
    log.every=1 >"$TMP/out" 2>&1 || { cat "$TMP/out"; fail "resnet50 training step"; }
"$PY" - "$TMP/run/metrics.jsonl" <<'PY' || fail "resnet50 step loss"
import json, math, sys
r = [json.loads(l) for l in open(sys.argv[1])][0]
# 1000 classes, fresh weights: the loss sits near log(1000) = 6.9
assert math.isfinite(r["loss"]) and 4.0 < r["loss"] < 12.0, r
PY
echo "ok  ResNet-50 (ImageNet shapes): 25557032 parameters as torchvision, ${mflop} MFLOP/sample, one CPU step"
