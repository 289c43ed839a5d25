# Bad input around checkpoints and runs: each case exits non-zero with one
# line on stderr naming the file / key / layer, and never damages an existing
# checkpoint (no partial file is left).
. tests/integration/lib.sh
synthetic_data "$TMP/syn" 256

cat > "$TMP/mlp.yaml" <<YAML
data:
  train: $TMP/syn/train-*.h5
  test: $TMP/syn/test-*.h5
model:
  loss: softmax_cross_entropy
  layers:
    - {type: flatten}
    - {type: dense, name: fc1, units: 192}
    - {type: relu}
    - {type: dense, name: fc2, units: 10}
train:
  epochs: 1
  batch_size: 32
  threads: 1
log:
  every: 1000
YAML
"$BIN/dltrain" train "$TMP/mlp.yaml" run_dir="$TMP/good" checkpoint.every_steps=4 >/dev/null || fail "training run"
ck="$TMP/good/checkpoints/ckpt-00000008.h5"
[ -f "$ck" ] || fail "no checkpoint $ck"
sum0=$(cksum <"$ck")

# expect_error NAME PATTERN COMMAND...
expect_error() {
    name=$1 pat=$2
    shift 2
    rc=0
    "$@" >"$TMP/out" 2>"$TMP/err" || rc=$?
    [ $rc -ne 0 ] || fail "$name: exit status 0"
    lines=$(wc -l <"$TMP/err")
    [ "$lines" -eq 1 ] || { cat "$TMP/err" >&2; fail "$name: $lines lines on stderr, expected 1"; }
    grep -q -- "$pat" "$TMP/err" || { cat "$TMP/err" >&2; fail "$name: stderr does not match '$pat'"; }
    echo "ok  $name: $(cat "$TMP/err")"
}
train() { "$BIN/dltrain" train "$TMP/mlp.yaml" "$@"; }

expect_error resume-other-shape "ckpt-00000008.h5: 'fc2.weight' has shape \[10, 192\] in the checkpoint but \[10, 64\] in the model" \
    train run_dir="$TMP/r1" model.layers.1.units=64 checkpoint.resume="$ck"
sed 's/name: fc/name: other_fc/' "$TMP/mlp.yaml" >"$TMP/other.yaml"
expect_error resume-other-model "holds 'fc1.bias', which this model has no layer for (checkpoint of another model?)" \
    "$BIN/dltrain" train "$TMP/other.yaml" run_dir="$TMP/r2" checkpoint.resume="$ck"
expect_error eval-other-model "has no layer for (checkpoint of another model?)" \
    "$BIN/dltrain" eval "$TMP/other.yaml" ckpt="$ck"
expect_error init-from-nothing "model.init_from .*: no layer of this model (same name and shape)" \
    "$BIN/dltrain" init-from "$TMP/other.yaml" "$ck" run_dir="$TMP/r3"
printf 'not hdf5' >"$TMP/junk.h5"
expect_error resume-not-a-checkpoint "junk.h5: not an HDF5 file (truncated or corrupt checkpoint?)" \
    train run_dir="$TMP/r4" checkpoint.resume="$TMP/junk.h5"
expect_error resume-missing "nothere.h5: cannot open checkpoint" train run_dir="$TMP/r5" checkpoint.resume="$TMP/nothere.h5"

# incompatible layer shapes, named
sed 's/    - {type: flatten}/    - {type: flatten}\n    - {type: conv2d, name: late_conv, filters: 4, kernel: 3}/' "$TMP/mlp.yaml" >"$TMP/shape.yaml"
expect_error layer-shapes "late_conv" "$BIN/dltrain" train "$TMP/shape.yaml" run_dir="$TMP/r6"

# out-of-range values of the new keys
expect_error keep-range "checkpoint.keep: 0 is out of range" train run_dir="$TMP/r7" checkpoint.keep=0
expect_error skips-range "train.max_skips: -1 is out of range" train run_dir="$TMP/r8" train.max_skips=-1
expect_error nonfinite-choice "train.nonfinite: unknown value 'ignore'" train run_dir="$TMP/r9" train.nonfinite=ignore

# unwritable output: a run_dir below a regular file
touch "$TMP/afile"
expect_error unwritable-run-dir "afile/run: cannot create directory" train run_dir="$TMP/afile/run"
# unwritable checkpoint directory: the run fails at its first save, nothing partial left
expect_error unwritable-ckpt-dir "checkpoint not written (earlier ones are intact): .*afile/ck" \
    train run_dir="$TMP/r10" checkpoint.dir="$TMP/afile/ck" checkpoint.every_steps=2

# full disk: a 1 MiB tmpfs holding a good checkpoint (~600 KiB); the next one does not fit
full="$TMP/full"
mkdir -p "$full"
if mount -t tmpfs -o size=1m tmpfs "$full" 2>/dev/null; then
    trap 'umount "$full" 2>/dev/null || true; rm -rf "$TMP"' EXIT
    cp "$ck" "$TMP/good/checkpoints/ckpt-00000008.manifest" "$full/"
    expect_error disk-full "checkpoint not written (earlier ones are intact): .*No space left on device" \
        train run_dir="$TMP/r11" checkpoint.dir="$full" checkpoint.every_steps=2
    ls "$full" | grep -q 'tmp' && fail "disk-full: a temporary file was left: $(ls "$full")"
    [ "$(cksum <"$full/ckpt-00000008.h5")" = "$sum0" ] || fail "disk-full: the existing checkpoint changed"
    "$BIN/dltrain" train "$TMP/mlp.yaml" run_dir="$TMP/r12" checkpoint.resume="$full" >"$TMP/out" ||
        fail "disk-full: the old checkpoint no longer resumes"
    grep -q "^resumed from $full/ckpt-00000008.h5" "$TMP/out" || fail "disk-full: did not resume from the old one"
    umount "$full"
    echo "ok  disk-full: existing checkpoint intact and resumable, no partial file"
else
    echo "note: cannot mount a tmpfs here (not root?); the full-disk case is not tested"
fi
[ "$(cksum <"$ck")" = "$sum0" ] || fail "the original checkpoint changed"
echo "ok  original checkpoint unchanged throughout"
