# BERT-style encoder on WordNet glosses (Debian wordnet-base): masked-LM
# pretraining beats the unigram entropy and the most-frequent-token rate;
# [MASK] filling; fine-tuning from the pretrained weights (new pooler and
# classifier, frozen embeddings) beats the majority class of the gloss
# lexicographer-file labels; 1 rank and NP ranks reach the same parameters.
. tests/integration/lib.sh
. tests/integration/text_lib.sh
[ -f /usr/share/wordnet/data.noun ] || fail "wordnet-base is not installed (scripts/install-deps.sh)"
"$BIN/dlprep" text "$TMP/wn" --layout sentences --vocab wordpiece --vocab-size 1000 --seq-len 24 \
    --max-units 8000 --test-frac 0.1 >/dev/null || fail "dlprep text"
encoder='    - {type: embedding, name: tok_emb, vocab: 1000, dim: 64, padding_idx: 0}
    - {type: position_embedding, name: pos_emb, max_len: 64}
    - {type: token_type_embedding, name: type_emb}
    - {type: layernorm, name: emb_ln, eps: 1e-12}
    - {type: transformer, name: enc0, heads: 2, ff: 128, eps: 1e-12}
    - {type: transformer, name: enc1, heads: 2, ff: 128, eps: 1e-12}'
cat > "$TMP/mlm.yaml" <<YAML
data: {format: tokens, task: mlm, train: $TMP/wn/train-*.h5, test: $TMP/wn/test-*.h5}
model:
  loss: softmax_cross_entropy
  layers:
$encoder
    - {type: mlm_head, name: mlm, vocab: 1000, tie: tok_emb, eps: 1e-12}
train: {epochs: 3, batch_size: 32, seed: 1, max_steps: 400, threads: 1}
optimizer: {type: adamw, lr: 0.002, weight_decay: 0.01, clip_norm: 1.0}
schedule: {type: cosine, warmup_steps: 40}
log: {every: 100}
YAML
"$BIN/dltrain" train "$TMP/mlm.yaml" run_dir="$TMP/mlm" >"$TMP/log" 2>&1 || { cat "$TMP/log"; fail "mlm training"; }
set -- $(unigram_baseline "$TMP/wn" mlm)
loss=$(eval_of "$TMP/mlm" loss)
acc=$(eval_of "$TMP/mlm" accuracy)
"$PY" -c "import sys; l,a,u,m=$loss,$acc,$1,$2; print(f'ok  bert mlm: masked loss {l:.3f} (unigram entropy {u:.3f}), masked accuracy {a:.3f} (most frequent token {m:.3f})'); sys.exit(0 if l < u and a > m + 0.03 else 1)" ||
    fail "mlm loss $loss / accuracy $acc do not beat the unigram baseline $1 / $2"

out=$("$BIN/dltrain" predict "$TMP/mlm.yaml" ckpt="$TMP/mlm/model.h5" predict.prompt="a [MASK] of the body") ||
    fail "predict"
echo "$out" | grep -q "^\[MASK\] at 2:" || fail "predict printed: $out"
echo "ok  bert mlm: predict: $(echo "$out" | tr '\n' ' ')"

cat > "$TMP/cls.yaml" <<YAML
data: {format: tokens, task: classify, train: $TMP/wn/train-*.h5, test: $TMP/wn/test-*.h5}
model:
  loss: softmax_cross_entropy
  init_from: $TMP/mlm/model.h5
  layers:
$encoder
    - {type: pooler, name: pooler}
    - {type: dense, name: classifier, units: 45}
freeze: {layers: "tok_emb,pos_emb,type_emb"}
train: {epochs: 2, batch_size: 32, seed: 2, max_steps: 250, threads: 1}
optimizer: {type: adamw, lr: 0.001, weight_decay: 0.01}
log: {every: 100}
YAML
"$BIN/dltrain" train "$TMP/cls.yaml" run_dir="$TMP/cls" >"$TMP/log" 2>&1 || { cat "$TMP/log"; fail "fine-tuning"; }
grep -q "init_from" "$TMP/log" || fail "fine-tuning did not load the pretrained weights"
acc=$(eval_of "$TMP/cls" accuracy)
"$PY" - "$TMP" "$acc" <<'PY' || fail "fine-tuning accuracy $acc does not beat the majority class"
import sys, glob, h5py, numpy as np
t, acc = sys.argv[1], float(sys.argv[2])
lab = lambda s: np.concatenate([h5py.File(f, "r")["labels"][()] for f in sorted(glob.glob(f"{t}/wn/{s}-*.h5"))])
major = np.bincount(lab("train")).argmax()
base = float(np.mean(lab("test") == major))
a, b = h5py.File(f"{t}/mlm/model.h5", "r"), h5py.File(f"{t}/cls/model.h5", "r")
assert np.array_equal(a["tok_emb.weight"][()], b["tok_emb.weight"][()]), "frozen embedding changed"
assert not np.array_equal(a["enc0.ff1.weight" if "enc0.ff1.weight" in a else [k for k in a if k.startswith("enc0")][0]][()],
                          b["enc0.ff1.weight" if "enc0.ff1.weight" in b else [k for k in b if k.startswith("enc0")][0]][()]), \
    "the encoder did not train"
print(f"ok  bert fine-tuning: accuracy {acc:.3f} (majority class {base:.3f}), embeddings frozen")
sys.exit(0 if acc > base + 0.05 else 1)
PY

for np in 1 "$NP"; do
    $MPIRUN -np "$np" "$BIN/dltrain" train "$TMP/mlm.yaml" train.max_steps=10 train.batch_size=8 data.test="" schedule.warmup_steps=2 \
        optimizer.type=sgd optimizer.lr=0.05 optimizer.momentum=0.9 optimizer.weight_decay=0 \
        run_dir="$TMP/eq$np" >/dev/null 2>&1 || fail "mlm equivalence run with $np ranks"
done
# SGD: Adam(W) divides by sqrt(v), which turns the 1e-7 sum-order noise of
# near-zero gradients into 1e-5 weight differences and would hide nothing but noise
same_params "$TMP/eq1/model.h5" "$TMP/eq$NP/model.h5" "bert mlm" 1e-5

# fine-tuning too (init_from, frozen embeddings, pooler + classifier, dropout
# keyed by global sample index): 1 rank and NP ranks reach the same weights
for np in 1 "$NP"; do
    $MPIRUN -np "$np" "$BIN/dltrain" train "$TMP/cls.yaml" train.max_steps=10 train.batch_size=8 data.test="" \
        optimizer.type=sgd optimizer.lr=0.05 optimizer.momentum=0.9 optimizer.weight_decay=0 \
        run_dir="$TMP/ceq$np" >/dev/null 2>&1 || fail "fine-tuning equivalence run with $np ranks"
done
same_params "$TMP/ceq1/model.h5" "$TMP/ceq$NP/model.h5" "bert fine-tuning" 1e-5
