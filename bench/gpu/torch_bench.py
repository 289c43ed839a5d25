"""PyTorch side of bench/gpu/run.sh: the bf16 GEMM peak and the reference
models (torchvision ResNet-50 on ImageNet shapes, BERT-base MLM at seq
128/512, a 2-layer LSTM LM) timed in eager fp32, AMP bf16, channels_last
(ResNet) and torch.compile (when it works), plus ResNet-50 fed from the
benchmark's HDF5 shards (h5py + DataLoader, when h5py is importable).
Prints markdown table rows "| torch <mode> | model | samples/s | MFU |".
MFU counts 3 x forward FLOPs per sample (forward + backward), with the
same forward counts as dltrain's summary.json (ResNet-50: 8.18 GFLOP =
2 x 4.09 GMAC).
Usage: python3 torch_bench.py peak | models [PEAK_TFLOPS [HDF5_GLOB]]"""
import sys, time
import torch
import torch.nn as nn

dev = "cuda"


def timeit(fn, steps=20, warm=5):
    for _ in range(warm):
        fn()
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(steps):
        fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - t) / steps


def peak():
    a = torch.randn(8192, 8192, device=dev, dtype=torch.bfloat16)
    b = torch.randn(8192, 8192, device=dev, dtype=torch.bfloat16)
    s = timeit(lambda: a @ b, 10, 3)
    return 2 * 8192 ** 3 / s / 1e12


def train_step(model, make_batch, loss_fn, amp, opt):
    x, y = make_batch()
    def step():
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
            loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
    return step


def resnet50():
    import torchvision
    return torchvision.models.resnet50(num_classes=1000)


R50_FLOPS = 3 * 8.18e9


def resnet50_hdf5(pattern, pk, bs=128, steps=20):
    """AMP bf16 channels_last ResNet-50 reading uint8 shards through a
    DataLoader (8 workers, pinned), normalised on the GPU, as dltrain's
    resnet50-hdf5 row (which also crops and flips: a lower bound here)."""
    import glob
    import h5py
    import numpy as np

    files = sorted(glob.glob(pattern))

    class Shards(torch.utils.data.Dataset):
        def __init__(self):
            self.idx = [(f, i) for f in files for i in range(len(h5py.File(f, "r")["labels"]))]
            self.open = {}

        def __len__(self):
            return len(self.idx)

        def __getitem__(self, k):
            f, i = self.idx[k]
            h = self.open.get(f) or self.open.setdefault(f, h5py.File(f, "r"))
            return torch.from_numpy(np.asarray(h["images"][i])), int(h["labels"][i])

    dl = torch.utils.data.DataLoader(Shards(), batch_size=bs, shuffle=True, num_workers=8,
                                     pin_memory=True, drop_last=True, persistent_workers=True)
    m = resnet50().to(dev).to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9)
    mean = torch.tensor([0.485, 0.456, 0.406], device=dev).view(1, 3, 1, 1) * 255
    std = torch.tensor([0.229, 0.224, 0.225], device=dev).view(1, 3, 1, 1) * 255

    def batches():
        while True:
            for x, y in dl:
                yield x, y

    it = batches()

    def step():
        x, y = next(it)
        x = ((x.to(dev, non_blocking=True).float() - mean) / std).contiguous(memory_format=torch.channels_last)
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = nn.functional.cross_entropy(m(x), y.to(dev, non_blocking=True))
        loss.backward()
        opt.step()

    s = timeit(step, steps, 5)
    mfu = "%.1f%%" % (100 * R50_FLOPS * bs / s / 1e12 / pk) if pk else "n/a"
    print("| torch AMP bf16 channels_last hdf5 | resnet50-hdf5-b%d | %.1f | %s |" % (bs, bs / s, mfu), flush=True)


