# Logging a person uses: TensorBoard event files that TensorBoard's own
# reader (PyPI tensorboard, EventAccumulator) loads with every scalar equal
# to metrics.jsonl's; the live progress bar on a terminal (a pty) and plain
# lines otherwise; `dltrain plot` drawing a real PNG.
. tests/integration/lib.sh
. tests/integration/pyenv.sh
TBPY=$(pyenv_python)
synthetic_data "$TMP/syn" 384

small_mlp_yaml "$TMP/mlp.yaml" 3

# ---- not a terminal: plain lines, no carriage returns ----
$MPIRUN -np "$NP" "$BIN/dltrain" train "$TMP/mlp.yaml" run_dir="$TMP/run" >"$TMP/plain" ||
    { cat "$TMP/plain"; fail "training run"; }
grep -q "^epoch 1 step 3 loss [0-9.]* acc [0-9.]* lr [0-9.e-]* [0-9]* samples/s$" "$TMP/plain" ||
    { cat "$TMP/plain"; fail "no plain progress line"; }
grep -q "^epoch 2 eval loss [0-9.]* acc [0-9.]*$" "$TMP/plain" || fail "no plain eval line"
if grep -q "$(printf '\r')" "$TMP/plain"; then fail "carriage return in plain (non-terminal) output"; fi

# ---- TensorBoard reads the event file; every scalar equals metrics.jsonl ----
n_ev=$(ls "$TMP/run" | grep -c '^events\.out\.tfevents\.[0-9]\{10\}\.[^.]*.*\.[0-9]*\.[0-9]*$' || true)
[ "$n_ev" = 1 ] || { ls "$TMP/run"; fail "expected one events.out.tfevents.<10-digit time>.<host>.<pid>.<n> file, found $n_ev"; }
"$TBPY" - "$TMP/run" <<'PY' || fail "TensorBoard's reader disagrees with metrics.jsonl"
import json, math, os, sys
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
run = sys.argv[1]
recs = [json.loads(l) for l in open(os.path.join(run, "metrics.jsonl"))]
ea = EventAccumulator(run, size_guidance={"scalars": 0})
ea.Reload()
tags = set(ea.Tags()["scalars"])
want = {"train/loss", "train/accuracy", "train/lr", "train/samples_per_s", "train/data_wait",
        "train/grad_norm", "train/loss_scale", "eval/loss", "eval/accuracy"}
assert want <= tags, ("missing tags", want - tags)
checked = 0
for tag in sorted(want):
    split, key = tag.split("/")
    exp = [(r["step"], r[key] if key != "loss_scale" else 1.0) for r in recs if r["split"] == split]
    got = [(e.step, e.value) for e in ea.Scalars(tag)]
    assert [s for s, _ in got] == [s for s, _ in exp], (tag, "steps", got, exp)
    for (s, g), (_, w) in zip(got, exp):
        assert w is not None and math.isclose(g, w, rel_tol=2e-7, abs_tol=1e-9), (tag, s, g, w)
        checked += 1
# the time breakdown per logged step, when the trainer records one
for ph in ("data", "forward", "backward", "comm", "optimizer"):
    exp = [(r["step"], r["time_s"][ph]) for r in recs if "time_s" in r]
    if not exp:
        continue
    got = [(e.step, e.value) for e in ea.Scalars(f"time/{ph}_s")]
    assert [s for s, _ in got] == [s for s, _ in exp], (ph, got, exp)
    for (s, g), (_, w) in zip(got, exp):
        assert math.isclose(g, w, rel_tol=1e-5, abs_tol=1e-12), (ph, s, g, w)  # jsonl: %.6g
        checked += 1
n_train = sum(r["split"] == "train" for r in recs)
assert n_train >= 4 and checked >= 7 * n_train, (n_train, checked)
print(f"ok  TensorBoard reads {checked} scalars under {len(tags)} tags, all equal to metrics.jsonl")
PY

# ---- a terminal (pty): one redrawn line with bar, step/total, loss, acc, samples/s, ETA ----
"$PY" - "$TMP/tty" "$BIN/dltrain" train "$TMP/mlp.yaml" run_dir="$TMP/run_tty" <<'PY' || fail "pty run"
import os, pty, sys
out, argv = sys.argv[1], sys.argv[2:]
pid, fd = pty.fork()
if pid == 0:
    os.execv(argv[0], argv)
data = b""
while True:
    try:
        chunk = os.read(fd, 65536)
    except OSError:
        break
    if not chunk:
        break
    data += chunk
_, status = os.waitpid(pid, 0)
open(out, "wb").write(data)
sys.exit(os.waitstatus_to_exitcode(status))
PY
"$PY" - "$TMP/tty" <<'PY' || fail "no progress bar on a terminal"
import re, sys
text = open(sys.argv[1], "rb").read().decode()
redraws = text.count("\r\x1b[K") if "\x1b[K" in text else 0
bar = re.compile(r"\repoch (\d)/2 \[[=> ]+\] (\d+)/(\d+) loss [0-9.]+ acc [0-9.]+ \d+ samples/s ETA \d+:\d\d")
hits = bar.findall(text)
assert hits, text[-2000:]
assert {h[0] for h in hits} == {"1", "2"}, hits
assert any(h[1] == h[2] for h in hits), "the bar never reached step == total"
assert not re.search(r"(^|\n)epoch 1 step \d+ loss", text), "plain step lines on a terminal"
assert re.search(r"\nepoch 2 eval loss [0-9.]+ acc [0-9.]+", text.replace("\r\n", "\n")), "no eval line"
assert "done:" in text
print(f"ok  terminal: {len(hits)} bar redraws, plain lines otherwise")
PY

# ---- dltrain plot: a PNG with two panels of curves ----
"$BIN/dltrain" plot "$TMP/run" "$TMP/curves.png" >/dev/null || fail "dltrain plot"
"$PY" - "$TMP/curves.png" <<'PY' || fail "the plot is not a real picture"
import sys
import matplotlib.image as mpimg
import numpy as np
img = mpimg.imread(sys.argv[1])
assert img.shape[0] >= 300 and img.shape[1] >= 600, img.shape
colors = np.unique((img[..., :3] * 255).astype(np.uint8).reshape(-1, 3), axis=0)
assert len(colors) > 20, f"only {len(colors)} colours"
print(f"ok  dltrain plot: {img.shape[1]}x{img.shape[0]} PNG, {len(colors)} colours")
PY
"$BIN/dltrain" plot "$TMP/nonexistent" 2>"$TMP/err" && fail "plot of a missing run succeeded"
grep -q "metrics.jsonl" "$TMP/err" || { cat "$TMP/err"; fail "plot error does not name metrics.jsonl"; }
echo "ok  logging"
