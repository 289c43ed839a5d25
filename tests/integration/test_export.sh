# ONNX export round trip: MLP, CNN (3 channels, per-channel normalisation),
# ResNet (batch norm, residual adds) and a model using the remaining
# translations (gelu, tanh, sigmoid, avgpool, dropout) train a few steps,
# `dltrain export` writes model.onnx plus check data (inputs and dltrain's own
# logits), and onnxruntime (PyPI; an independent runtime) must reproduce the
# logits to 1e-4 and the predicted classes exactly. A checkpoint of another
# model is refused with the missing dataset named.
. tests/integration/lib.sh
. tests/integration/pyenv.sh
ORTPY=$(pyenv_python)
synthetic_data "$TMP/g28" 256 1,28,28
synthetic_data "$TMP/c16" 256 3,16,16

common() { # common DATA_DIR: ends inside data:, so data keys may follow
    cat <<YAML
train:
  epochs: 1
  batch_size: 16
  max_steps: 6
optimizer:
  type: sgd
  lr: 0.05
  momentum: 0.9
log:
  every: 3
data:
  train: $1/train-*.h5
  test: $1/test-*.h5
YAML
}

{ common "$TMP/g28"; cat <<YAML; } >"$TMP/mlp.yaml"
  mean: [0.3]
  std: [0.25]
model:
  loss: softmax_cross_entropy
  layers:
    - {type: flatten}
    - {type: dense, name: fc1, units: 64}
    - {type: relu}
    - {type: dense, name: fc2, units: 10}
YAML
{ common "$TMP/c16"; cat <<YAML; } >"$TMP/cnn.yaml"
  mean: [0.4, 0.5, 0.6]
  std: [0.2, 0.25, 0.3]
model:
  loss: softmax_cross_entropy
  layers:
    - {type: conv2d, name: conv1, filters: 8, kernel: 5, padding: 2}
    - {type: relu}
    - {type: maxpool, size: 2}
    - {type: conv2d, name: conv2, filters: 8, kernel: 3, stride: 2, padding: 1, bias: false}
    - {type: relu}
    - {type: maxpool, size: 3, stride: 2, padding: 1}
    - {type: dense, name: fc, units: 10}
YAML
{ common "$TMP/g28"; cat <<YAML; } >"$TMP/resnet.yaml"
model:
  loss: softmax_cross_entropy
  layers:
    - {type: conv2d, name: stem, filters: 8, kernel: 3, padding: 1, bias: false}
    - {type: batchnorm, name: stem_bn}
    - {type: relu}
    - {type: resblock, name: block1, filters: 8}
    - {type: resblock, name: block2, filters: 16, stride: 2}
    - {type: global_avgpool}
    - {type: dense, name: fc, units: 10}
YAML
{ common "$TMP/c16"; cat <<YAML; } >"$TMP/misc.yaml"
model:
  loss: softmax_cross_entropy
  layers:
    - {type: conv2d, name: conv, filters: 6, kernel: 3, padding: 1}
    - {type: gelu}
    - {type: avgpool, size: 3, stride: 2, padding: 1}
    - {type: tanh}
    - {type: flatten}
    - {type: dropout, rate: 0.3}
    - {type: dense, name: fc1, units: 24}
    - {type: sigmoid}
    - {type: batchnorm, name: bn}
    - {type: dense, name: fc2, units: 10, bias: false}
YAML

for m in mlp cnn resnet misc; do
    $MPIRUN -np "$NP" "$BIN/dltrain" train "$TMP/$m.yaml" run_dir="$TMP/$m" >"$TMP/$m.out" ||
        { cat "$TMP/$m.out"; fail "$m: training"; }
    "$BIN/dltrain" export "$TMP/$m.yaml" ckpt="$TMP/$m/model.h5" out="$TMP/$m.onnx" check="$TMP/$m.check.h5" \
        >"$TMP/$m.exp" 2>&1 || { cat "$TMP/$m.exp"; fail "$m: export"; }
    "$ORTPY" - "$m" "$TMP/$m.onnx" "$TMP/$m.check.h5" <<'PY' || fail "$m: onnxruntime disagrees with dltrain"
import sys
import h5py
import numpy as np
import onnxruntime as ort
name, model, check = sys.argv[1:]
with h5py.File(check) as f:
    x, want, labels = f["input"][()], f["logits"][()], f["labels"][()]
assert x.dtype == np.float32 and x.ndim == 4 and len(x) >= 8, (x.dtype, x.shape)
assert np.all((x >= 0) & (x <= 1)), "inputs are pixels in [0, 1]"
sess = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
(inp,), (out,) = sess.get_inputs(), sess.get_outputs()
assert inp.name == "input" and out.name == "logits", (inp.name, out.name)
got = sess.run(None, {"input": x})[0]
assert got.shape == want.shape, (got.shape, want.shape)
diff = float(np.max(np.abs(got - want)))
assert np.std(want) > 1e-3, "degenerate logits"
assert diff <= 1e-4, f"max |logits difference| {diff:.3g}"
assert (got.argmax(1) == want.argmax(1)).all()
# the batch dimension is symbolic: one sample alone gives the same logits
one = sess.run(None, {"input": x[:1]})[0]
assert np.max(np.abs(one - want[:1])) <= 1e-4
print(f"ok  {name}: onnxruntime {ort.__version__} matches dltrain's logits on {len(x)} samples "
      f"(max |diff| {diff:.2g})")
PY
done

# a full training checkpoint (when the run wrote one) exports like model.h5
ck=$(ls "$TMP/cnn"/checkpoints/*.h5 2>/dev/null | head -n 1 || true)
if [ -n "$ck" ]; then
    "$BIN/dltrain" export "$TMP/cnn.yaml" ckpt="$ck" out="$TMP/cnn_ck.onnx" >/dev/null || fail "export from $ck"
    "$ORTPY" -c 'import sys, onnxruntime as ort, h5py, numpy as np
f = h5py.File(sys.argv[2]); x, want = f["input"][()], f["logits"][()]
got = ort.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
assert np.max(np.abs(got - want)) <= 1e-4' "$TMP/cnn_ck.onnx" "$TMP/cnn.check.h5" || fail "checkpoint export differs"
    echo "ok  export from the training checkpoint $(basename "$ck")"
fi

# weights of another model: refused, naming what is missing; no file left
"$BIN/dltrain" export "$TMP/cnn.yaml" ckpt="$TMP/mlp/model.h5" out="$TMP/wrong.onnx" 2>"$TMP/err" &&
    fail "export with another model's weights succeeded"
grep -q "model.h5: .*'.*'.*checkpoint of another model" "$TMP/err" || { cat "$TMP/err"; fail "error does not name the array"; }
[ ! -e "$TMP/wrong.onnx" ] || fail "a partial ONNX file was left"
"$BIN/dltrain" export "$TMP/cnn.yaml" out="$TMP/x.onnx" 2>"$TMP/err" && fail "export without ckpt= succeeded"
grep -q "usage: dltrain export" "$TMP/err" || fail "no usage line"
echo "ok  export"
