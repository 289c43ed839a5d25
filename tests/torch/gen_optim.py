#!/usr/bin/env python3
"""Reference files for tests/unit/test_optim.c: torch.optim is the oracle.

Usage: gen_optim.py OUTDIR

Writes, one HDF5 file per case (hyper-parameters as root attributes, so the C
test reads each case the same way):

  optim_<case>.h5   a trajectory of torch.optim on float32 tensors, optionally
                    with clip_grad_norm_ and an LR scheduler before each step:
                      w0 (n)         initial weights
                      grads (S, n)   gradient fed at each step (before clipping)
                      weights (S, n) weights after each step
                      norms (S)      global gradient norm before clipping
                    attrs: kind (dlt_opt_kind), lr, weight_decay, momentum,
                      nesterov, beta1, beta2, alpha, eps, clip_norm,
                      sched (dlt_sched_kind), lr_min, step_size, gamma,
                      total_steps, warmup_steps
  sched_<case>.h5   lr (T): the documented closed-form schedule for steps
                    0..T-1 (same attrs as above for the schedule); the script
                    asserts that it equals torch.optim.lr_scheduler where
                    torch defines the same thing (see check_against_torch)
  clip_<case>.h5    g (n) gradients, clipped (n) after clip_grad_norm_ over a
                    list of 3 tensors (a global norm), attrs clip_norm, norm

The schedule formula (core/optim.c), for 0-based step and warm-up W:
  step < W : lr * (step + 1) / W
  s = step - W afterwards:
    constant: lr
    step    : lr * gamma ** (s // step_size)                   (torch StepLR)
    cosine  : lr_min + (lr - lr_min) * (1 + cos(pi s / T)) / 2,  T = total - W,
              and lr_min for s >= T                   (torch CosineAnnealingLR
              for s <= T; torch rises again past T, dltrain stays at lr_min)
  With W > 1 this equals SequentialLR([LinearLR(1/W, 1.0, W - 1), sched], [W])
  (W == 1: a constant factor 1 for the one warm-up step, then sched).
"""
import math
import os
import sys
import warnings

import h5py
import numpy as np
import torch

# dlt_opt_kind and dlt_sched_kind (core/backend.h, core/optim.h) enum values.
SGD, ADAM, ADAMW, ADAGRAD, RMSPROP = range(5)
CONSTANT, STEP, COSINE = range(3)

DEFAULT_HP = dict(lr=0.01, weight_decay=0.0, momentum=0.0, nesterov=0, beta1=0.9,
                  beta2=0.999, alpha=0.99, eps=1e-8, clip_norm=0.0, sched=CONSTANT,
                  lr_min=0.0, step_size=1, gamma=1.0, total_steps=0, warmup_steps=0)


