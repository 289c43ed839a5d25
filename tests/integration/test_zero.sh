# ZeRO-1 (comm.zero=1) changes memory, not results: 2 and 3 ranks with the
# optimizer state sharded reach the parameters of 1 rank after 20 steps
# (max relative difference <= 1e-5 with SGD + momentum; <= 1e-4 with Adam,
# whose division by sqrt(v) magnifies summation-order noise, see
# docs/decisions.md), with gradient accumulation, with buckets smaller than
# one layer (the shards are pieces of every bucket) and with one bucket,
# with gradient-norm clipping active (the global norm from the shards), and
# non-finite gradients are skipped and stop the run alike on every rank. The
# communication thread changes no bit. Checkpoints hold the full state: one
# written by 2 ZeRO ranks resumes on 1 rank without ZeRO and logs the same
# loss as the uninterrupted run; one written by 1 rank resumes on 3 ZeRO
# ranks. The optimizer state per rank is about 1/P of the whole.
. tests/integration/lib.sh
equiv_setup
run() { equiv_run "$@"; }
ADAM="optimizer.type=adam optimizer.lr=0.001"
CLIP="optimizer.clip_norm=0.2"

# 0.001 MiB = 262 floats: smaller than every layer; 0.01 MiB = 2621 floats:
# smaller than the first dense layer; 25 MiB: one bucket of the whole model
run ref 1 1 25
run ref-adam 1 1 25 $ADAM
run ref-clip 1 1 25 $CLIP
run z2-small 2 1 0.001 comm.zero=1
DLT_COMM_THREAD=0 run z2-small-inline 2 1 0.001 comm.zero=1
run z3-acc2-small 3 2 0.01 comm.zero=1
run z3-big 3 1 25 comm.zero=1
run z2-adam 2 1 0.01 comm.zero=1 $ADAM
run z3-adam-acc2 3 2 0.001 comm.zero=1 $ADAM
run z3-clip 3 1 0.01 comm.zero=1 $CLIP

# checkpoints: written at step 10 by 2 ZeRO ranks, resumed by 1 plain rank;
# and the other way round
run zc2 2 1 0.01 comm.zero=1 checkpoint.every_steps=10
run resume-plain 1 1 25 checkpoint.resume="$TMP/zc2/checkpoints/ckpt-00000010.h5"
grep -q "resumed from .*ckpt-00000010.h5: step 10" "$TMP/resume-plain.out" || fail "resume-plain did not resume"
run plain-ckpt 1 1 25 checkpoint.every_steps=10
run resume-zero 3 1 0.001 comm.zero=1 checkpoint.resume="$TMP/plain-ckpt/checkpoints/ckpt-00000010.h5"

# non-finite gradients: the norm from the shards is global, so every rank
# skips the same steps and all stop together (no hang, one message)
rc=0
timeout 120 $MPIRUN -np 3 "$BIN/dltrain" train "$TMP/mlp.yaml" run_dir="$TMP/nan" comm.zero=1 comm.bucket_mb=0.01 \
    data.mean=[0] data.std=[1e-45] train.nonfinite=skip train.max_skips=3 >/dev/null 2>"$TMP/nan.err" || rc=$?
[ $rc -ne 0 ] && [ $rc -ne 124 ] && [ "$(grep -c 'warning: step [0-9]* skipped' "$TMP/nan.err")" -eq 2 ] &&
    grep -q "error: step 2: the gradients are not finite for 3 steps in a row" "$TMP/nan.err" ||
    { cat "$TMP/nan.err"; fail "ZeRO: non-finite gradients not skipped/stopped alike on every rank (rc $rc)"; }
echo "ok  ZeRO: non-finite gradients skipped twice, then every rank stops at step 2"

# The first non-finite layer is agreed over the shards: a NaN in rank 1's
# input at step 2 (DLTRAIN_FAULT nan; ReLU hides it from the loss) leaves
# the other ranks' local gradients finite, and with one bucket rank 2's
# piece lies wholly in dense1, so a rank scanning alone would name dense1
# (or nothing) where the gradient first turns non-finite in dense2. Under
# fault injection every rank prints the stop message: all three must name
# the layer the replicated run names, a layer of the model.
first_bad() { # first_bad NAME ZERO: the layers named by each rank's stop message, one a line
    rc=0
    DLTRAIN_FAULT=rank:1,step:2,nan timeout 120 $MPIRUN -np 3 "$BIN/dltrain" train "$TMP/mlp.yaml" \
        run_dir="$TMP/$1" comm.zero="$2" comm.bucket_mb=25 train.nonfinite=stop >"$TMP/$1.out" 2>&1 || rc=$?
    [ $rc -ne 0 ] && [ $rc -ne 124 ] || { cat "$TMP/$1.out"; fail "$1: a NaN on rank 1 did not stop the run (rc $rc)"; }
    sed -n "s/^dltrain: \(rank [0-9]*: \)\{0,1\}error: step 2: .*first non-finite gradient in backward order: layer '\([^']*\)'.*/\2/p" \
        "$TMP/$1.out"
}
ref=$(first_bad nan-replicated 0 | sort -u)
got=$(first_bad nan-zero 1)
[ "$(echo "$got" | wc -l)" -eq 3 ] && [ "$(echo "$got" | sort -u)" = "$ref" ] && [ "$ref" = dense2 ] &&
    grep -q "^$ref  *dense " "$TMP/nan-zero.out" ||
    { cat "$TMP/nan-zero.out"; fail "ZeRO: ranks name '$(echo $got)' as the first non-finite layer, want '$ref' (dense2) on all 3"; }
