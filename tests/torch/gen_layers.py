#!/usr/bin/env python3
"""PyTorch oracle for every dltrain layer: forward and backward, one HDF5 file per case.

Usage: gen_layers.py OUTDIR   (run by `make unit` with OUTDIR = build/ref)

Design: each case builds the torch module that a dltrain layer claims to match,
fills it with seeded random weights, runs it in float64 on seeded random
float32 inputs (so the C side gets exactly the input torch used), and
backpropagates d(sum(y * R)) for a random upstream gradient R (for loss layers
R = 1, i.e. the gradient of the sum of per-sample losses, loss_scale 1).
Results are stored as float32 in OUTDIR/layer_<case>.h5:

  datasets  x (or x0, x1 for two-input layers), labels (int32), targets,
            y, dy (= R), dx (or dx0, dx1),
            <p> and <p>_grad for each parameter p under its dltrain suffix
            (weight, bias), running_mean / running_var (state before the
            forward) and running_mean_out / running_var_out (after it)
  attrs     type (layer type, ASCII), keys ("k=v k=v", the spec's kv pairs),
            train (0/1), n_inputs, check_backward (0/1), has_targets (0/1),
            n_classes

tests/unit/test_torch_layers.c globs layer_*.h5 and replays every case on the
CPU backend.  Batchnorm in eval mode is checked forward only: dltrain never
runs backward outside training, so that gradient is not part of the contract.
"""
import os
import sys

import h5py
import numpy as np
import torch
import torch.nn as nn

torch.set_num_threads(1)
torch.set_default_dtype(torch.float64)


def f32(a):
    """Rounds to float32 and returns it as float64, so torch sees exactly what the C test uploads."""
    return np.asarray(a, dtype=np.float32).astype(np.float64)


class Case:
    def __init__(self, name, ltype, keys, seed, train=1):
        self.name = name
        self.ltype = ltype
        self.keys = keys
        self.rng = np.random.RandomState(seed)
        self.train = train
        self.data = {}
        self.attrs = {}

    def uniform(self, shape, lo=-1.0, hi=1.0):
        return f32(self.rng.uniform(lo, hi, size=shape))

    def tensor(self, shape, lo=-1.0, hi=1.0, grad=False):
        t = torch.tensor(self.uniform(shape, lo, hi))
        t.requires_grad_(grad)
        return t

    def store(self, key, value, dtype=np.float32):
        if isinstance(value, torch.Tensor):
            value = value.detach().cpu().numpy()
        self.data[key] = np.ascontiguousarray(np.asarray(value, dtype=dtype))

    def write(self, outdir):
        path = os.path.join(outdir, "layer_%s.h5" % self.name)
        with h5py.File(path, "w") as f:
            for k, v in self.data.items():
                f.create_dataset(k, data=v)
            keystr = " ".join("%s=%s" % kv for kv in self.keys)
            # Fixed-length ASCII (numpy 'S') so that C reads them with H5T_C_S1.
            f.attrs["type"] = np.bytes_(self.ltype)
            f.attrs["keys"] = np.bytes_(keystr if keystr else " ")
            f.attrs["train"] = np.int32(self.train)
            for k, v in self.attrs.items():
                f.attrs[k] = np.int32(v)


def run_module(c, mod, xs, params, n_inputs=1, check_backward=1):
    """Forward mod on xs (list of input tensors), backward d(sum(y*R)), store everything."""
    mod.train(bool(c.train))
    y = mod(*xs)
    R = c.tensor(tuple(y.shape))
    if check_backward:
        (y * R).sum().backward()
    if n_inputs == 1:
        c.store("x", xs[0])
        if check_backward:
            c.store("dx", xs[0].grad)
    else:
        for i, x in enumerate(xs):
            c.store("x%d" % i, x)
            if check_backward:
                c.store("dx%d" % i, x.grad)
    c.store("y", y)
    c.store("dy", R)
    for pname, p in params.items():
        c.store(pname, p)
        if check_backward and p.grad is not None:
            c.store(pname + "_grad", p.grad)
    c.attrs["n_inputs"] = n_inputs
    c.attrs["check_backward"] = check_backward
    return y


def set_params(c, mod, names):
    """Replaces the module's parameters by seeded U(-1, 1) float32-exact values."""
    out = {}
    with torch.no_grad():
        for n in names:
            p = getattr(mod, n)
            p.copy_(torch.tensor(c.uniform(tuple(p.shape))))
            out[n] = p
    return out


# ---------------------------------------------------------------- layer cases

def dense_cases():
    # (name, batch, in_features, units, bias)
    # A shape of rank > 2 is read as (n, product of the rest), as after nn.Flatten.
    for name, shp, units, bias in [
        ("dense_b1", (1, 5), 3, 1),
        ("dense_basic", (4, 7), 6, 1),
        ("dense_nobias", (3, 9), 5, 0),
        ("dense_wide", (2, 33), 17, 1),
        ("dense_4d_input", (2, 3, 2, 3), 4, 1),
    ]:
        c = Case(name, "dense", [("units", units), ("bias", bias)], seed=len(cases_out) + 101)
        k = int(np.prod(shp[1:]))
        lin = nn.Linear(k, units, bias=bool(bias))
        params = set_params(c, lin, ["weight"] + (["bias"] if bias else []))
        mod = nn.Sequential(nn.Flatten(), lin)
        run_module(c, mod, [c.tensor(shp, grad=True)], params)
        yield c


