# dltrain eval: loss and accuracy equal the trainer's own final evaluation,
# the confusion matrix sums to the test set and its diagonal to the correct
# count, on 1 and NP ranks. dltrain predict: classes and probabilities for an
# HDF5 shard, a .npy (uint8 and float32) and a .pgm, all agreeing.
. tests/integration/lib.sh
synthetic_data "$TMP/syn" 512

cat > "$TMP/mlp.yaml" <<YAML
data:
  train: $TMP/syn/train-*.h5
  test: $TMP/syn/test-*.h5
  mean: [0.5]
  std: [0.25]
model:
  loss: softmax_cross_entropy
  layers:
    - {type: flatten}
    - {type: dense, name: fc1, units: 32}
    - {type: relu}
    - {type: dense, name: fc2, units: 10}
train:
  epochs: 2
  batch_size: 32
optimizer:
  lr: 0.05
log:
  every: 100
YAML
"$BIN/dltrain" train "$TMP/mlp.yaml" run_dir="$TMP/run" >/dev/null || fail "training run"

"$BIN/dltrain" eval "$TMP/mlp.yaml" ckpt="$TMP/run/model.h5" out="$TMP/e1.json" >"$TMP/eval.out" || fail "eval"
grep -q "^confusion matrix" "$TMP/eval.out" || { cat "$TMP/eval.out"; fail "no confusion matrix"; }
$MPIRUN -np "$NP" "$BIN/dltrain" eval "$TMP/mlp.yaml" ckpt="$TMP/run/model.h5" out="$TMP/e2.json" >/dev/null ||
    fail "eval on $NP ranks"
"$PY" - "$TMP/run/summary.json" "$TMP/e1.json" "$TMP/e2.json" <<'PY'
import json, sys
s, e1, e2 = (json.load(open(p)) for p in sys.argv[1:])
for e in (e1, e2):
    assert abs(e["loss"] - s["eval_loss"]) < 1e-5, (e["loss"], s["eval_loss"])
    assert abs(e["accuracy"] - s["eval_accuracy"]) < 1e-6, (e["accuracy"], s["eval_accuracy"])
    c = e["confusion"]
    assert sum(map(sum, c)) == e["samples"], "confusion total"
    assert abs(sum(c[i][i] for i in range(len(c))) / e["samples"] - e["accuracy"]) < 1e-6, "diagonal"
assert e1["confusion"] == e2["confusion"], "1 rank and N ranks disagree"
print("ok  eval = the trainer's evaluation (loss %.4f, accuracy %.4f), on 1 and N ranks" % (e1["loss"], e1["accuracy"]))
PY

"$BIN/dltrain" predict "$TMP/mlp.yaml" ckpt="$TMP/run/model.h5" input="$TMP/syn/test-00000.h5" >"$TMP/p_h5.out" ||
    fail "predict h5"
# the first 3 test images as .npy (uint8 and normalised float32) and the first as .pgm
"$PY" - "$TMP/syn/test-00000.h5" "$TMP" <<'PY'
import sys, h5py, numpy as np
x = h5py.File(sys.argv[1], "r")["images"][:3]
np.save(sys.argv[2] + "/x_u8.npy", x)
np.save(sys.argv[2] + "/x_f32.npy", ((x.astype(np.float32) / 255 - 0.5) / 0.25).astype(np.float32))
with open(sys.argv[2] + "/x0.pgm", "wb") as f:
    f.write(b"P5\n28 28\n255\n" + x[0, 0].tobytes())
PY
for f in x_u8.npy x_f32.npy x0.pgm; do
    "$BIN/dltrain" predict "$TMP/mlp.yaml" ckpt="$TMP/run/model.h5" input="$TMP/$f" >"$TMP/p_$f.out" || fail "predict $f"
done
"$PY" - "$TMP" "$TMP/e1.json" <<'PY'
import json, sys
d = sys.argv[1]
def rows(name):
    out = []
    for l in open(d + "/p_" + name + ".out"):
        head, probs = l.split(" probs ")
        p = [float(v) for v in probs.split()]
        out.append((int(head.split()[2]), p, head))
    return out
h5 = rows("h5")
e = json.load(open(sys.argv[2]))
assert len(h5) == e["samples"], "one line per sample"
correct = sum(1 for cls, p, head in h5 if " label %d" % cls in head)
assert correct == round(e["accuracy"] * e["samples"]), ("predict vs eval accuracy", correct)
for cls, p, head in h5:
    assert abs(sum(p) - 1) < 1e-3 and max(p) == p[cls], head
for name, n in (("x_u8.npy", 3), ("x_f32.npy", 3), ("x0.pgm", 1)):
    r = rows(name)
    assert len(r) == n, name
    for i in range(n):
        assert r[i][0] == h5[i][0], (name, i)
        assert max(abs(a - b) for a, b in zip(r[i][1], h5[i][1])) < 2e-4, (name, i)
print("ok  predict: h5 agrees with eval; .npy (uint8, float32) and .pgm agree with h5")
PY

rc=0
"$BIN/dltrain" predict "$TMP/mlp.yaml" ckpt="$TMP/run/model.h5" input="$TMP/x.txt" >/dev/null 2>"$TMP/err" || rc=$?
[ $rc -ne 0 ] && grep -q "unknown kind" "$TMP/err" || fail "predict: unknown input kind"
echo "ok  predict rejects $(cat "$TMP/err")"
