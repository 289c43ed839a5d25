"""A BERT-style encoder in PyTorch with the weights of a dltrain checkpoint,
compared with dltrain's own forward and backward (tests/tools/model_grad).

    bert_ref.py batch SHARD.h5 BATCH.h5 [--rows N] [--task mlm|classify]
        writes a fixed batch: the first N rows of SHARD.h5; for mlm every
        fifth ordinary token (from the second on; under a quarter of the
        rows, so the MLM head gathers them) is replaced by [MASK] and
        becomes a target, the rest are -1; for classify the
        shard's labels. No randomness, so both sides see the same targets.
    bert_ref.py compare CKPT BATCH.h5 GOT.h5 --heads H [--eps E] [--tol T]
        builds the model named by the checkpoint's parameters (tok_emb,
        pos_emb, type_emb, emb_ln, enc0..encK as torch.nn.TransformerEncoderLayer
        batch_first, post-LN, gelu, no dropout, src_key_padding_mask = [PAD];
        then either the mlm head tied to tok_emb or pooler + classifier),
        runs one forward and backward in float64 with dltrain's loss (summed
        cross-entropy over targets / number of targets) and checks the logits
        (of every position, and of the targets in the step itself) and every
        parameter gradient of GOT.h5: max |got - ref| <= T max |ref|
        per tensor (default 1e-4). Exit status 1 names the worst tensor.

Not a gen_*.py: it reads dltrain's outputs, so test_bert_torch.sh runs it.
"""
import argparse
import sys

import h5py
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

MASK_ID, N_SPECIAL = 4, 5


def write_batch(a):
    with h5py.File(a.shard, "r") as f:
        tok = f["tokens"][: a.rows].astype(np.int32)
        cls = f["labels"][: a.rows].astype(np.int32) if "labels" in f else None
    if a.task == "classify":
        lab = cls
    else:
        lab = np.full_like(tok, -1)
        for r in range(tok.shape[0]):
            for i in range(tok.shape[1]):
                if tok[r, i] >= N_SPECIAL and i % 5 == 1:
                    lab[r, i], tok[r, i] = tok[r, i], MASK_ID
    with h5py.File(a.batch, "w") as f:
        f["tokens"], f["labels"] = tok, lab
    print(f"bert_ref: batch of {tok.shape[0]} x {tok.shape[1]} tokens, "
          f"{int((lab >= 0).sum())} targets -> {a.batch}")


class Encoder(nn.Module):
    """dltrain's layer list rebuilt from the checkpoint's parameter names."""

    def __init__(self, ck, heads, eps):
        super().__init__()
        t = lambda k: torch.tensor(ck[k][()], dtype=torch.float64)
        self.names = {}
        V, D = ck["tok_emb.weight"].shape
        self.tok = nn.Embedding(V, D, padding_idx=0)
        self.names["tok_emb.weight"] = self.tok.weight
        self.pos = nn.Parameter(t("pos_emb.weight"))
        self.typ = nn.Parameter(t("type_emb.weight"))
        self.names.update({"pos_emb.weight": self.pos, "type_emb.weight": self.typ})
        self.ln = nn.LayerNorm(D, eps=eps)
        self.names.update({"emb_ln.weight": self.ln.weight, "emb_ln.bias": self.ln.bias})
        self.enc = nn.ModuleList()
        k = 0
        while f"enc{k}.linear1.weight" in ck:
            ff = ck[f"enc{k}.linear1.weight"].shape[0]
            e = nn.TransformerEncoderLayer(D, heads, ff, dropout=0.0, activation="gelu",
                                           layer_norm_eps=eps, batch_first=True)
            for n, p in e.named_parameters():
                self.names[f"enc{k}.{n}"] = p
            self.enc.append(e)
            k += 1
        self.mlm = "mlm.dense.weight" in ck
        if self.mlm:
            self.head = nn.Linear(D, D)
            self.hln = nn.LayerNorm(D, eps=eps)
            self.dec_bias = nn.Parameter(t("mlm.decoder.bias"))
            self.names.update({"mlm.dense.weight": self.head.weight, "mlm.dense.bias": self.head.bias,
                               "mlm.norm.weight": self.hln.weight, "mlm.norm.bias": self.hln.bias,
                               "mlm.decoder.bias": self.dec_bias})
        else:
            self.pool = nn.Linear(D, D)
            C = ck["classifier.weight"].shape[0]
            self.cls = nn.Linear(D, C)
            self.names.update({"pooler.dense.weight": self.pool.weight,
                               "pooler.dense.bias": self.pool.bias,
                               "classifier.weight": self.cls.weight,
                               "classifier.bias": self.cls.bias})
        self.double()
        with torch.no_grad():
            for n, p in self.names.items():
                p.copy_(t(n))

    def forward(self, tok):
        L = tok.shape[1]
        x = self.tok(tok) + self.pos[:L] + self.typ[0]
        x = self.ln(x)
        pad = tok == 0
        for e in self.enc:
            x = e(x, src_key_padding_mask=pad)
        if self.mlm:
            h = self.hln(F.gelu(self.head(x)))
            return h @ self.tok.weight.t() + self.dec_bias
        return self.cls(torch.tanh(self.pool(x[:, 0])))


