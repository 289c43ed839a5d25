"""Shard files for tests/unit/test_data.c, written with h5py as a user would.

Writes into argv[1]/data/:
  good/train-0000{0,1,2}.h5  100 samples of [1, 6, 5] over unequal shards (37, 50, 13) with
                             different layouts: chunked by 8, gzip chunked by 16, contiguous;
                             int64 and int32 labels; class_names on the first two only and
                             format/version only on the first (hand-written files may omit them).
                             Pixel and label values follow a formula the test recomputes.
  rgb/train-00000.h5         20 samples of [3, 4, 4], fixed-length (bytes) class_names
  rgb_ref.h5                 x_norm: torch's (x/255 - mean)/std of rgb, float32
  nonames/train-00000.h5     6 samples, no class_names
  bad/*.h5                   one malformed file per error case
  mismatch/{a,b}.h5          shards whose sample shapes differ
  names_differ/{a,b}.h5      shards whose class_names differ
"""
import os
import sys

import h5py
import numpy as np
import torch

torch.set_num_threads(1)

NAMES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
         "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]


def pixel(g, c, y, x):
    # Must match test_data.c; 131 is invertible mod 251, so pixel(g, 0, 0, 0) identifies g < 251.
    return (g * 131 + c * 31 + y * 17 + x * 7) % 251


def label(g):
    return (g * 7 + 3) % 10


def formula_images(first, n, c, h, w):
    g, cc, yy, xx = np.meshgrid(np.arange(first, first + n), np.arange(c), np.arange(h),
                                np.arange(w), indexing="ij")
    return pixel(g, cc, yy, xx).astype(np.uint8)


def write(path, images=None, labels=None, attrs=None, **kw):
    with h5py.File(path, "w") as f:
        if images is not None:
            f.create_dataset("images", data=images, **kw)
        if labels is not None:
            f.create_dataset("labels", data=labels)
        for k, v in (attrs or {}).items():
            f.attrs[k] = v