echo "ok  ZeRO: all 3 ranks name the first non-finite layer alike ($ref), as the replicated run does"

"$PY" - "$TMP" <<'PY'
import sys, json, re, h5py, numpy as np
tmp = sys.argv[1]
def floats(path):
    """Every numeric dataset of a checkpoint, by path (optimizer state included)."""
    out = {}
    def visit(name, obj):
        if isinstance(obj, h5py.Dataset) and obj.dtype.kind == "f":
            out[name] = obj[()].astype(np.float64)
    h5py.File(path, "r").visititems(visit)
    return out
def worst(a, b):
    assert sorted(a) == sorted(b), (sorted(a), sorted(b))
    return max(float(np.max(np.abs(a[k] - b[k]) / np.maximum(1.0, np.abs(a[k])))) for k in a)

cases = [("ref", "z2-small", 1e-5), ("ref", "z3-acc2-small", 1e-5), ("ref", "z3-big", 1e-5),
         ("ref-adam", "z2-adam", 1e-4), ("ref-adam", "z3-adam-acc2", 1e-4), ("ref-clip", "z3-clip", 1e-5),
         ("ref", "zc2", 1e-5), ("ref", "resume-plain", 1e-5), ("ref", "resume-zero", 1e-5)]
for ref, name, tol in cases:
    a, b = floats(f"{tmp}/{ref}/model.h5"), floats(f"{tmp}/{name}/model.h5")
    # parameters and the optimizer state (gathered from the shards) alike
    assert any(k.startswith("optimizer/s1/") for k in a), sorted(a)
    w = worst(a, b)
    assert w <= tol, f"{name}: max relative difference vs {ref} {w:.3g} > {tol:g}"
    print(f"ok  {name}: max relative difference (parameters and optimizer state) vs {ref} {w:.2g}")

# the clipping case really clipped: the logged norm (before clipping) exceeds 0.2
norms = [json.loads(l)["grad_norm"] for l in open(f"{tmp}/z3-clip/metrics.jsonl")]
assert norms and min(norms) > 0.2, norms
ref_norms = [json.loads(l)["grad_norm"] for l in open(f"{tmp}/ref-clip/metrics.jsonl")]
assert np.allclose(norms, ref_norms, rtol=1e-5), (norms, ref_norms)
print(f"ok  clipping active: global gradient norms {norms} (1 rank: {ref_norms})")

a, b = floats(f"{tmp}/z2-small/model.h5"), floats(f"{tmp}/z2-small-inline/model.h5")
assert all(np.array_equal(a[k], b[k]) for k in a), "ZeRO: communication thread vs inline differ"
print("ok  ZeRO: communication thread bitwise equal to the inline path")

# resumed runs log the uninterrupted runs' loss at step 20
def losses(name):
    return {r["step"]: r["loss"] for r in map(json.loads, open(f"{tmp}/{name}/metrics.jsonl")) if r["split"] == "train"}
for run, ref in (("resume-plain", "zc2"), ("resume-zero", "plain-ckpt")):
    l, r = losses(run), losses(ref)
    assert 20 in l and abs(l[20] - r[20]) <= 1e-5 * abs(r[20]), (run, l, r)
    print(f"ok  {run}: step-20 loss {l[20]:.7f} continues {ref} ({r[20]:.7f})")

# optimizer state per rank: about 1/P of the whole; replicated without ZeRO
pat = re.compile(r"optimizer state: (\d+) bytes on rank 0 \(at most (\d+) per rank, (\d+) in all")
def state(name):
    m = pat.search(open(f"{tmp}/{name}.out").read())
    assert m, f"{name}: no optimizer state line"
    return [int(x) for x in m.groups()]
r0, most, whole = state("ref")
assert r0 == most == whole == 2 * 4 * 52650 // 2, (r0, most, whole)  # SGD momentum: one arena of 52,650 floats
for name, p in (("z2-small", 2), ("z3-acc2-small", 3), ("z3-big", 3), ("z2-adam", 2)):
    r0, most, whole = state(name)
    # the last rank also holds each bucket's remainder (< P floats)
    assert most <= 1.02 * whole / p, f"{name}: {most} bytes per rank of {whole} over {p} ranks"
    assert r0 >= 0.98 * whole / p, (name, r0, whole)
    print(f"ok  {name}: optimizer state {r0} bytes on rank 0, at most {most} per rank, of {whole} ({p} ranks)")
assert json.load(open(f"{tmp}/z2-small/comm.json"))["zero"] == 1
assert json.load(open(f"{tmp}/ref/comm.json"))["zero"] == 0
PY