def conv_cases():
    # (name, (N, C, H, W), filters, kernel, stride, padding, bias)
    for name, shp, kf, ks, st, pd, bias in [
        ("conv_b1_k3", (1, 1, 5, 5), 2, 3, 1, 0, 1),
        ("conv_s2_p1", (2, 3, 7, 9), 4, 3, 2, 1, 1),
        ("conv_k1_nobias", (3, 2, 6, 5), 5, 1, 1, 0, 0),
        ("conv_k5_p2", (2, 3, 8, 8), 3, 5, 1, 2, 1),
        ("conv_s2_odd", (1, 2, 9, 7), 3, 3, 2, 0, 1),
        ("conv_k2_s2", (2, 2, 6, 10), 4, 2, 2, 0, 0),
    ]:
        keys = [("filters", kf), ("kernel", ks), ("stride", st), ("padding", pd), ("bias", bias)]
        c = Case(name, "conv2d", keys, seed=len(cases_out) + 101)
        mod = nn.Conv2d(shp[1], kf, ks, stride=st, padding=pd, bias=bool(bias))
        params = set_params(c, mod, ["weight"] + (["bias"] if bias else []))
        run_module(c, mod, [c.tensor(shp, grad=True)], params)
        yield c


def pool_cases():
    # (name, type, (N, C, H, W), size, stride, padding); stride None: key left out,
    # so dltrain's default (the window size) must match torch's default.
    for name, ltype, shp, sz, st, pd in [
        ("maxpool_default_stride", "maxpool", (2, 2, 6, 7), 2, None, 0),
        ("avgpool_default_stride", "avgpool", (1, 3, 9, 6), 3, None, 0),
        ("maxpool_2x2", "maxpool", (2, 3, 6, 8), 2, 2, 0),
        ("maxpool_3s2p1", "maxpool", (1, 2, 7, 9), 3, 2, 1),
        ("maxpool_3s1p1", "maxpool", (3, 1, 5, 5), 3, 1, 1),
        ("maxpool_2s1", "maxpool", (2, 2, 9, 6), 2, 1, 0),
        ("avgpool_2x2", "avgpool", (2, 3, 6, 8), 2, 2, 0),
        ("avgpool_3s2p1", "avgpool", (1, 2, 7, 9), 3, 2, 1),
        ("avgpool_3s1p1", "avgpool", (3, 1, 5, 5), 3, 1, 1),
        ("avgpool_2s1_odd", "avgpool", (2, 2, 9, 7), 2, 1, 0),
    ]:
        keys = [("size", sz)] + ([("stride", st)] if st is not None else []) + [("padding", pd)]
        c = Case(name, ltype, keys, seed=len(cases_out) + 101)
        if ltype == "maxpool":
            mod = nn.MaxPool2d(sz, stride=st, padding=pd)
        else:
            mod = nn.AvgPool2d(sz, stride=st, padding=pd, count_include_pad=True)
        run_module(c, mod, [c.tensor(shp, -2, 2, grad=True)], {})
        yield c


def global_avgpool_cases():
    for name, shp in [("gap_basic", (2, 3, 5, 7)), ("gap_1x1", (1, 4, 1, 1)),
                      ("gap_square", (3, 6, 4, 4))]:
        c = Case(name, "global_avgpool", [], seed=len(cases_out) + 101)
        mod = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        run_module(c, mod, [c.tensor(shp, -2, 2, grad=True)], {})
        yield c


def batchnorm_cases():
    # (name, input shape, train, eps, momentum); keys given only when not default
    for name, shp, train, eps, mom in [
        ("bn4d_train", (4, 3, 5, 6), 1, None, None),
        ("bn4d_train_b1", (1, 3, 4, 5), 1, 1e-3, 0.2),
        ("bn4d_eval", (4, 3, 5, 6), 0, None, None),
        ("bn2d_train", (8, 5), 1, None, None),
        ("bn2d_train_keys", (6, 7), 1, 1e-2, 0.3),
        ("bn2d_eval", (8, 5), 0, 1e-3, 0.2),
    ]:
        keys = []
        if eps is not None:
            keys.append(("eps", eps))
        if mom is not None:
            keys.append(("momentum", mom))
        c = Case(name, "batchnorm", keys, seed=len(cases_out) + 101, train=train)
        ch = shp[1]
        kw = dict(eps=1e-5 if eps is None else eps, momentum=0.1 if mom is None else mom)
        mod = nn.BatchNorm2d(ch, **kw) if len(shp) == 4 else nn.BatchNorm1d(ch, **kw)
        params = set_params(c, mod, ["weight", "bias"])
        with torch.no_grad():
            mod.running_mean.copy_(torch.tensor(c.uniform((ch,), -0.5, 0.5)))
            mod.running_var.copy_(torch.tensor(c.uniform((ch,), 0.5, 2.0)))
        c.store("running_mean", mod.running_mean)
        c.store("running_var", mod.running_var)
        # Shifted, scaled input so that the statistics are not trivially (0, 1/3).
        x = torch.tensor(c.uniform(shp, -1.0, 3.0), requires_grad=True)
        run_module(c, mod, [x], params, check_backward=train)
        c.store("running_mean_out", mod.running_mean)
        c.store("running_var_out", mod.running_var)
        yield c


