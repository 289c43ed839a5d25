# Helpers of the token-model integration tests (sourced after lib.sh).

# unigram_baseline DIR TASK: the held-out unigram cross-entropy (nats) of the
# targets (lm: every non-[PAD] next token; mlm: every non-special token),
# with add-one smoothed training counts, and the most-frequent-target rate.
unigram_baseline() {
    "$PY" - "$1" "$2" <<'PY'
import sys, glob, h5py, numpy as np
d, task = sys.argv[1], sys.argv[2]
def rows(split):
    return np.concatenate([h5py.File(f, "r")["tokens"][()] for f in sorted(glob.glob(f"{d}/{split}-*.h5"))])
def targets(t):
    if task == "lm":
        nxt = np.concatenate([t[:, 1:], np.append(t[1:, 0], 0)[:, None]], axis=1)
        return nxt[nxt != 0]
    return t[t >= 5]
tr, te = targets(rows("train")), targets(rows("test"))
V = h5py.File(sorted(glob.glob(f"{d}/train-*.h5"))[0], "r")["tokens"].attrs["vocab_size"]
cnt = np.bincount(tr, minlength=V).astype(np.float64)
p = (cnt + 1) / (cnt.sum() + V)
print(f"{-np.log(p[te]).mean():.6f} {np.mean(te == cnt.argmax()):.6f}")
PY
}

# eval_of RUN_DIR KEY: the last eval record's loss or accuracy
eval_of() {
    "$PY" -c 'import json,sys; r=[json.loads(l) for l in open(sys.argv[1]+"/metrics.jsonl") if "\"eval\"" in l]; print(r[-1][sys.argv[2]])' "$1" "$2"
}

# same_params A.h5 B.h5 WHAT [TOL]: parameters equal to TOL (default 1e-5;
# carried LSTM state, sized by the local batch, is not a parameter and is
# skipped). Only the order of floating-point sums differs between the runs.
same_params() {
    "$PY" - "$1" "$2" "$3" "${4:-1e-5}" <<'PY'
import sys, h5py, numpy as np
a, b = h5py.File(sys.argv[1], "r"), h5py.File(sys.argv[2], "r")
keys = [k for k in a.keys() if isinstance(a[k], h5py.Dataset) and a[k].dtype.kind == "f" and not k.endswith(".state")]
assert keys and all(k in b for k in keys), "parameter names differ"
worst = 0.0
for k in keys:
    x, y = a[k][()].astype(np.float64), b[k][()].astype(np.float64)
    worst = max(worst, float(np.max(np.abs(x - y) / np.maximum(1.0, np.abs(x)))))
tol = float(sys.argv[4])
assert worst <= tol, f"{sys.argv[3]}: max relative difference {worst:.3g} > {tol:g}"
print(f"ok  {sys.argv[3]}: 1 rank vs N ranks, max relative parameter difference {worst:.2g}")
PY
}
