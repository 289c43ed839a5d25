#!/usr/bin/python3
"""PyTorch reference throughput for `make bench`: the same model, batch and
optimizer as a dltrain config, trained on synthetic data.

Design: the dltrain YAML config is the single source of truth. This script
parses it (python3-yaml) and builds the equivalent torch.nn.Sequential, so a
change to configs/*.yaml changes both sides of the comparison. Key names are
read with a few aliases (units/out_features, filters/out_channels, ...) so
the script survives small naming choices in the config table; a layer type
or optimizer it does not know is an error, never silently skipped, because a
wrong model would make the comparison meaningless.

The data are random tensors created once (the pure compute ceiling: no
decoding, no input pipeline). With --world W > 1 the script starts W
processes that train with DistributedDataParallel over gloo, each with the
global batch / W samples and --threads intra-op threads, which mirrors
`mpirun -np W dltrain` with 1 OpenMP thread per rank. Like dltrain's
summary.json, throughput excludes the first 5 steps (allocation, warm-up).
The learning-rate schedule is not mirrored: it changes no per-step work.

Prints one JSON line: samples_per_s, flops_per_sample (forward, counted the
way dltrain counts them: 2 per multiply-add of dense and conv layers), steps,
world, batch_size (global), threads.

Usage: torch_ref.py CONFIG [--steps N] [--threads T] [--world W]
                           [--input-shape C,H,W] [--batch-size B]
"""
import argparse
import json
import os
import sys
import tempfile
import time

import torch
import torch.nn as nn
import yaml

WARMUP_STEPS = 5


def pick(d, names, default=None, required=False, what=""):
    """First key of `names` present in mapping d; the aliases absorb naming
    differences between this script and the dltrain key table."""
    for n in names:
        if n in d:
            return d[n]
    if required:
        raise SystemExit("torch_ref: %s needs one of %s (got %s)" % (what, names, sorted(d)))
    return default


def pair(v):
    """A kernel/stride/pad value may be a scalar or a [h, w] list."""
    if isinstance(v, (list, tuple)):
        return (int(v[0]), int(v[1]))
    return (int(v), int(v))


def build_model(layers, in_shape):
    """Sequential model and its forward FLOPs per sample from the config's
    model.layers; in_shape is (C, H, W) without the batch."""
    mods, flops = [], 0
    shape = tuple(in_shape)
    for i, spec in enumerate(layers):
        t = str(spec.get("type", "")).lower()
        what = "layer %d (%s)" % (i, t)
        if t in ("dense", "linear", "fc", "fully_connected"):
            fan_in = 1
            for s in shape:
                fan_in *= s
            if len(shape) > 1:
                mods.append(nn.Flatten())
            out = int(pick(spec, ("units", "out_features", "outputs", "out", "size", "n"),
                           required=True, what=what))
            bias = bool(pick(spec, ("bias", "use_bias"), True))
            mods.append(nn.Linear(fan_in, out, bias=bias))
            flops += 2 * fan_in * out
            shape = (out,)
        elif t in ("conv2d", "conv", "convolution"):
            c, h, w = shape
            out = int(pick(spec, ("filters", "out_channels", "channels", "outputs", "out", "units"),
                           required=True, what=what))
            k = pair(pick(spec, ("kernel", "kernel_size", "size", "k"), required=True, what=what))
            s = pair(pick(spec, ("stride", "strides"), 1))
            p = pair(pick(spec, ("pad", "padding"), 0))
            bias = bool(pick(spec, ("bias", "use_bias"), True))
            mods.append(nn.Conv2d(c, out, k, stride=s, padding=p, bias=bias))
            ho = (h + 2 * p[0] - k[0]) // s[0] + 1
            wo = (w + 2 * p[1] - k[1]) // s[1] + 1
            flops += 2 * out * ho * wo * c * k[0] * k[1]
            shape = (out, ho, wo)
        elif t in ("maxpool", "maxpool2d", "max_pool", "max_pool2d", "avgpool", "avgpool2d",
                   "avg_pool", "avg_pool2d"):
            c, h, w = shape
            k = pair(pick(spec, ("size", "kernel", "kernel_size", "pool", "k"), 2))
            s = pair(pick(spec, ("stride", "strides"), k))
            p = pair(pick(spec, ("pad", "padding"), 0))
            cls = nn.MaxPool2d if t.startswith("max") else nn.AvgPool2d
            mods.append(cls(k, stride=s, padding=p))
            shape = (c, (h + 2 * p[0] - k[0]) // s[0] + 1, (w + 2 * p[1] - k[1]) // s[1] + 1)
        elif t == "flatten":
            n = 1
            for d in shape:
                n *= d
            mods.append(nn.Flatten())
            shape = (n,)
        elif t == "relu":
            mods.append(nn.ReLU())
        elif t == "tanh":
            mods.append(nn.Tanh())
        elif t == "sigmoid":
            mods.append(nn.Sigmoid())
        elif t == "gelu":
            mods.append(nn.GELU())
        elif t == "dropout":
            mods.append(nn.Dropout(float(pick(spec, ("rate", "p", "prob"), 0.5))))
        elif t in ("softmax_cross_entropy", "cross_entropy", "softmax_xent", "softmax_ce", "loss"):
            continue  # the loss is applied below, as in dltrain's loss layer
        else:
            raise SystemExit("torch_ref: unsupported layer type %r in layer %d" % (t, i))
    return nn.Sequential(*mods), flops, shape


def build_optimizer(ocfg, params):
    """torch.optim equivalent of the config's optimizer section (dltrain's
    optimizers follow torch.optim semantics, see core/optim.h)."""
    if isinstance(ocfg, str):
        ocfg = {"name": ocfg}
    ocfg = ocfg or {}
    kind = str(pick(ocfg, ("name", "type", "kind", "algorithm"), "sgd")).lower()
    lr = float(ocfg.get("lr", 0.01))
    wd = float(pick(ocfg, ("weight_decay", "wd"), 0.0))
    eps = float(ocfg.get("eps", 1e-8))
    betas = (float(ocfg.get("beta1", 0.9)), float(ocfg.get("beta2", 0.999)))
    if kind == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=float(ocfg.get("momentum", 0.0)),
                               weight_decay=wd, nesterov=bool(ocfg.get("nesterov", False)))
    if kind == "adam":
        return torch.optim.Adam(params, lr=lr, betas=betas, eps=eps, weight_decay=wd)
    if kind == "adamw":
        return torch.optim.AdamW(params, lr=lr, betas=betas, eps=eps,
                                 weight_decay=float(pick(ocfg, ("weight_decay", "wd"), 0.01)))
    if kind == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr, alpha=float(ocfg.get("alpha", 0.99)), eps=eps,
                                   weight_decay=wd, momentum=float(ocfg.get("momentum", 0.0)))
    raise SystemExit("torch_ref: unsupported optimizer %r" % kind)