def activation_cases():
    mods = {"relu": nn.ReLU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "gelu": nn.GELU}
    for ltype, cls in mods.items():
        for tag, shp, train in [("2d", (3, 7), 1), ("4d", (2, 3, 4, 5), 1), ("b1_eval", (1, 1), 0)]:
            c = Case("%s_%s" % (ltype, tag), ltype, [], seed=len(cases_out) + 101, train=train)
            run_module(c, cls(), [c.tensor(shp, -4, 4, grad=True)], {})
            yield c


def flatten_cases():
    for name, shp in [("flatten_4d", (2, 3, 4, 5)), ("flatten_b1", (1, 7, 1, 3))]:
        c = Case(name, "flatten", [], seed=len(cases_out) + 101)
        run_module(c, nn.Flatten(), [c.tensor(shp, grad=True)], {})
        yield c


class Add(nn.Module):
    def forward(self, a, b):
        return a + b


def add_cases():
    for name, shp in [("add_4d", (2, 3, 4, 5)), ("add_2d", (5, 8)), ("add_b1", (1, 3))]:
        c = Case(name, "add", [], seed=len(cases_out) + 101)
        xs = [c.tensor(shp, grad=True), c.tensor(shp, grad=True)]
        run_module(c, Add(), xs, {}, n_inputs=2)
        yield c


def loss_run(c, logits, per_sample_loss):
    """Loss layers: y = per-sample loss, R = 1 (gradient of the sum, loss_scale 1)."""
    y = per_sample_loss
    y.sum().backward()
    c.store("x", logits)
    c.store("dx", logits.grad)
    c.store("y", y)
    c.store("dy", torch.ones_like(y))
    c.attrs["n_inputs"] = 1
    c.attrs["check_backward"] = 1


def xent_cases():
    for name, n, k, scale in [("xent_basic", 5, 10, 3.0), ("xent_b1", 1, 3, 1.0),
                              ("xent_k2", 7, 2, 1.0), ("xent_large", 4, 6, 40.0)]:
        c = Case(name, "softmax_cross_entropy", [], seed=len(cases_out) + 101)
        logits = c.tensor((n, k), -scale, scale, grad=True)
        labels = torch.tensor(c.rng.randint(0, k, size=n), dtype=torch.long)
        loss = nn.CrossEntropyLoss(reduction="none")(logits, labels)
        c.store("labels", labels, np.int32)
        # correct(i) = 1 when the first argmax is the label.
        c.store("correct", (logits.detach().argmax(dim=1) == labels).double())
        c.attrs["n_classes"] = k
        loss_run(c, logits, loss)
        yield c


def mse_cases():
    # with_targets: float targets via ctx->targets; otherwise one-hot of labels.
    for name, n, k, with_targets in [("mse_targets", 4, 6, 1), ("mse_b1_targets", 1, 3, 1),
                                     ("mse_onehot", 5, 4, 0)]:
        c = Case(name, "mse", [], seed=len(cases_out) + 101)
        y = c.tensor((n, k), -2, 2, grad=True)
        labels = torch.tensor(c.rng.randint(0, k, size=n), dtype=torch.long)
        if with_targets:
            t = torch.tensor(c.uniform((n, k)))
        else:
            t = nn.functional.one_hot(labels, k).double()
        loss = nn.MSELoss(reduction="none")(y, t).mean(dim=1)
        c.store("labels", labels, np.int32)
        c.store("targets", t)
        c.attrs["has_targets"] = with_targets
        c.attrs["n_classes"] = k
        loss_run(c, y, loss)
        yield c


cases_out = []


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: gen_layers.py OUTDIR")
    outdir = sys.argv[1]
    os.makedirs(outdir, exist_ok=True)
    torch.manual_seed(0)
    for gen in (dense_cases, conv_cases, pool_cases, global_avgpool_cases, batchnorm_cases,
                activation_cases, flatten_cases, add_cases, xent_cases, mse_cases):
        for c in gen():
            c.write(outdir)
            cases_out.append(c.name)
    with open(os.path.join(outdir, "layer_cases.txt"), "w") as f:
        f.write("\n".join(cases_out) + "\n")
    print("gen_layers: %d cases in %s" % (len(cases_out), outdir))


if __name__ == "__main__":
    main()
