# GPU training checks, sourced by scripts/test-gpu.sh (`make test-gpu`) and
# scripts/gpu-run.sh (the lent machine). Needs D (directory holding dltrain,
# dlprep and libdltcuda.so) and W (an empty scratch directory) set.
#
#   gpu_parity    6 training steps of a small CNN (conv, batch norm, a
#                 resblock, a bottleneck, pooling, dense, GELU) from the
#                 same seed on the CPU and on the GPU (train.precision fp32,
#                 i.e. TF32 GEMMs): the logged losses must agree step by step
#                 (metrics.jsonl; plain python3) and, when h5py can be
#                 imported, every parameter of the final checkpoints too.
#   gpu_memcheck  compute-sanitizer memcheck on 2 GPU training steps of the
#                 same model; any error fails. Status 77 when
#                 compute-sanitizer cannot be found (nothing was checked).
#   gpu_sanitize_ops  compute-sanitizer memcheck, then racecheck (shared-
#                 memory hazards of the own kernels), over the op suite
#                 (test_cuda_ops in D); 77 without compute-sanitizer.
# Each returns 0 on success, 1 on failure.

GPU_PY=${PY:-python3}

gpu_parity_setup() {
    [ -f "$W/parity.yaml" ] && return 0
    "$D/dlprep" synthetic "$W/syn" --n 600 --shape 3,32,32 --classes 10 --test-n 0 >/dev/null || return 1
    cat >"$W/parity.yaml" <<YAML
data:
  train: $W/syn/train-*.h5
  test: ""
model:
  loss: softmax_cross_entropy
  layers:
    - {type: conv2d, filters: 16, kernel: 3, padding: 1, bias: false}
    - {type: batchnorm}
    - {type: relu}
    - {type: resblock, filters: 32, stride: 2}
    - {type: bottleneck, filters: 8, stride: 2}
    - {type: maxpool, size: 2}
    - {type: flatten}
    - {type: dense, units: 64}
    - {type: gelu}
    - {type: dense, units: 10}
train:
  epochs: 1
  max_steps: 6
  batch_size: 32
optimizer:
  type: adamw
  lr: 0.001
log:
  every: 1
  progress: plain
YAML
}

gpu_parity() {
    gpu_parity_setup || return 1
    for dev in cpu cuda; do
        "$D/dltrain" train "$W/parity.yaml" train.device=$dev train.precision=fp32 \
            run_dir="$W/run-$dev" || { echo "parity: the $dev run failed"; return 1; }
    done
    "$GPU_PY" - "$W/run-cpu" "$W/run-cuda" <<'PY'
import json, sys
def losses(d):
    return [r["loss"] for r in map(json.loads, open(d + "/metrics.jsonl")) if r["split"] == "train"]
a, b = losses(sys.argv[1]), losses(sys.argv[2])
assert len(a) == len(b) == 6, (a, b)
worst = max(abs(x - y) / max(1.0, abs(x)) for x, y in zip(a, b))
print("parity: losses cpu ", " ".join(f"{x:.5f}" for x in a))
print("parity: losses cuda", " ".join(f"{x:.5f}" for x in b))
print(f"parity: max relative loss difference over 6 steps: {worst:.3g} (limit 2e-2)")
ok = worst <= 2e-2
try:
    import h5py, numpy as np
except ImportError:
    print("parity: h5py not importable: parameters not compared (losses only)")
    sys.exit(0 if ok else 1)
fa, fb = h5py.File(sys.argv[1] + "/model.h5", "r"), h5py.File(sys.argv[2] + "/model.h5", "r")
def numeric(f):
    out = {}
    f.visititems(lambda k, v: out.__setitem__(k, v[()]) if isinstance(v, h5py.Dataset) and v.dtype.kind == "f" else None)
    return out
na, nb = numeric(fa), numeric(fb)
assert sorted(na) == sorted(nb) and na, "parameter sets differ"
pw = max(float(np.max(np.abs(na[k].astype(np.float64) - nb[k]) / np.maximum(1.0, np.abs(na[k])), initial=0.0)) for k in na)
print(f"parity: {len(na)} tensors, max relative parameter difference after 6 steps: {pw:.3g} (limit 2e-2)")
sys.exit(0 if ok and pw <= 2e-2 else 1)
PY
}

gpu_memcheck() {
    gpu_parity_setup || return 1
    cs=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null)
    [ -n "$cs" ] || { echo "memcheck: compute-sanitizer not found: SKIP"; return 77; }
    "$cs" --tool memcheck --error-exitcode 9 --leak-check no \
        "$D/dltrain" train "$W/parity.yaml" train.device=cuda train.max_steps=2 \
        run_dir="$W/run-memcheck"
}

gpu_sanitize_ops() {
    cs=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null)
    [ -n "$cs" ] || { echo "sanitize-ops: compute-sanitizer not found: SKIP"; return 77; }
    "$cs" --tool memcheck --error-exitcode 9 --leak-check no "$D/test_cuda_ops" "$D/libdltcuda.so" ||
        return 1
    "$cs" --tool racecheck --error-exitcode 9 "$D/test_cuda_ops" "$D/libdltcuda.so"
}