def compare(a):
    torch.set_num_threads(1)
    ck = h5py.File(a.ckpt, "r")
    got = h5py.File(a.got, "r")
    with h5py.File(a.batch, "r") as f:
        tok = torch.tensor(f["tokens"][()].astype(np.int64))
        lab = torch.tensor(f["labels"][()].astype(np.int64))
    m = Encoder(ck, a.heads, a.eps)
    logits = m(tok)
    k = logits.shape[-1]
    loss = F.cross_entropy(logits.reshape(-1, k), lab.reshape(-1), ignore_index=-1,
                           reduction="sum") / max(int((lab >= 0).sum()), 1)
    loss.backward()
    ref = logits.detach().numpy()
    checks = [("logits", got["logits"][()], ref)]
    if "logits_step" in got:
        # the training step's logits: a masked-LM head computes only targets
        sel = lab.numpy() >= 0
        checks.append(("logits of the targets in the step", got["logits_step"][()][sel], ref[sel]))
    missing = [n for n in m.names if n not in got["grad"]]
    extra = [n for n in got["grad"] if n not in m.names]
    if missing or extra:
        sys.exit(f"FAIL bert_ref: parameters differ: missing {missing}, unexpected {extra}")
    for n, p in m.names.items():
        checks.append((f"grad {n}", got["grad"][n][()], p.grad.numpy()))
    worst, name = 0.0, ""
    for n, g, r in checks:
        if g.shape != r.shape:
            sys.exit(f"FAIL bert_ref: {n}: shape {g.shape}, torch {r.shape}")
        err = float(np.max(np.abs(g - r)) / max(float(np.max(np.abs(r))), 1e-30))
        if err > worst:
            worst, name = err, n
    print(f"bert_ref: {len(m.names)} parameter gradients and the logits "
          f"({'mlm' if m.mlm else 'classifier'}, loss {loss.item():.5f}): "
          f"worst relative difference {worst:.2g} ({name})")
    if not worst <= a.tol:
        sys.exit(f"FAIL bert_ref: {name} differs from torch by {worst:.3g} > {a.tol:g} (relative to its max)")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("cmd", choices=["batch", "compare"])
    ap.add_argument("files", nargs="+")
    ap.add_argument("--rows", type=int, default=8)
    ap.add_argument("--task", default="mlm", choices=["mlm", "classify"])
    ap.add_argument("--heads", type=int, default=2)
    ap.add_argument("--eps", type=float, default=1e-12)
    ap.add_argument("--tol", type=float, default=1e-4)
    a = ap.parse_args()
    if len(a.files) != (2 if a.cmd == "batch" else 3):
        ap.error("batch SHARD.h5 BATCH.h5 | compare CKPT BATCH.h5 GOT.h5")
    if a.cmd == "batch":
        a.shard, a.batch = a.files
        write_batch(a)
    else:
        a.ckpt, a.batch, a.got = a.files
        compare(a)


if __name__ == "__main__":
    main()