def load_config(path):
    with open(path) as f:
        cfg = yaml.safe_load(f) or {}
    model = cfg.get("model") or {}
    layers = model.get("layers")
    if not layers:
        raise SystemExit("torch_ref: %s has no model.layers" % path)
    train = cfg.get("train") or {}
    ocfg = cfg.get("optimizer") or {}
    clip = float(pick(ocfg, ("clip_norm",), 0.0) if isinstance(ocfg, dict) else 0.0)
    in_shape = tuple(int(v) for v in (model.get("input") or (1, 28, 28)))
    return cfg, layers, int(train.get("batch_size", 64)), ocfg, clip, in_shape


def train(rank, args, result_path):
    """One rank: build, train args.steps steps, rank 0 writes the result."""
    torch.set_num_threads(args.threads)
    torch.manual_seed(1234)  # same initial weights on every rank, as DDP expects
    _, layers, gbatch, ocfg, clip, in_shape = load_config(args.config)
    if args.input_shape:
        in_shape = args.input_shape
    if args.batch_size:
        gbatch = args.batch_size
    if gbatch % args.world:
        raise SystemExit("torch_ref: batch %d not divisible by world %d" % (gbatch, args.world))
    local = gbatch // args.world
    model, flops, out_shape = build_model(layers, in_shape)
    if args.world > 1:
        import torch.distributed as dist
        dist.init_process_group("gloo", init_method="file://" + args.rendezvous,
                                rank=rank, world_size=args.world)
        model = nn.parallel.DistributedDataParallel(model)
    n_classes = out_shape[0]
    opt = build_optimizer(ocfg, model.parameters())
    lossf = nn.CrossEntropyLoss()
    gen = torch.Generator().manual_seed(100 + rank)
    # A few distinct batches so that caches do not see the same input every step.
    xs = [torch.rand((local,) + tuple(in_shape), generator=gen) for _ in range(4)]
    ys = [torch.randint(0, n_classes, (local,), generator=gen) for _ in range(4)]
    model.train()
    t0 = None
    for step in range(args.steps):
        if step == WARMUP_STEPS:
            if args.world > 1:
                torch.distributed.barrier()
            t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = lossf(model(xs[step % 4]), ys[step % 4])
        loss.backward()
        if clip > 0:
            nn.utils.clip_grad_norm_(model.parameters(), clip)
        opt.step()
    if args.world > 1:
        torch.distributed.barrier()
    dt = time.perf_counter() - t0
    if not torch.isfinite(loss):
        raise SystemExit("torch_ref: loss is not finite")
    if rank == 0:
        res = {"samples_per_s": gbatch * (args.steps - WARMUP_STEPS) / dt,
               "flops_per_sample": float(flops), "steps": args.steps, "world": args.world,
               "batch_size": gbatch, "threads": args.threads}
        with open(result_path, "w") as f:
            json.dump(res, f)
    if args.world > 1:
        torch.distributed.destroy_process_group()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("config")
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--threads", type=int, default=1, help="intra-op threads per process")
    ap.add_argument("--world", type=int, default=1, help="DDP processes (gloo)")
    ap.add_argument("--batch-size", type=int, default=0, help="global batch; 0: the config's")
    ap.add_argument("--input-shape", default="",
                    help="C,H,W of one sample; default: the config's model.input, else 1,28,28")
    args = ap.parse_args()
    if args.input_shape:
        args.input_shape = tuple(int(v) for v in args.input_shape.split(","))
    if args.steps <= WARMUP_STEPS:
        raise SystemExit("torch_ref: --steps must exceed %d" % WARMUP_STEPS)
    if args.threads < 1 or args.world < 1:
        raise SystemExit("torch_ref: --threads and --world must be >= 1")
    with tempfile.TemporaryDirectory() as tmp:
        result_path = os.path.join(tmp, "result.json")
        args.rendezvous = os.path.join(tmp, "rendezvous")
        if args.world == 1:
            train(0, args, result_path)
        else:
            import torch.multiprocessing as mp
            mp.spawn(train, args=(args, result_path), nprocs=args.world, join=True)
        with open(result_path) as f:
            print(json.dumps(json.load(f)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