class Bert(nn.Module):
    def __init__(self, vocab=8000, d=768, layers=12, heads=12, ff=3072, maxlen=512):
        super().__init__()
        self.tok, self.pos = nn.Embedding(vocab, d), nn.Embedding(maxlen, d)
        layer = nn.TransformerEncoderLayer(d, heads, ff, 0.1, activation="gelu", batch_first=True, norm_first=False)
        self.enc = nn.TransformerEncoder(layer, layers)
        self.ln, self.out = nn.LayerNorm(d), nn.Linear(d, vocab)

    def forward(self, ids):
        h = self.tok(ids) + self.pos(torch.arange(ids.shape[1], device=ids.device))
        return self.out(self.ln(self.enc(h)))


class LSTMLM(nn.Module):
    def __init__(self, vocab=10000, d=256, h=512):
        super().__init__()
        self.emb, self.lstm, self.out = nn.Embedding(vocab, d), nn.LSTM(d, h, 2, batch_first=True), nn.Linear(h, vocab)

    def forward(self, ids):
        return self.out(self.lstm(self.emb(ids))[0])


def seq_loss(logits, y):
    return nn.functional.cross_entropy(logits.flatten(0, 1), y.flatten(), ignore_index=-100)


def models(pk):
    cases = [
        ("resnet50-synthetic-b128", resnet50, lambda: (torch.randn(128, 3, 224, 224, device=dev), torch.randint(0, 1000, (128,), device=dev)), nn.functional.cross_entropy, 128, R50_FLOPS),
        ("bert-base-mlm-seq128-b64", Bert, lambda: (torch.randint(1, 8000, (64, 128), device=dev), torch.randint(0, 8000, (64, 128), device=dev)), seq_loss, 64, 6 * 86e6 * 128),
        ("bert-base-mlm-seq512-b16", Bert, lambda: (torch.randint(1, 8000, (16, 512), device=dev), torch.randint(0, 8000, (16, 512), device=dev)), seq_loss, 16, 6 * 86e6 * 512),
        ("lstm-lm-b32", LSTMLM, lambda: (torch.randint(1, 10000, (32, 35), device=dev), torch.randint(0, 10000, (32, 35), device=dev)), seq_loss, 32, None),
    ]
    for name, ctor, batch, loss_fn, bs, flops in cases:
        modes = [("eager fp32", False, False, False), ("AMP bf16", True, False, False)]
        if name.startswith("resnet"):
            # fp32 channels_last isolates what NHWC alone buys with fp32
            # storage (dltrain's case; docs/decisions.md, NHWC)
            modes.append(("eager fp32 channels_last", False, True, False))
            modes.append(("AMP bf16 channels_last", True, True, False))
        modes.append(("AMP bf16 compile", True, name.startswith("resnet"), True))
        for mode, amp, cl, comp in modes:
            try:
                torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
                m = ctor().to(dev)
                if cl:
                    m = m.to(memory_format=torch.channels_last)
                run = torch.compile(m) if comp else m
                opt = torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9)
                def mb(batch=batch, cl=cl):
                    x, y = batch()
                    return (x.to(memory_format=torch.channels_last) if cl else x), y
                s = timeit(train_step(run, mb, loss_fn, amp, opt))
                mfu = "%.1f%%" % (100 * flops * bs / s / 1e12 / pk) if flops and pk else "n/a"
                print("| torch %s | %s | %.1f | %s |" % (mode, name, bs / s, mfu), flush=True)
                del m, run, opt
                torch.cuda.empty_cache()
            except Exception as e:  # a mode that does not work is reported, not fatal
                print("| torch %s | %s | failed: %s | |" % (mode, name, str(e).splitlines()[0][:80]), flush=True)


if __name__ == "__main__":
    if sys.argv[1:] == ["peak"]:
        print("%.0f" % peak())
    else:
        try:
            pk = float(sys.argv[2])
        except (IndexError, ValueError):  # not given or not measured: measure here
            pk = peak()
        models(pk)
        if len(sys.argv) > 3:
            try:
                resnet50_hdf5(sys.argv[3], pk)
            except Exception as e:  # no h5py, or no shards: say so in the table
                print("| torch AMP bf16 channels_last hdf5 | resnet50-hdf5-b128 | failed: %s | |"
                      % str(e).splitlines()[0][:80], flush=True)
