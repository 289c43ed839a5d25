# The residual network (batch norm, resblocks, global pooling) trains under
# NP ranks: a short run on real Fashion-MNIST must clearly learn.
. tests/integration/lib.sh
fashion_data
$MPIRUN -np "$NP" "$BIN/dltrain" train configs/resnet_fashion.yaml run_dir="$TMP/res" \
    train.max_steps=150 train.batch_size=64 schedule.warmup_steps=20 log.every=50 >"$TMP/out" ||
    { cat "$TMP/out"; fail "resnet run"; }
acc=$(json_get "$TMP/res/summary.json" eval_accuracy)
"$PY" -c "import sys; a=float(sys.argv[1]); assert a >= 0.70, f'accuracy {a} after 150 steps'; print(f'ok  ResNet after 150 steps: test accuracy {a:.4f}')" "$acc"