def sched_formula(hp, step):
    """The documented closed form, in double precision."""
    lr, w = hp["lr"], hp["warmup_steps"]
    if step < w:
        return lr * (step + 1) / w
    s = step - w
    if hp["sched"] == CONSTANT:
        return lr
    if hp["sched"] == STEP:
        return lr * hp["gamma"] ** (s // hp["step_size"])
    total = hp["total_steps"] - w
    if s >= total:
        return hp["lr_min"]
    return hp["lr_min"] + (lr - hp["lr_min"]) * (1 + math.cos(math.pi * s / total)) / 2


def torch_scheduler(opt, hp):
    """The torch.optim.lr_scheduler equivalent of hp's schedule."""
    sch = torch.optim.lr_scheduler
    if hp["sched"] == CONSTANT:
        main = sch.LambdaLR(opt, lambda e: 1.0)
    elif hp["sched"] == STEP:
        main = sch.StepLR(opt, step_size=hp["step_size"], gamma=hp["gamma"])
    else:
        main = sch.CosineAnnealingLR(opt, T_max=hp["total_steps"] - hp["warmup_steps"],
                                     eta_min=hp["lr_min"])
    w = hp["warmup_steps"]
    if w == 0:
        return main
    if w == 1:  # one warm-up step at the full rate; LinearLR needs total_iters >= 1
        warm = sch.LambdaLR(opt, lambda e: 1.0)
    else:
        warm = sch.LinearLR(opt, start_factor=1.0 / w, end_factor=1.0, total_iters=w - 1)
    return sch.SequentialLR(opt, [warm, main], milestones=[w])


def make_optimizer(params, hp):
    k = hp["kind"]
    if k == SGD:
        return torch.optim.SGD(params, lr=hp["lr"], momentum=hp["momentum"],
                               nesterov=bool(hp["nesterov"]), weight_decay=hp["weight_decay"])
    if k in (ADAM, ADAMW):
        cls = torch.optim.Adam if k == ADAM else torch.optim.AdamW
        return cls(params, lr=hp["lr"], betas=(hp["beta1"], hp["beta2"]), eps=hp["eps"],
                   weight_decay=hp["weight_decay"])
    if k == ADAGRAD:
        return torch.optim.Adagrad(params, lr=hp["lr"], eps=hp["eps"],
                                   weight_decay=hp["weight_decay"])
    return torch.optim.RMSprop(params, lr=hp["lr"], alpha=hp["alpha"], eps=hp["eps"],
                               momentum=hp["momentum"], weight_decay=hp["weight_decay"])


def write(path, attrs, **dsets):
    with h5py.File(path, "w") as f:
        for k, v in attrs.items():
            f.attrs[k] = float(v)
        for k, v in dsets.items():
            f.create_dataset(k, data=np.asarray(v, dtype=np.float32))


def trajectory(outdir, name, hp, n=37, steps=6, seed=0, gscale=1.0):
    """One optimizer run on a single float32 tensor of n elements."""
    hp = {**DEFAULT_HP, **hp}
    g = torch.Generator().manual_seed(seed)
    w0 = torch.randn(n, generator=g, dtype=torch.float32)
    # Step-dependent magnitudes so clipping fires on some steps and not others.
    scales = [gscale * (0.2 + 1.5 * (i % 3)) for i in range(steps)]
    grads = torch.stack([torch.randn(n, generator=g) * s for s in scales])
    p = torch.nn.Parameter(w0.clone())
    opt = make_optimizer([p], hp)
    sched = torch_scheduler(opt, hp) if (hp["sched"] != CONSTANT or hp["warmup_steps"]) else None
    weights, norms = [], []
    for i in range(steps):
        assert abs(opt.param_groups[0]["lr"] - sched_formula(hp, i)) <= 1e-9 * hp["lr"], name
        p.grad = grads[i].clone()
        # torch computes the norm in float32; store the float64 one dltrain targets.
        norms.append(float(grads[i].double().norm()))
        if hp["clip_norm"] > 0:
            torch.nn.utils.clip_grad_norm_([p], hp["clip_norm"])
        opt.step()
        if sched is not None:
            sched.step()
        weights.append(p.detach().clone())
    write(os.path.join(outdir, f"optim_{name}.h5"), hp, w0=w0, grads=grads,
          weights=torch.stack(weights), norms=norms)


def check_against_torch(hp, steps):
    """Asserts the formula equals torch's scheduler over the steps it covers."""
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=hp["lr"])
    sched = torch_scheduler(opt, hp)
    for i in range(steps):
        got, want = opt.param_groups[0]["lr"], sched_formula(hp, i)
        assert abs(got - want) <= 1e-9 * max(hp["lr"], 1e-30), (hp, i, got, want)
        opt.step()
        sched.step()


def schedules(outdir):
    cases = {
        "constant": dict(lr=0.1),
        "constant_warm": dict(lr=0.1, warmup_steps=5),
        "step": dict(lr=0.1, sched=STEP, step_size=3, gamma=0.5),
        "step_warm": dict(lr=0.2, sched=STEP, step_size=4, gamma=0.1, warmup_steps=3),
        "cosine": dict(lr=0.1, sched=COSINE, lr_min=0.001, total_steps=20),
        "cosine_warm": dict(lr=0.05, sched=COSINE, lr_min=0.0, total_steps=24, warmup_steps=6),
        "cosine_warm1": dict(lr=0.05, sched=COSINE, lr_min=0.01, total_steps=10, warmup_steps=1),
    }
    for name, c in cases.items():
        hp = {**DEFAULT_HP, "kind": SGD, **c}
        steps = 30
        # torch's cosine is periodic past T; compare only up to the end of it.
        torch_steps = hp["total_steps"] + 1 if hp["sched"] == COSINE else steps
        check_against_torch(hp, torch_steps)
        lr = [sched_formula(hp, i) for i in range(steps)]
        write(os.path.join(outdir, f"sched_{name}.h5"), hp, lr=lr)


