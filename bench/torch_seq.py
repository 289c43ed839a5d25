#!/usr/bin/python3
"""PyTorch reference throughput of dltrain's sequence models for
`make bench-seq` (bench/seq.sh): the LSTM language model and BERT-style
masked-LM pretraining, built from the same dltrain YAML config and trained
on the same token shards.

Design. The config is parsed (python3-yaml) and mapped to the torch modules
dltrain's layers mirror: embedding -> nn.Embedding(padding_idx),
position/token_type embedding -> learned tables, layernorm -> nn.LayerNorm,
transformer -> nn.TransformerEncoderLayer(batch_first, post-LN, gelu,
src_key_padding_mask), lstm -> nn.LSTM(batch_first, stateful: the state is
carried detached across steps), mlm_head -> Linear + GELU + LayerNorm + a
decoder (tied to the embedding when `tie` is set), dropout -> nn.Dropout. A
layer type it does not know is an error. The data are the rows of the
config's training shards (data.train, overridable) in order; masked-LM
targets are 15% (data.mask_prob) of the non-special tokens, replaced by
[MASK]; language-model targets are the next tokens.

--decoder targets (default) runs the MLM decoder on the target rows only,
the algorithm dltrain uses; --decoder full runs it on every position, as
e.g. Hugging Face's BertForMaskedLM does. Throughput excludes the first 5
steps, as dltrain's summary.json does.

FLOPs per sample (forward, 2 per multiply-add, counted like dltrain's
layer->flops): flops_model with the decoder on every position (what
dlt_model_flops reports, a check of dltrain's counts) and flops_executed
with the decoder on the measured mean number of targets per sample (the
work both programs actually do with --decoder targets).

Prints one JSON line: samples_per_s, tokens_per_s, flops_model,
flops_executed, targets_per_sample, steps, batch_size, threads, decoder.

Usage: torch_seq.py CONFIG [--steps N] [--threads T] [--batch-size B]
                           [--train GLOB] [--decoder targets|full]
"""
import argparse
import glob
import json
import sys
import time

import h5py
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import yaml

WARMUP_STEPS = 5
MASK_ID, N_SPECIAL = 4, 5


class Model(nn.Module):
    def __init__(self, layers, L):
        super().__init__()
        self.mods = nn.ModuleList()
        self.kinds = []
        self.flops = 0
        self.dec_flops = 0          # the decoder's share of flops, per position
        self.L = L
        emb = {}
        D = None
        for spec in layers:
            t = spec["type"]
            if t == "embedding":
                D = int(spec["dim"])
                m = nn.Embedding(int(spec["vocab"]), D, padding_idx=int(spec.get("padding_idx", -1))
                                 if int(spec.get("padding_idx", -1)) >= 0 else None)
                emb[spec.get("name", "")] = m
            elif t == "position_embedding":
                m = nn.Embedding(int(spec["max_len"]), D)
            elif t == "token_type_embedding":
                m = nn.Embedding(int(spec.get("types", 2)), D)
            elif t == "layernorm":
                m = nn.LayerNorm(D, eps=float(spec.get("eps", 1e-5)))
                self.flops += 8 * L * D
            elif t == "dropout":
                m = nn.Dropout(float(spec.get("rate", 0.5)))
            elif t == "transformer":
                ff = int(spec["ff"])
                m = nn.TransformerEncoderLayer(D, int(spec["heads"]), ff,
                                               dropout=float(spec.get("dropout", 0.1)),
                                               activation=spec.get("activation", "gelu"),
                                               layer_norm_eps=float(spec.get("eps", 1e-5)),
                                               batch_first=True,
                                               norm_first=bool(spec.get("pre_ln", False)))
                self.flops += 8 * L * D * D + 4 * L * L * D + 4 * L * D * ff
            elif t == "lstm":
                H = int(spec["hidden"])
                nl = int(spec.get("layers", 1))
                m = nn.LSTM(D, H, nl, batch_first=True, dropout=float(spec.get("dropout", 0.0)))
                m.stateful = bool(spec.get("stateful", False))
                m.state = None
                for i in range(nl):
                    self.flops += 8 * L * H * ((D if i == 0 else H) + H)
                D = H
            elif t == "mlm_head":
                V = int(spec["vocab"])
                m = nn.Module()
                m.dense, m.norm = nn.Linear(D, D), nn.LayerNorm(D, eps=float(spec.get("eps", 1e-5)))
                tie = spec.get("tie", "")
                m.tied = emb[tie] if tie else None
                m.decoder = None if tie else nn.Linear(D, V, bias=False)
                m.bias = nn.Parameter(torch.zeros(V))
                self.flops += 2 * L * D * (D + V)
                self.dec_flops = 2 * D * V
            else:
                raise SystemExit("torch_seq: unsupported layer type %r" % t)
            self.mods.append(m)
            self.kinds.append(t)

    def forward(self, tok, sel):
        """tok (n, L) ids; sel: flat indices of the rows to decode, or None."""
        x = None
        pad = tok == 0
        for t, m in zip(self.kinds, self.mods):
            if t == "embedding":
                x = m(tok)
            elif t == "position_embedding":
                x = x + m.weight[: tok.shape[1]]
            elif t == "token_type_embedding":
                x = x + m.weight[0]
            elif t in ("layernorm", "dropout"):
                x = m(x)
            elif t == "transformer":
                x = m(x, src_key_padding_mask=pad)
            elif t == "lstm":
                x, st = m(x, m.state if m.stateful else None)
                if m.stateful:
                    m.state = tuple(s.detach() for s in st)
            elif t == "mlm_head":
                h = m.norm(F.gelu(m.dense(x))).reshape(-1, x.shape[-1])
                if sel is not None:
                    h = h[sel]
                w = m.tied.weight if m.tied is not None else m.decoder.weight
                x = h @ w.t() + m.bias
        return x


