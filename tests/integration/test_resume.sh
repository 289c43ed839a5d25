# Exact resume: a 2-rank run killed with kill -9 at a random step and resumed
# with checkpoint.resume=auto logs the same per-step losses, bit for bit, as
# an uninterrupted run (CPU, one thread per rank). Also: SIGTERM to one rank
# makes every rank stop at the next step boundary, write a checkpoint and
# exit 0; the resumed run then finishes with the same losses too.
. tests/integration/lib.sh
synthetic_data "$TMP/syn" 2048

cat > "$TMP/mlp.yaml" <<YAML
data:
  train: $TMP/syn/train-*.h5
  test: $TMP/syn/test-*.h5
model:
  loss: softmax_cross_entropy
  layers:
    - {type: flatten}
    - {type: dense, name: fc1, units: 384}
    - {type: relu}
    - {type: dropout, rate: 0.1}
    - {type: dense, name: fc2, units: 10}
train:
  epochs: 3
  batch_size: 64
  threads: 1
optimizer:
  type: adam
  lr: 0.001
log:
  every: 1
checkpoint:
  every_steps: 7
  keep: 2
YAML

run() { $MPIRUN -np "$NP" "$BIN/dltrain" train "$TMP/mlp.yaml" "$@"; }

# compare_losses REF RUN: every record of REF (train steps and evals) is in RUN, equal
compare_losses() {
    "$PY" - "$1" "$2" <<'PY'
import json, sys
a = [json.loads(l) for l in open(sys.argv[1])]
b = [json.loads(l) for l in open(sys.argv[2])]
key = lambda r: (r["split"], r["step"])
ka, kb = {key(r): r["loss"] for r in a}, {key(r): r["loss"] for r in b}
assert len(b) == len(kb), "duplicate records after resume: %d lines, %d steps" % (len(b), len(kb))
assert ka.keys() == kb.keys(), ("steps differ", sorted(set(ka) ^ set(kb))[:5])
bad = [k for k in ka if ka[k] != kb[k]]
assert not bad, ("losses differ at", bad[:5], [(ka[k], kb[k]) for k in bad[:3]])
print("ok  %d records identical" % len(ka))
PY
}

run run_dir="$TMP/ref" >/dev/null || fail "reference run"

# --- kill -9 of one rank at a random step, then resume: auto
target=$(( $(od -An -N2 -tu2 /dev/urandom) % 50 + 8 ))
# started directly (not through a function) so that $! is mpirun itself
$MPIRUN -np "$NP" "$BIN/dltrain" train "$TMP/mlp.yaml" run_dir="$TMP/kill" >"$TMP/kill.out" 2>&1 &
mpid=$!
i=0
lines() { { wc -l <"$1"; } 2>/dev/null || echo 0; }
while [ "$(lines "$TMP/kill/metrics.jsonl")" -lt "$target" ]; do
    i=$((i + 1))
    [ $i -lt 3000 ] || fail "run did not reach step $target"
    kill -0 $mpid 2>/dev/null || fail "run ended before step $target"
    sleep 0.01
done
child=$(pgrep -P $mpid | head -1)
[ -n "$child" ] || fail "no rank process under mpirun $mpid"
kill -9 "$child"
wait $mpid 2>/dev/null && fail "killed run exited 0"
killed_at=$(wc -l <"$TMP/kill/metrics.jsonl")
echo "ok  killed rank pid $child at step ~$killed_at (target $target)"
ls "$TMP/kill/checkpoints"/*.manifest >/dev/null 2>&1 || fail "no checkpoint before the kill"
run run_dir="$TMP/kill" checkpoint.resume=auto >"$TMP/resume.out" 2>&1 || { cat "$TMP/resume.out"; fail "resume"; }
grep -q "^resumed from .*ckpt-" "$TMP/resume.out" || fail "resume did not say where from"
compare_losses "$TMP/ref/metrics.jsonl" "$TMP/kill/metrics.jsonl"

# --- SIGTERM to one rank: all stop at the next step boundary, checkpoint, exit 0
$MPIRUN -np "$NP" "$BIN/dltrain" train "$TMP/mlp.yaml" run_dir="$TMP/term" checkpoint.every_steps=0 >"$TMP/term.out" 2>&1 &
mpid=$!
while [ "$(lines "$TMP/term/metrics.jsonl")" -lt 5 ]; do
    kill -0 $mpid 2>/dev/null || fail "run ended before step 5"
    sleep 0.01
done
kill -TERM "$(pgrep -P $mpid | tail -1)"
rc=0
wait $mpid || rc=$?
[ $rc -eq 0 ] || { cat "$TMP/term.out"; fail "SIGTERM: exit status $rc"; }
grep -q "^stopped by a signal at step [0-9]*: checkpoint .*ckpt-" "$TMP/term.out" || { cat "$TMP/term.out"; fail "no stop line"; }
[ ! -f "$TMP/term/model.h5" ] || fail "a stopped run must not write the final model"
echo "ok  SIGTERM: $(grep '^stopped' "$TMP/term.out")"
run run_dir="$TMP/term" checkpoint.resume=auto >/dev/null 2>&1 || fail "resume after SIGTERM"
compare_losses "$TMP/ref/metrics.jsonl" "$TMP/term/metrics.jsonl"

# --- SIGUSR1 to mpirun (what Slurm's --signal=B:USR1@120 reaches): forwarded, same outcome
$MPIRUN -np "$NP" "$BIN/dltrain" train "$TMP/mlp.yaml" run_dir="$TMP/usr1" >"$TMP/usr1.out" 2>&1 &
mpid=$!
while [ "$(lines "$TMP/usr1/metrics.jsonl")" -lt 5 ]; do
    kill -0 $mpid 2>/dev/null || fail "run ended before step 5"
    sleep 0.01
done
kill -USR1 $mpid
rc=0
wait $mpid || rc=$?
[ $rc -eq 0 ] || { cat "$TMP/usr1.out"; fail "SIGUSR1: exit status $rc"; }
grep -q "^stopped by a signal" "$TMP/usr1.out" || fail "SIGUSR1: no checkpoint"
echo "ok  SIGUSR1 to mpirun: $(grep '^stopped' "$TMP/usr1.out")"
