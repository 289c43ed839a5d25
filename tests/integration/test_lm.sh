# LSTM language model on WordNet glosses (Debian wordnet-base): held-out
# perplexity well below the unigram perplexity after a short run; prompt
# continuation; 1 rank and NP ranks reach the same parameters (stateful
# LSTM: each rank carries the state of its own rows of the batch).
. tests/integration/lib.sh
. tests/integration/text_lib.sh
[ -f /usr/share/wordnet/data.noun ] || fail "wordnet-base is not installed (scripts/install-deps.sh)"
"$BIN/dlprep" text "$TMP/lm" --layout stream --vocab-size 1000 --seq-len 20 --max-units 8000 --test-frac 0.1 \
    >/dev/null || fail "dlprep text"
cat > "$TMP/lm.yaml" <<YAML
data: {format: tokens, task: lm, train: $TMP/lm/train-*.h5, test: $TMP/lm/test-*.h5}
model:
  loss: softmax_cross_entropy
  layers:
    - {type: embedding, name: emb, vocab: 1000, dim: 32, padding_idx: 0}
    - {type: lstm, name: lstm, hidden: 64, stateful: true}
    - {type: mlm_head, name: out, vocab: 1000}
train: {epochs: 1, batch_size: 32, seed: 1, max_steps: 150, threads: 1}
optimizer: {type: adam, lr: 0.005, clip_norm: 1.0}
log: {every: 50}
YAML
"$BIN/dltrain" train "$TMP/lm.yaml" run_dir="$TMP/run" >"$TMP/log" 2>&1 || { cat "$TMP/log"; fail "lm training"; }
set -- $(unigram_baseline "$TMP/lm" lm)
loss=$(eval_of "$TMP/run" loss)
"$PY" -c "import math,sys; l,u=$loss,$1; print(f'ok  lstm lm: held-out perplexity {math.exp(l):.1f}, unigram {math.exp(u):.1f}'); sys.exit(0 if math.exp(l) < 0.6*math.exp(u) else 1)" ||
    fail "held-out perplexity exp($loss) is not well below the unigram perplexity exp($1)"

out=$("$BIN/dltrain" predict "$TMP/lm.yaml" ckpt="$TMP/run/model.h5" predict.prompt="a kind of" predict.tokens=5) ||
    fail "predict"
echo "$out" | grep -Eq "^a kind of \|\| [^ ]+( [^ ]+){4}$" || fail "predict printed: $out"
echo "ok  lstm lm: predict: $out"

for np in 1 "$NP"; do
    $MPIRUN -np "$np" "$BIN/dltrain" train "$TMP/lm.yaml" train.max_steps=12 train.batch_size=8 data.test="" \
        optimizer.type=sgd optimizer.lr=0.1 optimizer.momentum=0.9 \
        run_dir="$TMP/eq$np" >/dev/null 2>&1 || fail "lm equivalence run with $np ranks"
done
same_params "$TMP/eq1/model.h5" "$TMP/eq$NP/model.h5" "lstm lm"