def batches(pattern, task, batch, mask_prob, gen):
    rows = np.concatenate([h5py.File(f, "r")["tokens"][()] for f in sorted(glob.glob(pattern))])
    if len(rows) < batch:
        raise SystemExit("torch_seq: %s has %d rows < batch %d" % (pattern, len(rows), batch))
    out = []
    for b in range(min(len(rows) // batch, 16)):
        tok = torch.tensor(rows[b * batch:(b + 1) * batch].astype(np.int64))
        if task == "lm":
            lab = torch.cat([tok[:, 1:], torch.zeros(batch, 1, dtype=torch.int64)], 1)
            lab[lab == 0] = -100
        else:
            pick = (torch.rand(tok.shape, generator=gen) < mask_prob) & (tok >= N_SPECIAL)
            lab = torch.where(pick, tok, torch.full_like(tok, -100))
            tok = torch.where(pick, torch.full_like(tok, MASK_ID), tok)
        out.append((tok, lab.reshape(-1)))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("config")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=0)
    ap.add_argument("--train", default="", help="token shard glob; default: the config's data.train")
    ap.add_argument("--decoder", default="targets", choices=["targets", "full"])
    a = ap.parse_args()
    if a.steps <= WARMUP_STEPS:
        raise SystemExit("torch_seq: --steps must exceed %d" % WARMUP_STEPS)
    torch.set_num_threads(a.threads)
    torch.manual_seed(1)
    cfg = yaml.safe_load(open(a.config))
    data, train = cfg.get("data") or {}, cfg.get("train") or {}
    task = data.get("task", "lm")
    batch = a.batch_size or int(train.get("batch_size", 32))
    pattern = a.train or data["train"]
    gen = torch.Generator().manual_seed(2)
    bs = batches(pattern, task, batch, float(data.get("mask_prob", 0.15)), gen)
    L = bs[0][0].shape[1]
    model = Model(cfg["model"]["layers"], L)
    ocfg = cfg.get("optimizer") or {}
    kind = ocfg.get("type", "sgd")
    lr = float(ocfg.get("lr", 0.01))
    if kind == "adamw":
        opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=float(ocfg.get("weight_decay", 0.01)))
    elif kind == "adam":
        opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=float(ocfg.get("weight_decay", 0.0)))
    else:
        opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=float(ocfg.get("momentum", 0.0)))
    clip = float(ocfg.get("clip_norm", 0.0))
    model.train()
    targets, t0 = 0, None
    for step in range(a.steps):
        if step == WARMUP_STEPS:
            t0 = time.perf_counter()
        tok, lab = bs[step % len(bs)]
        sel = None
        if a.decoder == "targets" and task != "lm":
            sel = (lab >= 0).nonzero().squeeze(1)
            lab = lab[sel]
        opt.zero_grad(set_to_none=True)
        logits = model(tok, sel)
        loss = F.cross_entropy(logits.reshape(lab.shape[0], -1), lab, ignore_index=-100)
        loss.backward()
        if clip > 0:
            nn.utils.clip_grad_norm_(model.parameters(), clip)
        opt.step()
        if step >= WARMUP_STEPS:
            targets += int((lab >= 0).sum())
    dt = time.perf_counter() - t0
    if not torch.isfinite(loss):
        raise SystemExit("torch_seq: loss is not finite")
    n = batch * (a.steps - WARMUP_STEPS)
    per = targets / n if task != "lm" else float(L)
    rows = per if a.decoder == "targets" else float(L)
    print(json.dumps({
        "samples_per_s": n / dt, "tokens_per_s": n * L / dt, "flops_model": float(model.flops),
        "flops_executed": float(model.flops - model.dec_flops * (L - rows)),
        "targets_per_sample": per, "steps": a.steps, "batch_size": batch, "threads": a.threads,
        "decoder": a.decoder}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