def main():
    root = os.path.join(sys.argv[1], "data")
    for sub in ("good", "rgb", "nonames", "bad", "mismatch", "names_differ"):
        os.makedirs(os.path.join(root, sub), exist_ok=True)
    p = lambda *a: os.path.join(root, *a)

    # good: 3 shards, 100 samples, shape [1, 6, 5]
    sizes, first = [37, 50, 13], 0
    for k, n in enumerate(sizes):
        im = formula_images(first, n, 1, 6, 5)
        lb = np.array([label(g) for g in range(first, first + n)])
        attrs = {}
        if k < 2:
            attrs["class_names"] = NAMES
        if k == 0:
            attrs["format"] = "dltrain-images"
            attrs["version"] = 1
        if k == 0:
            write(p("good", "train-00000.h5"), im, lb.astype(np.int64), attrs, chunks=(8, 1, 6, 5))
        elif k == 1:
            write(p("good", "train-00001.h5"), im, lb.astype(np.int32), attrs,
                  chunks=(16, 1, 6, 5), compression="gzip")
        else:
            write(p("good", "train-00002.h5"), im, lb.astype(np.int64), attrs)
        first += n

    # rgb: fixed-length names, and the torch normalisation reference
    im = formula_images(0, 20, 3, 4, 4)
    lb = np.arange(20) % 3
    write(p("rgb", "train-00000.h5"), im, lb,
          {"class_names": np.array([b"cat", b"dog", b"bird"], dtype="S8")}, chunks=(5, 3, 4, 4))
    mean = torch.tensor([0.5, 0.4, 0.3], dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.tensor([0.25, 0.2, 0.3], dtype=torch.float32).view(1, 3, 1, 1)
    x = (torch.from_numpy(im).float() / 255.0 - mean) / std
    with h5py.File(os.path.join(root, "rgb_ref.h5"), "w") as f:
        f.create_dataset("x_norm", data=x.numpy().astype(np.float32))

    write(p("nonames", "train-00000.h5"), formula_images(0, 6, 1, 2, 2),
          np.array([0, 4, 2, 1, 0, 3], dtype=np.int64))

    # bad: one file per error case
    u8 = lambda *s: np.zeros(s, dtype=np.uint8)
    lab = lambda n: np.zeros(n, dtype=np.int64)
    write(p("bad", "images_rank3.h5"), u8(10, 28, 28), lab(10))
    write(p("bad", "labels_len.h5"), u8(10, 1, 4, 4), lab(9))
    write(p("bad", "float_images.h5"), np.zeros((10, 1, 4, 4), np.float32), lab(10))
    write(p("bad", "no_labels.h5"), u8(10, 1, 4, 4))
    write(p("bad", "no_images.h5"), None, lab(10))
    write(p("bad", "labels_rank2.h5"), u8(10, 1, 4, 4), np.zeros((10, 1), np.int64))
    write(p("bad", "labels_float.h5"), u8(10, 1, 4, 4), np.zeros(10, np.float32))
    neg = lab(10)
    neg[7] = -1
    write(p("bad", "negative_label.h5"), u8(10, 1, 4, 4), neg)
    write(p("bad", "version2.h5"), u8(10, 1, 4, 4), lab(10),
          {"format": "dltrain-images", "version": 2})
    write(p("bad", "wrong_format.h5"), u8(10, 1, 4, 4), lab(10), {"format": "dltrain-tokens"})
    over = lab(10)
    over[3] = 5
    write(p("bad", "label_over_names.h5"), u8(10, 1, 4, 4), over, {"class_names": ["a", "b"]})
    with open(p("bad", "not_hdf5.h5"), "w") as f:
        f.write("this is not an HDF5 file\n")

    # truncated: a valid file cut short; corrupt_gzip: valid metadata, damaged compressed chunks
    big = formula_images(0, 400, 1, 16, 16)
    write(p("bad", "truncated.h5"), big, lab(400), chunks=(16, 1, 16, 16))
    size = os.path.getsize(p("bad", "truncated.h5"))
    with open(p("bad", "truncated.h5"), "r+b") as f:
        f.truncate(size * 6 // 10)
    noisy = np.random.RandomState(5).randint(0, 256, (400, 1, 16, 16)).astype(np.uint8)
    write(p("bad", "corrupt_gzip.h5"), noisy, lab(400), chunks=(16, 1, 16, 16), compression="gzip")
    with h5py.File(p("bad", "corrupt_gzip.h5"), "r") as f:
        off = f["images"].id.get_chunk_info(5).byte_offset   # chunk 5: samples [80, 96)
    with open(p("bad", "corrupt_gzip.h5"), "r+b") as f:
        f.seek(off + 20)
        f.write(b"\x00\xff" * 64)

    # chunked: the same 30 samples of [2, 6, 5] in layouts h5py users write
    os.makedirs(p("chunked"), exist_ok=True)
    im = formula_images(0, 30, 2, 6, 5)
    lb = np.array([label(g) for g in range(30)], dtype=np.int64)
    layouts = {
        "contiguous": {},
        "n1": {"chunks": (1, 2, 6, 5)},
        "n7_split_hw": {"chunks": (7, 1, 4, 3)},
        "gzip9_shuffle": {"chunks": (4, 2, 6, 5), "compression": "gzip", "compression_opts": 9,
                          "shuffle": True},
        "gzip_whole": {"chunks": (30, 2, 6, 5), "compression": "gzip", "maxshape": (None, 2, 6, 5)},
        "auto": {"chunks": True, "compression": "gzip"},
    }
    for name, kw in layouts.items():
        write(p("chunked", name + ".h5"), im, lb, **kw)

    write(p("mismatch", "a.h5"), u8(5, 1, 4, 4), lab(5))
    write(p("mismatch", "b.h5"), u8(5, 1, 4, 5), lab(5))
    write(p("names_differ", "a.h5"), u8(5, 1, 4, 4), lab(5), {"class_names": ["a", "b"]})
    write(p("names_differ", "b.h5"), u8(5, 1, 4, 4), lab(5), {"class_names": ["a", "c"]})


if __name__ == "__main__":
    main()
