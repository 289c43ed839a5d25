# Failures never hang: in a 3-rank mpirun job, rank 1 is killed (-9),
# crashes, hangs, or fails with an error at step 3 (DLTRAIN_FAULT). Every
# time the job must end non-zero well within comm.timeout_s (5 s here) plus
# the grace period, the output must name what happened (rank 1, and for a
# hang each survivor's position), and no process may be left behind.
. tests/integration/lib.sh
synthetic_data "$TMP/syn" 384

cat > "$TMP/mlp.yaml" <<YAML
data:
  train: $TMP/syn/train-*.h5
model:
  layers:
    - {type: flatten}
    - {type: dense, units: 16}
    - {type: relu}
    - {type: dense, units: 10}
train:
  epochs: 1
  batch_size: 24
  threads: 1
comm:
  timeout_s: 5
log:
  every: 100
YAML

# run_fault NAME FAULT: runs the 3-rank job with DLTRAIN_FAULT=FAULT; leaves
# the output in $TMP/NAME.out and the seconds it took in $took.
run_fault() {
    t0=$(date +%s.%N)
    rc=0
    DLTRAIN_FAULT="$2" timeout 60 $MPIRUN -np 3 "$BIN/dltrain" train "$TMP/mlp.yaml" run_dir="$TMP/run-$1" \
        >"$TMP/$1.out" 2>&1 || rc=$?
    took=$("$PY" -c "import sys; print(round(float(sys.argv[2]) - float(sys.argv[1]), 1))" "$t0" "$(date +%s.%N)")
    [ "$rc" -ne 0 ] || { cat "$TMP/$1.out"; fail "$1: the job exited 0"; }
    [ "$rc" -ne 124 ] || { cat "$TMP/$1.out"; fail "$1: the job hung (killed by timeout 60)"; }
    # timeout 5 s + grace 1.25 s + MPI teardown; far below 60
    "$PY" -c "import sys; sys.exit(float(sys.argv[1]) > 20)" "$took" || { cat "$TMP/$1.out"; fail "$1: took $took s"; }
    sleep 0.3
    if pgrep -f "run_dir=$TMP/run-$1" >/dev/null; then
        pgrep -af "run_dir=$TMP/run-$1" >&2
        fail "$1: processes left behind"
    fi
}

expect() { # expect NAME PATTERN: the output of run NAME contains PATTERN
    grep -q -- "$2" "$TMP/$1.out" || { cat "$TMP/$1.out"; fail "$1: no '$2' in the output"; }
}

run_fault kill "rank:1,step:3,kill"
expect kill "rank 1"
echo "ok  kill -9 of rank 1: job ended in $took s, rank 1 named"

run_fault crash "rank:1,step:3,crash"
expect crash "rank 1"
echo "ok  crash of rank 1: job ended in $took s"

run_fault error "rank:1,step:3,error"
expect error "dltrain: error: rank 1: injected fault (DLTRAIN_FAULT): error at step 3"
expect error "dltrain: error: rank 0: rank 1 failed (at its step 3, phase data"
expect error "dltrain: error: rank 2: rank 1 failed"
if grep -q "no word from" "$TMP/error.out"; then cat "$TMP/error.out"; fail "error: a rank did not answer"; fi
echo "ok  error on rank 1: ranks 0 and 2 name it, job ended in $took s"

run_fault hang "rank:1,step:3,hang"
# each survivor either timed out itself or heard first that the other one
# did; both messages say where it was waiting
for r in 0 2; do
    grep -q "dltrain: error: rank $r: timeout: .* did not complete within 5 s (comm.timeout_s) at step 3, phase allreduce" \
        "$TMP/hang.out" ||
        grep -q "dltrain: error: rank $r: rank [02] timed out .*stopped waiting in .* at step 3, phase allreduce" \
            "$TMP/hang.out" || { cat "$TMP/hang.out"; fail "hang: rank $r does not say where it is"; }
done
expect hang "timeout: .* did not complete within 5 s"
expect hang "no word from rank 1: dead or hung"
"$PY" -c "import sys; sys.exit(float(sys.argv[1]) < 5)" "$took" || fail "hang: ended before the timeout ($took s)"
echo "ok  hung rank 1: ranks 0 and 2 time out where they are, name rank 1, job ended in $took s"

# No fault: the same job still succeeds (the guard costs nothing visible).
$MPIRUN -np 3 "$BIN/dltrain" train "$TMP/mlp.yaml" run_dir="$TMP/run-ok" >"$TMP/ok.out" 2>&1 ||
    { cat "$TMP/ok.out"; fail "the job without a fault failed"; }
echo "ok  the same job without a fault succeeds"
