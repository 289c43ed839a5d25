#!/usr/bin/env python3
"""PyTorch oracle for dltrain's sequence-model layers and a small tied BERT.

Usage: gen_seq.py OUTDIR   (run by `make unit` with OUTDIR = build/ref)

Design: every case builds the torch module a dltrain layer claims to match
(nn.Embedding, nn.LayerNorm, nn.MultiheadAttention, nn.TransformerEncoderLayer,
nn.LSTM, an explicit MLM head / pooler / position and token-type embedding,
F.cross_entropy per token), fills it with seeded weights, runs it in float64 on
float32-representable inputs and backpropagates d(sum(y * R)) for a random R
(loss layers: R = 1, the gradient of the sum of per-sample losses). Dropout is
0 (torch's random numbers cannot be matched; dltrain's dropout is checked by
finite differences in test_seq_layers.c). Stored as float32 in
OUTDIR/seq_<case>.h5:

  datasets  x, y, dy (= R), dx (float inputs only), tokens (ids (n, len)
            whose zeros are padding, for attention masks), labels (int32),
            h0, c0 ((layers, n, hidden), stateful LSTM's carried state),
            correct, count (per-token loss),
            w.<name> and g.<name> per parameter, <name> the dltrain suffix
            (= torch's parameter name)
  attrs     type, keys ("k=v ..."), ids (1: x holds token ids)

and seq_cases.txt lists the cases. The model case seq_model_bert.h5 holds a
2-block BERT (embedding, positions, token types, layernorm, transformer x2,
MLM head tied to the embedding, per-token cross-entropy with ignored labels):
tokens, labels, loss (n), w.<full name>, g.<full name>. Replayed by
tests/unit/test_torch_seq.c.
"""
import os
import sys

import h5py
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

torch.set_num_threads(1)
torch.set_default_dtype(torch.float64)


def f32(a):
    return np.asarray(a, dtype=np.float32).astype(np.float64)


def ids_with_padding(rng, n, length, vocab, pad=True):
    """Ids in [1, vocab) with sample b's last b tokens padded (0), never all."""
    ids = rng.randint(1, vocab, size=(n, length))
    if pad:
        for b in range(n):
            k = min(b, length - 1)
            if k:
                ids[b, length - k:] = 0
    return ids


class Case:
    def __init__(self, name, ltype, keys, seed):
        self.name, self.ltype, self.keys = name, ltype, keys
        self.rng = np.random.RandomState(seed)
        self.data = {}
        self.attrs = {"ids": 0}

    def t(self, shape, lo=-1.0, hi=1.0, grad=True):
        return torch.tensor(f32(self.rng.uniform(lo, hi, size=shape)), requires_grad=grad)

    def store(self, key, value, dtype=np.float32):
        if isinstance(value, torch.Tensor):
            value = value.detach().cpu().numpy()
        self.data[key] = np.ascontiguousarray(np.asarray(value, dtype=dtype))

    def randomize(self, module, scale=0.5):
        with torch.no_grad():
            for _, p in module.named_parameters():
                p.copy_(torch.tensor(f32(self.rng.uniform(-scale, scale, size=p.shape))))

    def finish(self, y, params, x=None):
        """Backpropagates sum(y R) and stores y, R, dx and the parameters."""
        R = torch.tensor(f32(self.rng.uniform(-1, 1, size=y.shape)))
        (y * R).sum().backward()
        self.store("y", y)
        self.store("dy", R)
        if x is not None:
            self.store("x", x)
            self.store("dx", x.grad)
        for name, p in params:
            self.store("w." + name, p)
            self.store("g." + name, p.grad)

    def write(self, outdir):
        with h5py.File(os.path.join(outdir, "seq_%s.h5" % self.name), "w") as f:
            for k, v in self.data.items():
                f.create_dataset(k, data=v)
            f.attrs["type"] = np.bytes_(self.ltype)
            f.attrs["keys"] = np.bytes_(self.keys if self.keys else " ")
            for k, v in self.attrs.items():
                f.attrs[k] = np.int32(v)


def case_embedding(name, n, length, vocab, dim, pad):
    c = Case(name, "embedding", "vocab=%d dim=%d padding_idx=%d" % (vocab, dim, pad), 1)
    m = nn.Embedding(vocab, dim, padding_idx=pad if pad >= 0 else None)
    c.randomize(m)
    if pad >= 0:
        with torch.no_grad():
            m.weight[pad].zero_()
    ids = ids_with_padding(c.rng, n, length, vocab, pad >= 0)
    y = m(torch.tensor(ids))
    c.store("x", ids)
    c.attrs["ids"] = 1
    c.finish(y, [("weight", m.weight)])
    return c


def case_add_embedding(name, ltype, n, length, dim, rows):
    key = "max_len" if ltype == "position_embedding" else "types"
    c = Case(name, ltype, "%s=%d" % (key, rows), 2)
    w = c.t((rows, dim))
    x = c.t((n, length, dim))
    y = x + (w[:length] if ltype == "position_embedding" else w[0])
    c.finish(y, [("weight", w)], x)
    return c


