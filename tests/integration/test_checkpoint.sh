# Checkpoints: h5py reads them (parameters by layer name, optimizer state,
# position, config), manifests carry size and CRC-32, checkpoint.keep and
# best_metric, resume: auto skips a corrupt newest one with a warning, a
# 1-rank checkpoint resumes on 2 ranks, init-from loads matching layers,
# --dry-run reports and writes nothing, train.nonfinite stop|skip.
. tests/integration/lib.sh
synthetic_data "$TMP/syn" 512

cat > "$TMP/mlp.yaml" <<YAML
data:
  train: $TMP/syn/train-*.h5
  test: $TMP/syn/test-*.h5
model:
  loss: softmax_cross_entropy
  layers:
    - {type: flatten}
    - {type: dense, name: fc1, units: 32}
    - {type: batchnorm, name: bn1}
    - {type: relu}
    - {type: dense, name: fc2, units: 10}
train:
  epochs: 3
  batch_size: 32
  threads: 1
optimizer:
  type: sgd
  lr: 0.05
  momentum: 0.9
log:
  every: 1
checkpoint:
  every_steps: 4
  keep: 2
  best_metric: accuracy
YAML

"$BIN/dltrain" train "$TMP/mlp.yaml" run_dir="$TMP/a" >"$TMP/a.out" || fail "training run"
"$PY" - "$TMP/a" <<'PY'
import glob, json, os, sys, zlib
import h5py
run = sys.argv[1]
ck = sorted(glob.glob(run + "/checkpoints/ckpt-*.h5"))
assert [os.path.basename(p) for p in ck] == ["ckpt-00000044.h5", "ckpt-00000048.h5"], ("keep 2", ck)
assert os.path.exists(run + "/checkpoints/best.h5") and os.path.exists(run + "/checkpoints/best.manifest")
assert not glob.glob(run + "/checkpoints/*.tmp"), "temporary files left"
for p in ck + [run + "/checkpoints/best.h5", run + "/model.h5"]:
    m = json.load(open(p[:-3] + ".manifest"))
    assert m["format"] == "dltrain-checkpoint-manifest" and m["world"] == 1, m
    data = open(p, "rb").read()
    f0 = m["files"][0]
    assert f0["bytes"] == len(data) and f0["crc32"] == zlib.crc32(data), (p, "size/crc")
f = h5py.File(ck[-1], "r")
assert f.attrs["format"] == b"dltrain-checkpoint" and f.attrs["version"] == 1
assert f.attrs["step"] == 48 and f.attrs["epoch"] == 2 and f.attrs["epoch_step"] == 16, dict(f.attrs)
assert f.attrs["opt_step"] == 48 and f.attrs["global_batch"] == 32 and f.attrs["seed"] == 42
assert f.attrs["loss_scale"] == 1.0 and list(f.attrs["input"]) == [1, 28, 28]
assert f["fc1.weight"].shape == (32, 784) and f["fc2.bias"].shape == (10,)
assert "bn1.running_mean" in f and "bn1.running_var" in f, list(f)
assert f["optimizer/s1/fc1.weight"].shape == (32, 784), "momentum buffer"
assert abs(f["optimizer/s1/fc1.weight"][()]).sum() > 0
assert b"momentum: 0.9" in f["config"][()], "config text"
print("ok  h5py: parameters, state, optimizer, position, config; manifests, keep 2, best")
PY

# init-from: a wider model takes fc1 and bn1 (same shapes), initialises fc2 (other shape)
"$BIN/dltrain" init-from "$TMP/mlp.yaml" "$TMP/a/model.h5" model.layers.4.units=12 run_dir="$TMP/ft" \
    train.max_steps=2 checkpoint.every_steps=0 >"$TMP/ft.out" || fail "init-from"
grep -q "loaded *fc1.weight" "$TMP/ft.out" || { cat "$TMP/ft.out"; fail "init-from summary: fc1"; }
grep -q "initialised *fc2.weight (shape differs)" "$TMP/ft.out" || fail "init-from summary: fc2"
grep -q "^init_from: 4 parameters loaded, 2 initialised" "$TMP/ft.out" || fail "init-from count"
echo "ok  init-from: $(grep '^init_from:' "$TMP/ft.out" | tail -1)"

