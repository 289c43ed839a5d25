# A whole BERT-tiny (2 blocks, hidden 128, 2 heads, ff 512; vocabulary 1000)
# against PyTorch: a few training steps give weights away from their
# initialisation, then dltrain (tests/tools/model_grad) and a torch model
# rebuilt from dltrain's checkpoint (tests/torch/bert_ref.py: nn.Embedding,
# nn.TransformerEncoderLayer batch_first post-LN gelu, the MLM head tied to
# the embedding) run one forward and backward on the same fixed batch
# (fixed [MASK] targets, padded rows): logits and every parameter gradient
# agree within 1e-4 relative. The same for the fine-tuning model (pooler +
# classifier) started from the pretrained weights.
. tests/integration/lib.sh
[ -x "$BIN/model_grad" ] || fail "$BIN/model_grad is missing (make $BIN/model_grad)"
[ -f /usr/share/wordnet/data.noun ] || fail "wordnet-base is not installed (scripts/install-deps.sh)"
"$BIN/dlprep" text "$TMP/wn" --layout sentences --vocab wordpiece --vocab-size 1000 --seq-len 24 \
    --max-units 3000 --test-frac 0.1 >/dev/null || fail "dlprep text"
encoder='    - {type: embedding, name: tok_emb, vocab: 1000, dim: 128, padding_idx: 0}
    - {type: position_embedding, name: pos_emb, max_len: 64}
    - {type: token_type_embedding, name: type_emb}
    - {type: layernorm, name: emb_ln, eps: 1e-12}
    - {type: dropout, rate: 0.1}
    - {type: transformer, name: enc0, heads: 2, ff: 512, eps: 1e-12}
    - {type: transformer, name: enc1, heads: 2, ff: 512, eps: 1e-12}'
cat > "$TMP/mlm.yaml" <<YAML
data: {format: tokens, task: mlm, train: $TMP/wn/train-*.h5, test: ""}
model:
  loss: softmax_cross_entropy
  layers:
$encoder
    - {type: mlm_head, name: mlm, vocab: 1000, tie: tok_emb, eps: 1e-12}
train: {epochs: 1, batch_size: 16, seed: 3, max_steps: 6, threads: 1}
optimizer: {type: adamw, lr: 0.01, weight_decay: 0.01}
log: {every: 100}
YAML
cat > "$TMP/cls.yaml" <<YAML
data: {format: tokens, task: classify, train: $TMP/wn/train-*.h5, test: ""}
model:
  loss: softmax_cross_entropy
  init_from: $TMP/mlm/model.h5
  layers:
$encoder
    - {type: pooler, name: pooler}
    - {type: dropout, rate: 0.1}
    - {type: dense, name: classifier, units: 45}
train: {epochs: 1, batch_size: 16, seed: 4, max_steps: 4, threads: 1}
optimizer: {type: adamw, lr: 0.01, weight_decay: 0.01}
log: {every: 100}
YAML
REF="$PY tests/torch/bert_ref.py"
for task in mlm cls; do
    "$BIN/dltrain" train "$TMP/$task.yaml" run_dir="$TMP/$task" >"$TMP/log" 2>&1 ||
        { cat "$TMP/log"; fail "$task: training"; }
    $REF batch "$TMP/wn/test-00000.h5" "$TMP/batch.h5" --rows 8 \
        --task "$([ $task = mlm ] && echo mlm || echo classify)" >/dev/null || fail "$task: batch"
    OMP_NUM_THREADS=1 "$BIN/model_grad" "$TMP/$task.yaml" "$TMP/$task/model.h5" "$TMP/batch.h5" \
        "$TMP/got.h5" >/dev/null || fail "$task: model_grad"
    out=$($REF compare "$TMP/$task/model.h5" "$TMP/batch.h5" "$TMP/got.h5" --heads 2 --eps 1e-12) ||
        fail "$task: dltrain and torch differ"
    echo "ok  bert vs torch: $out"
done
