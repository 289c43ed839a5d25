# The walking skeleton's promise: the LeNet-style CNN reaches >= 88% test
# accuracy on the real Fashion-MNIST test set, trained on NP ranks.
. tests/integration/lib.sh
fashion_data
$MPIRUN -np "$NP" "$BIN/dltrain" train configs/cnn_fashion.yaml run_dir="$TMP/cnn" | grep -E "eval|done"
acc=$(json_get "$TMP/cnn/summary.json" eval_accuracy)
"$PY" -c "import sys; a=float(sys.argv[1]); assert a >= 0.88, f'test accuracy {a} < 0.88'; print(f'ok  CNN test accuracy {a:.4f} >= 0.88')" "$acc"