def clip_cases(outdir):
    g = torch.Generator().manual_seed(7)
    for name, clip, scale in (("above", 1.0, 3.0), ("below", 50.0, 1.0), ("far_above", 0.5, 100.0)):
        parts = [torch.randn(s, generator=g) * scale for s in (5, 12, 3)]
        orig = torch.cat(parts).clone()
        params = [torch.nn.Parameter(torch.zeros_like(t)) for t in parts]
        for q, t in zip(params, parts):
            q.grad = t.clone()
        norm = torch.nn.utils.clip_grad_norm_(params, clip)
        clipped = torch.cat([q.grad for q in params])
        write(os.path.join(outdir, f"clip_{name}.h5"),
              dict(clip_norm=clip, norm=float(orig.double().norm()), torch_norm=float(norm)),
              g=orig, clipped=clipped)


def main():
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")  # SequentialLR's step(0) deprecation notice
    outdir = sys.argv[1]
    os.makedirs(outdir, exist_ok=True)
    cases = {
        "sgd": dict(kind=SGD, lr=0.1),
        "sgd_wd": dict(kind=SGD, lr=0.1, weight_decay=0.05),
        "sgd_mom": dict(kind=SGD, lr=0.05, momentum=0.9),
        "sgd_mom_wd": dict(kind=SGD, lr=0.05, momentum=0.8, weight_decay=0.05),
        "sgd_nesterov": dict(kind=SGD, lr=0.05, momentum=0.9, nesterov=1),
        "sgd_nesterov_wd": dict(kind=SGD, lr=0.05, momentum=0.9, nesterov=1, weight_decay=0.01),
        "adam": dict(kind=ADAM, lr=0.01),
        "adam_wd": dict(kind=ADAM, lr=0.01, weight_decay=0.1, beta1=0.8, beta2=0.99, eps=1e-6),
        "adamw": dict(kind=ADAMW, lr=0.01, weight_decay=0.1),
        "adamw_betas": dict(kind=ADAMW, lr=0.003, weight_decay=0.5, beta1=0.5, beta2=0.9,
                            eps=1e-4),
        "adagrad": dict(kind=ADAGRAD, lr=0.1, eps=1e-10),
        "adagrad_wd": dict(kind=ADAGRAD, lr=0.1, eps=1e-10, weight_decay=0.05),
        "rmsprop": dict(kind=RMSPROP, lr=0.01, alpha=0.99, eps=1e-8),
        "rmsprop_mom": dict(kind=RMSPROP, lr=0.01, alpha=0.9, eps=1e-8, momentum=0.9),
        "rmsprop_mom_wd": dict(kind=RMSPROP, lr=0.005, alpha=0.95, eps=1e-6, momentum=0.5,
                               weight_decay=0.01),
        # Schedules and clipping through the whole driver (dlt_optim_step).
        "sgd_step_clip": dict(kind=SGD, lr=0.1, momentum=0.9, sched=STEP, step_size=2,
                              gamma=0.5, clip_norm=3.0),
        "adamw_cosine_clip": dict(kind=ADAMW, lr=0.01, weight_decay=0.1, sched=COSINE,
                                  lr_min=0.001, total_steps=8, warmup_steps=3, clip_norm=4.0),
        "rmsprop_warm": dict(kind=RMSPROP, lr=0.01, alpha=0.99, eps=1e-8, warmup_steps=4),
    }
    for name, hp in cases.items():
        trajectory(outdir, name, hp, seed=len(name))
    # Large enough for the OpenMP path of the CPU update (>= 32768 elements).
    trajectory(outdir, "adam_large", dict(kind=ADAM, lr=0.01, weight_decay=0.01, clip_norm=200.0),
               n=40000, steps=5, seed=3)
    trajectory(outdir, "sgd_nesterov_large", dict(kind=SGD, lr=0.05, momentum=0.9, nesterov=1),
               n=40000, steps=5, seed=4)
    schedules(outdir)
    clip_cases(outdir)


if __name__ == "__main__":
    main()