# resume: auto skips a corrupt newest checkpoint with a warning, continues from the one before
cp -r "$TMP/a" "$TMP/b"
rm "$TMP/b/checkpoints"/best.*
printf 'garbage' | dd of="$TMP/b/checkpoints/ckpt-00000048.h5" bs=1 seek=1000 conv=notrunc 2>/dev/null
"$BIN/dltrain" train "$TMP/mlp.yaml" run_dir="$TMP/b" checkpoint.resume=auto >"$TMP/b.out" 2>"$TMP/b.err" || fail "resume auto"
grep -q "warning: skipping checkpoint: .*ckpt-00000048.h5: CRC32" "$TMP/b.err" || { cat "$TMP/b.err"; fail "no corrupt warning"; }
grep -q "^resumed from .*ckpt-00000044.h5: step 44" "$TMP/b.out" || fail "did not resume from step 44"
"$PY" - "$TMP/a/metrics.jsonl" "$TMP/b/metrics.jsonl" <<'PY'
import json, sys
a, b = ([json.loads(l) for l in open(p)] for p in sys.argv[1:])
assert [(r["step"], r["loss"]) for r in a] == [(r["step"], r["loss"]) for r in b], "resumed losses differ"
print("ok  corrupt newest checkpoint skipped; resumed losses identical")
PY

# a 1-rank checkpoint resumes on NP ranks (same global batch); another global batch is refused
$MPIRUN -np "$NP" "$BIN/dltrain" train "$TMP/mlp.yaml" run_dir="$TMP/c" \
    checkpoint.resume="$TMP/a/checkpoints/ckpt-00000044.h5" >"$TMP/c.out" || fail "resume on $NP ranks"
grep -q "^resumed from" "$TMP/c.out" || fail "no resume on $NP ranks"
echo "ok  1-rank checkpoint resumed on $NP ranks"
rc=0
"$BIN/dltrain" train "$TMP/mlp.yaml" run_dir="$TMP/d" train.batch_size=64 \
    checkpoint.resume="$TMP/a/checkpoints/ckpt-00000044.h5" >/dev/null 2>"$TMP/err" || rc=$?
[ $rc -ne 0 ] && grep -q "train.batch_size is 32 in the checkpoint but 64 in this run" "$TMP/err" ||
    { cat "$TMP/err"; fail "other global batch not refused"; }
echo "ok  $(cat "$TMP/err")"

# --dry-run: reports data split, model memory, ranks; writes nothing
$MPIRUN -np "$NP" "$BIN/dltrain" train "$TMP/mlp.yaml" --dry-run run_dir="$TMP/dry" train.batch_size=30 >"$TMP/dry.out" || fail "dry run"
for pat in "^dry run: ok" "train-00000.h5: [0-9]* samples" "+ 2 samples dropped each epoch" "per rank: 15 samples" \
    "^memory (MiB" "^rank 1: host" "optimizer steps per epoch"; do
    grep -q "$pat" "$TMP/dry.out" || { cat "$TMP/dry.out"; fail "dry run: no '$pat'"; }
done
[ ! -e "$TMP/dry" ] || fail "dry run created the run directory"
echo "ok  --dry-run"

# non-finite: stop names step, rank and layer; skip drops steps, max_skips in a row stop
grep -v batchnorm "$TMP/mlp.yaml" >"$TMP/nan.yaml"
rc=0
"$BIN/dltrain" train "$TMP/nan.yaml" run_dir="$TMP/nan" data.mean=[0] data.std=[1e-45] >/dev/null 2>"$TMP/err" || rc=$?
[ $rc -ne 0 ] && grep -q "step 0: the gradients are not finite (every rank's loss finite, grad norm nan; first non-finite gradient in backward order: layer 'fc1' (fc1.weight), 1 of 2 layers)" "$TMP/err" ||
    { cat "$TMP/err"; fail "nonfinite stop message"; }
echo "ok  $(cut -c1-150 "$TMP/err")..."
rc=0
"$BIN/dltrain" train "$TMP/nan.yaml" run_dir="$TMP/skip" data.mean=[0] data.std=[1e-45] train.nonfinite=skip \
    train.max_skips=3 >/dev/null 2>"$TMP/err" || rc=$?
[ $rc -ne 0 ] && [ "$(grep -c 'warning: step [0-9]* skipped' "$TMP/err")" -eq 2 ] &&
    grep -q "error: step 2: the gradients are not finite for 3 steps in a row (train.max_skips 3" "$TMP/err" ||
    { cat "$TMP/err"; fail "nonfinite skip"; }
echo "ok  train.nonfinite=skip: 2 skipped, the 3rd in a row stops"
