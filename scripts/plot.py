#!/usr/bin/env python3
"""Loss and accuracy curves of a dltrain run, for people without TensorBoard.

usage: scripts/plot.py RUN_DIR [OUT.png]     (or: dltrain plot RUN_DIR [OUT.png])

Reads RUN_DIR/metrics.jsonl (one JSON object per logged training step and per
evaluation; non-finite values are null) and draws two panels against the
optimizer step: loss (train and eval) and, for classifiers, accuracy (train
and eval). Writes OUT.png (default RUN_DIR/curves.png) and prints its path.
Needs matplotlib (Debian: python3-matplotlib); no display is needed.
"""
import json
import os
import sys


def load(path):
    recs = []
    with open(path) as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                recs.append(json.loads(line))
            except json.JSONDecodeError as e:
                sys.exit(f"plot: {path}:{n}: not JSON ({e.msg})")
    return recs


def series(recs, split, key):
    pts = [(r["step"], r[key]) for r in recs
           if r.get("split") == split and r.get(key) is not None]
    return [p[0] for p in pts], [p[1] for p in pts]


def main(argv):
    if len(argv) not in (2, 3) or argv[1].startswith("-"):
        sys.exit("usage: plot.py RUN_DIR [OUT.png]")
    run = argv[1]
    src = os.path.join(run, "metrics.jsonl")
    if not os.path.isfile(src):
        sys.exit(f"plot: {src}: no such file (is {run} a dltrain run directory?)")
    out = argv[2] if len(argv) == 3 else os.path.join(run, "curves.png")
    recs = load(src)
    if not any(r.get("split") == "train" for r in recs):
        sys.exit(f"plot: {src}: no training records yet")

    import matplotlib
    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    has_acc = any(r.get("accuracy") is not None for r in recs)
    fig, axes = plt.subplots(1, 2 if has_acc else 1, figsize=(11 if has_acc else 6, 4), squeeze=False)
    panels = [("loss", "loss")] + ([("accuracy", "accuracy")] if has_acc else [])
    for ax, (key, label) in zip(axes[0], panels):
        for split, style in (("train", "-"), ("eval", "o-")):
            x, y = series(recs, split, key)
            if x:
                ax.plot(x, y, style, label=f"{split} {label}", markersize=4)
        ax.set_xlabel("step")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(os.path.basename(os.path.normpath(run)))
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    print(out)


if __name__ == "__main__":
    main(sys.argv)
