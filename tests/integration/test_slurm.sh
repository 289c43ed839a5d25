# Slurm: a real single-node cluster on localhost (scripts/slurm-local.sh)
# runs the ready sbatch script (launcher/slurm/dltrain.sbatch) as a 2-task
# job and `srun -n 2 --mpi=pmix dltrain train`; both must train with 2
# ranks. Then the failure cases under srun: an error and a hang on rank 1
# end the step non-zero within comm.timeout_s (+ grace), with the message,
# and leave no process behind. Skipped (exit 0, with a SKIP line) where
# Slurm is not installed or we are not root.
. tests/integration/lib.sh
if [ "$(id -u)" -ne 0 ] || [ ! -x /usr/sbin/slurmctld ] || [ ! -x /usr/sbin/munged ]; then
    echo "SKIP test_slurm: needs root and the slurm-wlm and munge packages (scripts/install-deps.sh)"
    exit 0
fi
# mpirun's settings must not leak into srun's tasks
unset OMPI_MCA_rmaps_base_oversubscribe

synthetic_data "$TMP/syn" 256
cat > "$TMP/mlp.yaml" <<YAML
data:
  train: $TMP/syn/train-*.h5
  test: $TMP/syn/test-*.h5
model:
  layers:
    - {type: flatten}
    - {type: dense, units: 16}
    - {type: relu}
    - {type: dense, units: 10}
train:
  epochs: 2
  batch_size: 32
  threads: 1
comm:
  timeout_s: 5
log:
  every: 4
YAML

SL="$TMP/slurm"
# stop the daemons on every way out, a signal included
trap 'sh scripts/slurm-local.sh stop "$SL"; rm -rf "$TMP"' EXIT
trap 'exit 143' TERM INT HUP
conf=$(sh scripts/slurm-local.sh start "$SL") || fail "scripts/slurm-local.sh start"
eval "$conf"

# sbatch of the shipped script, shrunk to this machine: 1 node, 2 tasks,
# no GPUs (--gres=none overrides the script's gpu request).
DLTRAIN="$BIN/dltrain" timeout 120 sbatch --wait --quiet --nodes=1 --ntasks-per-node=2 --cpus-per-task=1 \
    --gres=none --time=5 -o "$TMP/sbatch.out" launcher/slurm/dltrain.sbatch "$TMP/mlp.yaml" run_dir="$TMP/sb" ||
    { cat "$TMP/sbatch.out"; fail "sbatch --wait of launcher/slurm/dltrain.sbatch"; }
grep -q "2 ranks" "$TMP/sbatch.out" || { cat "$TMP/sbatch.out"; fail "sbatch job did not run 2 ranks"; }
grep -q "^done:" "$TMP/sbatch.out" || { cat "$TMP/sbatch.out"; fail "sbatch job did not finish"; }
[ "$(json_get "$TMP/sb/summary.json" world)" = 2 ] || fail "sbatch: summary.json world != 2"
echo "ok  sbatch --wait dltrain.sbatch: 2 tasks trained"

timeout 120 srun -n 2 --mpi=pmix --kill-on-bad-exit "$BIN/dltrain" train "$TMP/mlp.yaml" run_dir="$TMP/sr" \
    >"$TMP/srun.out" 2>&1 || { cat "$TMP/srun.out"; fail "srun -n 2 dltrain train"; }
grep -q "2 ranks" "$TMP/srun.out" || { cat "$TMP/srun.out"; fail "srun: not 2 ranks"; }
# the same seed and world size under mpirun gives the same losses
$MPIRUN -np 2 "$BIN/dltrain" train "$TMP/mlp.yaml" run_dir="$TMP/mr" >/dev/null || fail "mpirun reference run"
"$PY" - "$TMP/sr/metrics.jsonl" "$TMP/mr/metrics.jsonl" <<'PY' || fail "srun and mpirun runs differ"
import json, sys
a, b = ([json.loads(l)["loss"] for l in open(p)] for p in sys.argv[1:])
assert len(a) > 2 and a == b, (a, b)
PY
echo "ok  srun -n 2 --mpi=pmix: trains, same losses as mpirun -np 2"

# srun_fault NAME FAULT: the 2-task step with DLTRAIN_FAULT; output in
# $TMP/NAME.out, seconds in $took.
srun_fault() {
    t0=$(date +%s.%N)
    rc=0
    DLTRAIN_FAULT="$2" timeout 60 srun -n 2 --mpi=pmix --kill-on-bad-exit "$BIN/dltrain" train "$TMP/mlp.yaml" \
        run_dir="$TMP/f-$1" >"$TMP/$1.out" 2>&1 || rc=$?
    took=$("$PY" -c "import sys; print(round(float(sys.argv[2]) - float(sys.argv[1]), 1))" "$t0" "$(date +%s.%N)")
    [ "$rc" -ne 0 ] || { cat "$TMP/$1.out"; fail "srun $1: exited 0"; }
    [ "$rc" -ne 124 ] || { cat "$TMP/$1.out"; fail "srun $1: hung (killed by timeout 60)"; }
    "$PY" -c "import sys; sys.exit(float(sys.argv[1]) > 20)" "$took" || { cat "$TMP/$1.out"; fail "srun $1: took $took s"; }
    sleep 0.3
    if pgrep -f "run_dir=$TMP/f-$1" >/dev/null; then
        pgrep -af "run_dir=$TMP/f-$1" >&2
        fail "srun $1: processes left behind"
    fi
}
srun_fault error "rank:1,step:3,error"
grep -q "dltrain: error: rank 0: rank 1 failed" "$TMP/error.out" || { cat "$TMP/error.out"; fail "srun error: rank 0 does not name rank 1"; }
echo "ok  srun: error on rank 1 ends the step in $took s, rank 0 names it"
srun_fault hang "rank:1,step:3,hang"
grep -q "rank 0: timeout: .* within 5 s" "$TMP/hang.out" || { cat "$TMP/hang.out"; fail "srun hang: no timeout message"; }
grep -q "no word from rank 1" "$TMP/hang.out" || { cat "$TMP/hang.out"; fail "srun hang: rank 1 not named"; }
echo "ok  srun: hung rank 1 ends the step in $took s, rank 0 says where it waited"
srun_fault kill "rank:1,step:3,kill"
grep -q "task 1: Killed" "$TMP/kill.out" || { cat "$TMP/kill.out"; fail "srun kill: rank 1 not named"; }
echo "ok  srun: kill -9 of rank 1 ends the step in $took s, srun names task 1"
