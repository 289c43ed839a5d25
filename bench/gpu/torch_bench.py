"""PyTorch side of bench/gpu/run.sh: the bf16 GEMM peak and the reference
models (ResNet-34 on ImageNet shapes, BERT-base MLM at seq 128/512, a
2-layer LSTM LM) timed in eager fp32, AMP bf16, channels_last (ResNet) and
torch.compile (when it works). Prints markdown table rows
"| torch <mode> | model | samples/s | MFU |".
Usage: python3 torch_bench.py peak|models"""
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


def resnet34():
    import torchvision
    return torchvision.models.resnet34(num_classes=1000)


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
        ("resnet34-synthetic-b128", resnet34, lambda: (torch.randn(128, 3, 224, 224, device=dev), torch.randint(0, 1000, (128,), device=dev)), nn.functional.cross_entropy, 128, 3 * 3.6e9),
        ("bert-base-mlm-seq128-b64", Bert, lambda: (torch.randint(1, 8000, (64, 128), device=dev), torch.randint(0, 8000, (64, 128), device=dev)), seq_loss, 64, 6 * 86e6 * 128),
        ("bert-base-mlm-seq512-b16", Bert, lambda: (torch.randint(1, 8000, (16, 512), device=dev), torch.randint(0, 8000, (16, 512), device=dev)), seq_loss, 16, 6 * 86e6 * 512),
        ("lstm-lm-b32", LSTMLM, lambda: (torch.randint(1, 10000, (32, 35), device=dev), torch.randint(0, 10000, (32, 35), device=dev)), seq_loss, 32, None),
    ]
    for name, ctor, batch, loss_fn, bs, flops in cases:
        modes = [("eager fp32", False, False, False), ("AMP bf16", True, False, False)]
        if name.startswith("resnet"):
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
        models(peak())
