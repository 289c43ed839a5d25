# Start-up checks of a distributed run: ranks with a different config or
# binary, and a job started as singletons, end with one clear line.
. tests/integration/lib.sh
synthetic_data "$TMP/syn" 256

cat > "$TMP/c.yaml" <<YAML
data:
  train: $TMP/syn/train-*.h5
  test: ""
model:
  layers:
    - {type: flatten}
    - {type: dense, units: 10}
train:
  max_steps: 2
  batch_size: 16
  threads: 1
YAML

# expect_error WHAT PATTERN command...: fails non-zero with PATTERN on stderr
expect_error() {
    what=$1 pat=$2
    shift 2
    if "$@" >"$TMP/out" 2>"$TMP/err"; then fail "$what: exited 0"; fi
    grep -q "$pat" "$TMP/err" || { cat "$TMP/err" >&2; fail "$what: no '$pat' in the error"; }
    echo "ok  $what: $(grep -m1 "$pat" "$TMP/err")"
}

expect_error "different config" "rank 1 runs a different config than rank 0" \
    $MPIRUN -np 1 "$BIN/dltrain" train "$TMP/c.yaml" run_dir="$TMP/r1" : \
    -np 1 "$BIN/dltrain" train "$TMP/c.yaml" run_dir="$TMP/r1" optimizer.lr=0.2

cp "$BIN/dltrain" "$TMP/dltrain2"
printf 'x' >>"$TMP/dltrain2"
expect_error "different binary" "rank 1 runs a different binary" \
    $MPIRUN -np 1 "$BIN/dltrain" train "$TMP/c.yaml" run_dir="$TMP/r2" : \
    -np 1 "$TMP/dltrain2" train "$TMP/c.yaml" run_dir="$TMP/r2"

expect_error "singletons" "started as 3 singletons: launch with srun --mpi=pmix or mpirun" \
    env SLURM_NTASKS=3 "$BIN/dltrain" train "$TMP/c.yaml" run_dir="$TMP/r3"

# the same two ranks with the same config run
$MPIRUN -np 2 "$BIN/dltrain" train "$TMP/c.yaml" run_dir="$TMP/r4" >"$TMP/out" 2>&1 ||
    { cat "$TMP/out" >&2; fail "2 ranks with the same config"; }
grep -q "rank 0: host .*, local rank 0, device cpu" "$TMP/out" || fail "no rank table"
echo "ok  same config and binary: runs, rank table printed"
