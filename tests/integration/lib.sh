# Shared set-up for the integration tests (sourced). BIN: the binaries; NP: ranks.
set -eu
BIN=${BIN:-$(pwd)/bin}
NP=${NP:-2}
PY=${PY:-/usr/bin/python3}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_rmaps_base_oversubscribe=1 OMPI_MCA_pml=ob1 OMPI_MCA_btl=self,vader
TMP=$(mktemp -d /tmp/dlt-it.XXXXXX)
trap 'rm -rf "$TMP"' EXIT
MPIRUN="mpirun --bind-to none"

fail() { echo "FAIL: $*" >&2; exit 1; }

# Real Fashion-MNIST, prepared once into data/fashion-mnist.
fashion_data() {
    [ -f data/fashion-mnist/train-00000.h5 ] || "$BIN/dlprep" fashion-mnist data/fashion-mnist >/dev/null
}

# A small synthetic image set: synthetic_data DIR N [C,H,W]
synthetic_data() {
    "$BIN/dlprep" synthetic "$1" --n "$2" --shape "${3:-1,28,28}" --classes 10 --seed 7 >/dev/null
}

# json_get FILE KEY: a field of a one-object JSON file
json_get() { "$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$1" "$2"; }

# params_match REF RUN [TOL]: every float dataset of weights file RUN equals
# REF's within relative difference TOL (default 1e-5); prints the worst one
params_match() {
    "$PY" - "$1" "$2" "${3:-1e-5}" <<'PY'
import sys, h5py, numpy as np
def params(path):
    out = {}
    h5py.File(path, "r").visititems(
        lambda k, o: out.__setitem__(k, o[()].astype(np.float64))
        if isinstance(o, h5py.Dataset) and o.dtype.kind == "f" else None)
    return out
a, b, tol = params(sys.argv[1]), params(sys.argv[2]), float(sys.argv[3])
assert a and sorted(a) == sorted(b), f"different parameters: {sorted(a)} vs {sorted(b)}"
worst = max(float(np.max(np.abs(a[k] - b[k]) / np.maximum(1.0, np.abs(a[k])))) for k in a)
assert worst <= tol, f"max relative parameter difference {worst:.3g} > {tol:g}"
print(f"{len(a)} arrays, max relative difference {worst:.2g}")
PY
}

# The rank-equivalence MLP (test_dist_equivalence, test_zero): 1024
# synthetic images, a 3-layer MLP, SGD + momentum, 20 steps of global
# batch 48. equiv_setup writes $TMP/mlp.yaml; then
# equiv_run NAME NP ACCUM BUCKET_MB [key=value ...] trains it into
# $TMP/NAME with batch_size 48 / ACCUM on NP ranks.
equiv_setup() {
    synthetic_data "$TMP/syn" 1024
    cat > "$TMP/mlp.yaml" <<YAML
data:
  train: $TMP/syn/train-*.h5
  test: ""
model:
  loss: softmax_cross_entropy
  layers:
    - {type: flatten}
    - {type: dense, units: 64}
    - {type: tanh}
    - {type: dense, units: 32}
    - {type: relu}
    - {type: dense, units: 10}
train:
  epochs: 2
  max_steps: 20
  batch_size: 48
  threads: 1
optimizer:
  type: sgd
  lr: 0.05
  momentum: 0.9
log:
  every: 10
YAML
}

equiv_run() {
    name=$1 np=$2 k=$3 mb=$4
    shift 4
    if [ "$np" = 1 ]; then launch="$BIN/dltrain"; else launch="$MPIRUN -np $np $BIN/dltrain"; fi
    $launch train "$TMP/mlp.yaml" run_dir="$TMP/$name" train.batch_size=$((48 / k)) \
        train.accum_steps="$k" comm.bucket_mb="$mb" "$@" >"$TMP/$name.out" 2>&1 ||
        { cat "$TMP/$name.out" >&2; fail "$name: $np ranks, accum $k, buckets of $mb MiB, $*"; }
}

# small_mlp_yaml FILE EVERY: a 2-layer MLP on $TMP/syn (train and test
# shards), SGD + momentum, 2 epochs of batch 32, a log line every EVERY steps
small_mlp_yaml() {
    cat > "$1" <<YAML
data:
  train: $TMP/syn/train-*.h5
  test: $TMP/syn/test-*.h5
model:
  loss: softmax_cross_entropy
  layers:
    - {type: flatten}
    - {type: dense, units: 32}
    - {type: relu}
    - {type: dense, units: 10}
train:
  epochs: 2
  batch_size: 32
optimizer:
  type: sgd
  lr: 0.05
  momentum: 0.9
log:
  every: $2
YAML
}
