# Data parallelism changes nothing but the speed: 1 rank with global batch B
# and NP ranks with global batch B reach the same parameters after 20 steps.
. tests/integration/lib.sh
synthetic_data "$TMP/syn" 2048

for model in mlp cnn; do
    if [ $model = mlp ]; then
        layers='    - {type: flatten}
    - {type: dense, units: 64}
    - {type: tanh}
    - {type: dense, units: 10}'
    opt='type: sgd
  lr: 0.05
  momentum: 0.9'
    else
        layers='    - {type: conv2d, filters: 8, kernel: 5, padding: 2}
    - {type: relu}
    - {type: maxpool, size: 2}
    - {type: conv2d, filters: 8, kernel: 3, stride: 2, padding: 1}
    - {type: gelu}
    - {type: avgpool, size: 2}
    - {type: flatten}
    - {type: dense, units: 10}'
        opt='type: adam
  lr: 0.002'
    fi
    cat > "$TMP/$model.yaml" <<YAML
data:
  train: $TMP/syn/train-*.h5
  test: ""
model:
  loss: softmax_cross_entropy
  layers:
$layers
train:
  epochs: 5
  max_steps: 20
  batch_size: 48
optimizer:
  $opt
log:
  every: 10
YAML
    "$BIN/dltrain" train "$TMP/$model.yaml" run_dir="$TMP/$model-1" >/dev/null || fail "$model: 1 rank"
    $MPIRUN -np "$NP" "$BIN/dltrain" train "$TMP/$model.yaml" run_dir="$TMP/$model-$NP" >/dev/null ||
        fail "$model: $NP ranks"
    "$PY" - "$TMP/$model-1/model.h5" "$TMP/$model-$NP/model.h5" "$model" <<'PY'
import sys, h5py, numpy as np
a, b = h5py.File(sys.argv[1], "r"), h5py.File(sys.argv[2], "r")
def numeric(f):
    out = {}
    f.visititems(lambda k, v: out.__setitem__(k, v[()]) if isinstance(v, h5py.Dataset) and v.dtype.kind == "f" else None)
    return out
na, nb = numeric(a), numeric(b)
assert sorted(na) == sorted(nb) and len(na) > 0, (sorted(na), sorted(nb))
worst = 0.0
for k in na:
    x, y = na[k].astype(np.float64), nb[k].astype(np.float64)
    worst = max(worst, float(np.max(np.abs(x - y) / np.maximum(1.0, np.abs(x)), initial=0.0)))
assert worst <= 1e-5, f"{sys.argv[3]}: max relative difference {worst:.3g} > 1e-5"
print(f"ok  {sys.argv[3]}: 1 rank vs N ranks, max relative parameter difference {worst:.2g}")
PY
done
