# Streaming data pipeline, end to end:
#  1. memory bound: one loader epoch (streaming reader, locality shuffle,
#     prefetch thread, resized crop + flip) over a 1.2 GB shard set under an
#     address-space limit of ~390 MB (ulimit -v), i.e. a set 3x larger than
#     all the memory the process may map; the set is deleted afterwards;
#  2. `dlprep preview` writes a PNG grid from a config's data.augment.*;
#  3. a short training run with augmentation and prefetch, 2 ranks, learns.
. tests/integration/lib.sh

# 1. 8000 x 3x224x224 = 1.2 GB in 4 shards, chunks of 6 samples
"$BIN/dlprep" synthetic "$TMP/big" --n 8000 --shape 3,224,224 --classes 10 --test-n 0 \
    --shard-size 2000 > /dev/null
bytes=$(du -sb "$TMP/big" | cut -f1)
[ "$bytes" -gt 1200000000 ] || fail "generated set is only $bytes bytes"
limit_kb=400000
( ulimit -v $limit_kb
  "$BIN/dlprep" scan "$TMP/big/train-*.h5" --batch 32 --threads 1 --prefetch 2 --cache-mb 16 \
      --max-open 2 --shuffle-block 96 --augment rrc,flip ) > "$TMP/scan.out" 2> "$TMP/scan.err" ||
    { cat "$TMP/scan.err" >&2; fail "loader epoch under ulimit -v $limit_kb failed"; }
grep -q "^scan: 8000 samples of \[3, 224, 224\]" "$TMP/scan.out" || fail "scan: $(cat "$TMP/scan.out")"
rss=$(sed -n 's/.*peak RSS \([0-9]*\) MiB.*/\1/p' "$TMP/scan.out")
[ "$rss" -lt 200 ] || fail "peak RSS $rss MiB for a streaming epoch"
# and the limit is real: the whole set cannot even be mapped under it
( ulimit -v $limit_kb; "$PY" -c 'bytearray(1200000000)' ) 2>/dev/null &&
    fail "ulimit -v $limit_kb did not limit memory"
rm -rf "$TMP/big"
echo "stream: $(cat "$TMP/scan.out")"

# 2. preview
synthetic_data "$TMP/syn" 512
cat > "$TMP/aug.yaml" <<YAML
data:
  train: $TMP/syn/train-*.h5
  test: $TMP/syn/test-*.h5
  shuffle_block: 64
  last_batch: pad
  prefetch: 2
  threads: 2
  augment:
    crop_pad: 2
    hflip: 0.5
    rotate: 10
    brightness: 0.2
    contrast: 0.2
    noise_std: 0.02
    cutout: 4
model:
  input: [1, 28, 28]
  layers:
    - {type: conv2d, filters: 8, kernel: 3, padding: 1}
    - {type: relu}
    - {type: maxpool, size: 2}
    - {type: flatten}
    - {type: dense, units: 10}
train:
  epochs: 3
  batch_size: 32
optimizer:
  type: adam
  lr: 0.003
log:
  every: 1000
YAML
"$BIN/dlprep" preview "$TMP/aug.yaml" "$TMP/grid.png" --n 16 > "$TMP/prev.out" ||
    fail "dlprep preview failed"
grep -q "augmented" "$TMP/prev.out" || fail "preview: $(cat "$TMP/prev.out")"
"$PY" - "$TMP/grid.png" <<'PY' || fail "preview PNG is not a 16-tile grid"
import struct, sys, zlib
d = open(sys.argv[1], "rb").read()
assert d[:8] == b"\x89PNG\r\n\x1a\n"
w, h = struct.unpack(">II", d[16:24])
assert (w, h) == (4 * 30 + 2, 4 * 30 + 2), (w, h)
PY

# 3. training with augmentation, prefetch threads and a padded last batch
$MPIRUN -np "$NP" "$BIN/dltrain" train "$TMP/aug.yaml" run_dir="$TMP/run" > "$TMP/train.out" 2>&1 ||
    { tail -n 20 "$TMP/train.out" >&2; fail "training with augmentation failed"; }
acc=$(sed -n 's/.*eval loss [0-9.]* acc \([0-9.]*\).*/\1/p' "$TMP/train.out" | tail -n 1)
[ -n "$acc" ] || fail "no eval accuracy in: $(tail -n 5 "$TMP/train.out")"
"$PY" -c "import sys; sys.exit(0 if float('$acc') > 0.3 else 1)" ||
    fail "accuracy $acc after 3 augmented epochs"
echo "stream: preview ok; augmented training accuracy $acc"