def case_layernorm(name, shape, eps):
    c = Case(name, "layernorm", "eps=%g" % eps, 3)
    m = nn.LayerNorm(shape[-1], eps=eps)
    c.randomize(m, 1.0)
    x = c.t(shape, -2, 2)
    c.finish(m(x), [("weight", m.weight), ("bias", m.bias)], x)
    return c


def case_attention(name, n, length, dim, heads, mask):
    c = Case(name, "self_attention", "heads=%d padding_mask=%d" % (heads, mask), 4)
    m = nn.MultiheadAttention(dim, heads, batch_first=True)
    c.randomize(m)
    x = c.t((n, length, dim))
    ids = ids_with_padding(c.rng, n, length, 9, mask)
    c.store("tokens", ids)
    kpm = torch.tensor(ids == 0) if mask else None
    y, _ = m(x, x, x, key_padding_mask=kpm, need_weights=False)
    c.finish(y, list(m.named_parameters()), x)
    return c


def case_transformer(name, n, length, dim, heads, ff, pre_ln, act, eps):
    keys = "heads=%d ff=%d dropout=0 pre_ln=%d activation=%s eps=%g" % (heads, ff, pre_ln, act,
                                                                       eps)
    c = Case(name, "transformer", keys, 5)
    m = nn.TransformerEncoderLayer(dim, heads, ff, dropout=0.0, activation=act,
                                   layer_norm_eps=eps, batch_first=True, norm_first=bool(pre_ln))
    c.randomize(m)
    x = c.t((n, length, dim))
    ids = ids_with_padding(c.rng, n, length, 9)
    c.store("tokens", ids)
    y = m(x, src_key_padding_mask=torch.tensor(ids == 0))
    c.finish(y, list(m.named_parameters()), x)
    return c


def case_lstm(name, n, length, din, hidden, layers, stateful):
    keys = "hidden=%d layers=%d stateful=%d" % (hidden, layers, stateful)
    c = Case(name, "lstm", keys, 6)
    m = nn.LSTM(din, hidden, layers, batch_first=True)
    c.randomize(m)
    x = c.t((n, length, din))
    state = None
    if stateful:
        h0, c0 = c.t((layers, n, hidden), grad=False), c.t((layers, n, hidden), grad=False)
        c.store("h0", h0)
        c.store("c0", c0)
        state = (h0, c0)
    y, _ = m(x, state)
    c.finish(y, list(m.named_parameters()), x)
    return c


def case_mlm_head(name, n, length, dim, vocab, eps):
    c = Case(name, "mlm_head", "vocab=%d eps=%g" % (vocab, eps), 7)
    dense, norm, dec = nn.Linear(dim, dim), nn.LayerNorm(dim, eps=eps), nn.Linear(dim, vocab)
    for mod in (dense, norm, dec):
        c.randomize(mod)
    x = c.t((n, length, dim))
    y = dec(norm(F.gelu(dense(x))))
    c.finish(y, [("dense.weight", dense.weight), ("dense.bias", dense.bias),
                 ("norm.weight", norm.weight), ("norm.bias", norm.bias),
                 ("decoder.weight", dec.weight), ("decoder.bias", dec.bias)], x)
    return c


def case_pooler(name, n, length, dim):
    c = Case(name, "pooler", "", 8)
    dense = nn.Linear(dim, dim)
    c.randomize(dense)
    x = c.t((n, length, dim))
    c.finish(torch.tanh(dense(x[:, 0])), [("dense.weight", dense.weight),
                                          ("dense.bias", dense.bias)], x)
    return c


def case_linear(name, shape, units):
    c = Case(name, "linear", "units=%d" % units, 9)
    m = nn.Linear(shape[-1], units)
    c.randomize(m)
    x = c.t(shape)
    c.finish(m(x), [("weight", m.weight), ("bias", m.bias)], x)
    return c


def case_xent(name, n, length, k):
    c = Case(name, "softmax_cross_entropy", "", 10)
    x = c.t((n, length, k), -3, 3)
    labels = c.rng.randint(0, k, size=(n, length))
    labels[c.rng.uniform(size=labels.shape) < 0.3] = -1
    per_tok = F.cross_entropy(x.reshape(-1, k), torch.tensor(labels.reshape(-1)),
                              ignore_index=-1, reduction="none").reshape(n, length)
    loss = per_tok.sum(1)
    loss.sum().backward()
    counted = labels >= 0
    am = x.detach().numpy().argmax(-1)
    c.store("x", x)
    c.store("dx", x.grad)
    c.store("y", loss)
    c.store("dy", np.ones(n))
    c.store("labels", labels, np.int32)
    c.store("correct", ((am == labels) & counted).sum(1))
    c.store("count", counted.sum(1))
    return c


