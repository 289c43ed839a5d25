# A plain start (no mpirun) and mpirun -np 1 both train, and the run directory
# holds the resolved config, metrics.jsonl with the required fields, and the weights.
. tests/integration/lib.sh
synthetic_data "$TMP/syn" 512

small_mlp_yaml "$TMP/mlp.yaml" 4

"$BIN/dltrain" --help | grep -q "train CONFIG" || fail "--help"
"$BIN/dltrain" config --help | grep -q "optimizer.lr" || fail "config --help lists keys"

"$BIN/dltrain" train "$TMP/mlp.yaml" run_dir="$TMP/plain" >"$TMP/out" || fail "plain dltrain"
grep -q "^epoch 1 step 4 loss" "$TMP/out" || { cat "$TMP/out"; fail "no progress line"; }
grep -q "^done:" "$TMP/out" || fail "no summary line"
$MPIRUN -np 1 "$BIN/dltrain" train "$TMP/mlp.yaml" run_dir="$TMP/np1" >/dev/null || fail "mpirun -np 1"

for d in plain np1; do
    for f in config.yaml metrics.jsonl model.h5 summary.json; do
        [ -s "$TMP/$d/$f" ] || fail "$d/$f missing"
    done
done
# The resolved config is itself a valid config.
"$BIN/dltrain" train "$TMP/plain/config.yaml" run_dir="$TMP/again" train.max_steps=2 >/dev/null ||
    fail "resolved config.yaml does not load"

"$PY" - "$TMP/plain/metrics.jsonl" "$TMP/np1/metrics.jsonl" <<'PY'
import json, sys
for path in sys.argv[1:]:
    recs = [json.loads(l) for l in open(path)]
    train = [r for r in recs if r["split"] == "train"]
    evals = [r for r in recs if r["split"] == "eval"]
    assert len(evals) == 2, (path, "one eval per epoch", evals)
    for r in train:
        for k in ("step", "epoch", "split", "loss", "samples_per_s", "accuracy"):
            assert k in r, (path, k, r)
    for r in evals:
        for k in ("step", "epoch", "loss", "accuracy"):
            assert k in r, (path, k, r)
    assert train[-1]["loss"] < train[0]["loss"], (path, "loss must fall")
a = [json.loads(l) for l in open(sys.argv[1])]
b = [json.loads(l) for l in open(sys.argv[2])]
# same seed, same world size: the same losses
assert [r["loss"] for r in a] == [r["loss"] for r in b], "plain and mpirun -np 1 differ"
print("ok  metrics.jsonl fields, loss falls, plain == mpirun -np 1")
PY

# Early stopping: a min_delta no epoch can beat stops the run after patience + 1 evaluations.
"$BIN/dltrain" train "$TMP/mlp.yaml" run_dir="$TMP/early" train.epochs=10 early_stopping.metric=loss \
    early_stopping.patience=2 early_stopping.min_delta=100 >"$TMP/out" || fail "early stopping run"
grep -q "^early stopping: eval loss has not improved for 2 epochs" "$TMP/out" || { cat "$TMP/out"; fail "no early stop"; }
[ "$(json_get "$TMP/early/summary.json" epochs)" = 3 ] || fail "early stopping: expected 3 epochs"
echo "ok  early stopping after patience"

# MSE on one-hot labels with dropout also trains (the Keras-style regression set-up).
sed -e 's/softmax_cross_entropy/mse/' -e 's/    - {type: relu}/    - {type: relu}\n    - {type: dropout, rate: 0.2}/' \
    "$TMP/mlp.yaml" >"$TMP/mse.yaml"
"$BIN/dltrain" train "$TMP/mse.yaml" run_dir="$TMP/mse" train.epochs=3 >/dev/null || fail "mse run"
"$PY" - "$TMP/mse/metrics.jsonl" <<'PY'
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1]) if '"train"' in l]
assert "accuracy" not in recs[0], "mse runs report no accuracy"
assert recs[-1]["loss"] < 0.8 * recs[0]["loss"], ("mse loss must fall", recs[0]["loss"], recs[-1]["loss"])
print("ok  mse loss falls")
PY
