# Bucketed, overlapped gradient reduction and gradient accumulation change
# nothing but the speed: 1, 2, 3 and 4 ranks, with and without accumulation,
# with buckets smaller than one layer and larger than the model, reach the
# parameters of 1 rank with the same global batch after 20 steps (max
# relative difference <= 1e-5). One run writes the overlap trace, and the
# first bucket's reduction must start before backward ends. SGD, not Adam:
# Adam would hide a wrongly scaled gradient.
. tests/integration/lib.sh
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

# run NAME NP ACCUM BUCKET_MB [key=value ...]: global batch 48 = ACCUM x batch_size
run() {
    name=$1 np=$2 k=$3 mb=$4
    shift 4
    if [ "$np" = 1 ]; then launch="$BIN/dltrain"; else launch="$MPIRUN -np $np $BIN/dltrain"; fi
    $launch train "$TMP/mlp.yaml" run_dir="$TMP/$name" train.batch_size=$((48 / k)) \
        train.accum_steps="$k" comm.bucket_mb="$mb" "$@" >"$TMP/$name.out" 2>&1 ||
        { cat "$TMP/$name.out" >&2; fail "$name: $np ranks, accum $k, buckets of $mb MiB"; }
}

# 0.01 MiB = 2621 floats: smaller than the first dense layer (50,240 floats);
# 0.001 MiB = 262 floats: smaller than every layer, so the first bucket is
# complete after the last dense layer's backward; 25 MiB: one bucket holding
# the whole model (52,650 floats)
run ref 1 1 25
run np1-acc2-small 1 2 0.01
run np2-small 2 1 0.001 comm.trace="$TMP/trace.jsonl"
run np2-acc2-big 2 2 25
run np3-big 3 1 25
run np3-acc2-small 3 2 0.01
run np4-small 4 1 0.01
run np4-acc4-big 4 4 25

grep -q "rank 1: host" "$TMP/np2-small.out" || fail "rank 0 did not print the rank table"

"$PY" - "$TMP" <<'PY'
import sys, json, h5py, numpy as np
tmp = sys.argv[1]
def params(path):
    """Every numeric dataset of a weights file, by path (the config text is skipped)."""
    out = {}
    def visit(name, obj):
        if isinstance(obj, h5py.Dataset) and obj.dtype.kind == "f":
            out[name] = obj[()].astype(np.float64)
    h5py.File(path, "r").visititems(visit)
    return out
ref = params(f"{tmp}/ref/model.h5")
# 3 dense layers x (weight, bias); optimizer state, when saved, is compared too
assert all(f"dense{i}.{p}" in ref for i in (1, 2, 3) for p in ("weight", "bias")), sorted(ref)
for name in ["np1-acc2-small", "np2-small", "np2-acc2-big", "np3-big", "np3-acc2-small",
             "np4-small", "np4-acc4-big"]:
    b = params(f"{tmp}/{name}/model.h5")
    assert sorted(ref) == sorted(b)
    worst = 0.0
    for k, x in ref.items():
        y = b[k]
        worst = max(worst, float(np.max(np.abs(x - y) / np.maximum(1.0, np.abs(x)))))
    assert worst <= 1e-5, f"{name}: max relative difference {worst:.3g} > 1e-5"
    print(f"ok  {name}: max relative parameter difference vs 1 rank {worst:.2g}")

comm = json.load(open(f"{tmp}/np2-small/comm.json"))
assert comm["grad_floats"] == 52650 and comm["bucket_floats"] == 262, comm
assert comm["buckets"] == -(-52650 // 262), comm
nb = comm["buckets"]
assert json.load(open(f"{tmp}/np2-acc2-big/comm.json"))["buckets"] == 1

steps = {}
for line in open(f"{tmp}/trace.jsonl"):
    e = json.loads(line)
    steps.setdefault(e["step"], []).append(e)
assert len(steps) == 20, f"trace has {len(steps)} steps"
for s, evs in steps.items():
    starts = [e["t"] for e in evs if e["event"] == "bucket_start"]
    end = [e["t"] for e in evs if e["event"] == "backward_end"][0]
    layers = [e for e in evs if e["event"] == "layer"]
    assert len(starts) == nb and len(layers) == 7, (s, len(starts), len(layers))
    assert min(starts) < end, f"step {s}: first bucket started at {min(starts)}, backward ended at {end}"
    # stronger: it starts before the first dense layer (layer 1) has finished its backward
    first_dense = [e["t"] for e in layers if e["layer"] == 1][0]
    assert min(starts) < first_dense, f"step {s}: first bucket at {min(starts)}, dense1 done at {first_dense}"
print(f"ok  overlap: the first of {nb} buckets starts before backward ends (and before the first "
      "layer's backward) in all 20 steps")
PY
