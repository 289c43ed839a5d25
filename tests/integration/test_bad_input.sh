# Bad input: each case must exit non-zero with exactly one line on stderr that
# names the offending key / file.
. tests/integration/lib.sh
synthetic_data "$TMP/syn" 256
synthetic_data "$TMP/syn3" 64 3,32,32

cat > "$TMP/base.yaml" <<YAML
data:
  train: $TMP/syn/train-*.h5
  test: $TMP/syn/test-*.h5
model:
  input: [1, 28, 28]
  loss: softmax_cross_entropy
  layers:
    - {type: flatten}
    - {type: dense, units: 10}
train:
  epochs: 1
  batch_size: 32
log:
  every: 1000
YAML

# expect_error NAME PATTERN dltrain-args...
expect_error() {
    name=$1 pat=$2
    shift 2
    rc=0
    "$BIN/dltrain" train "$@" run_dir="$TMP/run-$name" >"$TMP/out" 2>"$TMP/err" || rc=$?
    [ $rc -ne 0 ] || fail "$name: exit status 0"
    lines=$(wc -l <"$TMP/err")
    [ "$lines" -eq 1 ] || { cat "$TMP/err" >&2; fail "$name: $lines lines on stderr, expected 1"; }
    grep -q -- "$pat" "$TMP/err" || { cat "$TMP/err" >&2; fail "$name: stderr does not match '$pat'"; }
    echo "ok  $name: $(cat "$TMP/err")"
}

sed 's/  epochs: 1/  epochs: 1\n  epochz: 2/' "$TMP/base.yaml" >"$TMP/unknown.yaml"
expect_error unknown-key "unknown.yaml:1[0-9]: .*train.epochz.*did you mean 'train.epochs'" "$TMP/unknown.yaml"

sed 's/batch_size: 32/batch_size: lots/' "$TMP/base.yaml" >"$TMP/type.yaml"
expect_error wrong-type "type.yaml:1[0-9]: .*train.batch_size" "$TMP/type.yaml"

expect_error override-type "train.batch_size" "$TMP/base.yaml" train.batch_size=x

expect_error missing-data "no files match.*nothere" "$TMP/base.yaml" "data.train=$TMP/nothere/*.h5"

printf 'not an hdf5 file' >"$TMP/corrupt-00000.h5"
expect_error corrupt-data "corrupt-00000.h5" "$TMP/base.yaml" "data.train=$TMP/corrupt-*.h5"

expect_error shape-mismatch "images are \[3, 32, 32\].*model.input" "$TMP/base.yaml" "data.train=$TMP/syn3/train-*.h5"

sed 's/type: dense,/type: dens,/' "$TMP/base.yaml" >"$TMP/layer.yaml"
expect_error unknown-layer "layer.yaml:9: .*'dens'.*did you mean 'dense'" "$TMP/layer.yaml"

expect_error layer-key "model.layers.1.unitz" "$TMP/base.yaml" model.layers.1.unitz=3

expect_error nan-loss "step [0-9]*: the gradients are not finite" "$TMP/base.yaml" data.mean=[0] data.std=[1e-30] \
    optimizer.lr=100

expect_error missing-config "nope.yaml" "$TMP/nope.yaml"

# Under mpirun every rank fails the same way; still one line, and non-zero.
rc=0
$MPIRUN -np "$NP" "$BIN/dltrain" train "$TMP/unknown.yaml" run_dir="$TMP/r" >/dev/null 2>"$TMP/err" || rc=$?
[ $rc -ne 0 ] || fail "mpirun unknown-key: exit status 0"
grep -c "train.epochz" "$TMP/err" | grep -qx 1 || { cat "$TMP/err"; fail "mpirun: expected one error line"; }
echo "ok  mpirun -np $NP unknown-key"