class TinyBert(nn.Module):
    """dltrain's BERT layers as torch modules; names match dltrain's."""

    def __init__(self, vocab, dim, heads, ff, blocks, max_len, eps):
        super().__init__()
        self.emb = nn.Embedding(vocab, dim)
        self.pos = nn.Parameter(torch.zeros(max_len, dim))
        self.typ = nn.Parameter(torch.zeros(2, dim))
        self.ln = nn.LayerNorm(dim, eps=eps)
        self.enc = nn.ModuleList(
            nn.TransformerEncoderLayer(dim, heads, ff, dropout=0.0, activation="gelu",
                                       layer_norm_eps=eps, batch_first=True)
            for _ in range(blocks))
        self.dense = nn.Linear(dim, dim)
        self.norm = nn.LayerNorm(dim, eps=eps)
        self.bias = nn.Parameter(torch.zeros(vocab))

    def forward(self, ids):
        h = self.emb(ids) + self.pos[: ids.shape[1]] + self.typ[0]
        h = self.ln(h)
        for blk in self.enc:
            h = blk(h, src_key_padding_mask=ids == 0)
        h = self.norm(F.gelu(self.dense(h)))
        return h @ self.emb.weight.t() + self.bias

    def dltrain_names(self):
        """(dltrain parameter name, tensor) pairs."""
        out = [("emb.weight", self.emb.weight), ("pos.weight", self.pos), ("typ.weight", self.typ),
               ("ln.weight", self.ln.weight), ("ln.bias", self.ln.bias)]
        for i, blk in enumerate(self.enc):
            out += [("enc%d.%s" % (i, k), v) for k, v in blk.named_parameters()]
        out += [("mlm.dense.weight", self.dense.weight), ("mlm.dense.bias", self.dense.bias),
                ("mlm.norm.weight", self.norm.weight), ("mlm.norm.bias", self.norm.bias),
                ("mlm.decoder.bias", self.bias)]
        return out


def model_bert(outdir):
    rng = np.random.RandomState(11)
    n, length, vocab = 3, 6, 13
    m = TinyBert(vocab, 8, 2, 16, 2, 8, 1e-5)
    with torch.no_grad():
        for _, p in m.named_parameters():
            p.copy_(torch.tensor(f32(rng.uniform(-0.5, 0.5, size=p.shape))))
    ids = ids_with_padding(rng, n, length, vocab)
    labels = rng.randint(0, vocab, size=(n, length))
    labels[(rng.uniform(size=labels.shape) < 0.5) | (ids == 0)] = -1
    labels[0, 0] = 3   # every sample counts at least one token
    labels[1, 0] = 5
    labels[2, 0] = 7
    logits = m(torch.tensor(ids))
    per_tok = F.cross_entropy(logits.reshape(-1, vocab), torch.tensor(labels.reshape(-1)),
                              ignore_index=-1, reduction="none").reshape(n, length)
    loss = per_tok.sum(1)
    loss.sum().backward()
    with h5py.File(os.path.join(outdir, "seq_model_bert.h5"), "w") as f:
        f.create_dataset("tokens", data=ids.astype(np.float32))
        f.create_dataset("labels", data=labels.astype(np.int32))
        f.create_dataset("loss", data=loss.detach().numpy().astype(np.float32))
        for name, p in m.dltrain_names():
            f.create_dataset("w." + name, data=p.detach().numpy().astype(np.float32))
            f.create_dataset("g." + name, data=p.grad.numpy().astype(np.float32))


def main():
    outdir = sys.argv[1]
    os.makedirs(outdir, exist_ok=True)
    cases = [
        case_embedding("embedding", 3, 5, 11, 4, -1),
        case_embedding("embedding_pad", 3, 5, 11, 4, 0),
        case_add_embedding("position", "position_embedding", 2, 5, 4, 7),
        case_add_embedding("token_type", "token_type_embedding", 2, 5, 4, 2),
        case_layernorm("layernorm3d", (2, 4, 6), 1e-5),
        case_layernorm("layernorm2d", (5, 7), 1e-12),
        case_attention("attention", 3, 5, 8, 2, 1),
        case_attention("attention_nomask", 2, 4, 6, 3, 0),
        case_transformer("transformer_post", 3, 5, 8, 2, 16, 0, "gelu", 1e-5),
        case_transformer("transformer_pre", 3, 5, 8, 2, 16, 1, "gelu", 1e-5),
        case_transformer("transformer_relu", 2, 4, 6, 3, 12, 0, "relu", 1e-12),
        case_lstm("lstm1", 3, 5, 4, 6, 1, 0),
        case_lstm("lstm2", 2, 6, 3, 5, 2, 0),
        case_lstm("lstm_stateful", 3, 4, 3, 4, 2, 1),
        case_mlm_head("mlm_head", 2, 4, 6, 9, 1e-5),
        case_pooler("pooler", 3, 4, 6),
        case_linear("linear", (2, 3, 5), 4),
        case_xent("xent_seq", 3, 5, 7),
    ]
    for c in cases:
        c.write(outdir)
    model_bert(outdir)
    with open(os.path.join(outdir, "seq_cases.txt"), "w") as f:
        for c in cases:
            f.write(c.name + "\n")


if __name__ == "__main__":
    main()
