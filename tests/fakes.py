"""Tiny datasets written in the real upstream file formats.

Used by the tests (every loader is exercised on the exact byte layout it must read, without
the real data or a network) and handy for trying fflearn's pipeline offline. Each writer returns
the arrays it wrote, as (train_x, train_y, test_x, test_y) in fflearn's layout: uint8
(N, C, H, W) and int64 (N,).
"""

from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np

Arrays = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def idx_bytes(array: np.ndarray) -> bytes:
    """An uint8 array as IDX bytes (magic 0x0000080N, big-endian dims, then the data)."""
    a = np.ascontiguousarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, a.ndim]) + struct.pack(f">{a.ndim}I", *a.shape)
    return header + a.tobytes()


def _images(rng: np.random.Generator, n: int, c: int, h: int, w: int) -> np.ndarray:
    return rng.integers(0, 256, size=(n, c, h, w), dtype=np.uint8)


def _labels(rng: np.random.Generator, n: int, k: int) -> np.ndarray:
    return rng.integers(0, k, size=n).astype(np.int64)


def write_mnist(folder: Path, n_train: int = 6, n_test: int = 4, gz: bool = True, seed: int = 0) -> Arrays:
    """The four MNIST-style IDX files (gzipped or plain) with upstream names."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for split, n in (("train", n_train), ("t10k", n_test)):
        x, y = _images(rng, n, 1, 28, 28), _labels(rng, n, 10)
        for kind, arr in (("images-idx3", x[:, 0]), ("labels-idx1", y.astype(np.uint8))):
            data = idx_bytes(arr)
            name = f"{split}-{kind}-ubyte"
            if gz:
                (folder / f"{name}.gz").write_bytes(gzip.compress(data, mtime=0))
            else:
                (folder / name).write_bytes(data)
        out += [x, y]
    return out[0], out[1], out[2], out[3]


def write_cifar10_bin(folder: Path, per_batch: int = 3, seed: int = 0) -> Arrays:
    """cifar-10-batches-bin: data_batch_1..5.bin, test_batch.bin, batches.meta.txt."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    xs, ys = [], []
    for name in [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]:
        x, y = _images(rng, per_batch, 3, 32, 32), _labels(rng, per_batch, 10)
        recs = np.concatenate([y.astype(np.uint8)[:, None], x.reshape(per_batch, -1)], axis=1)
        (folder / name).write_bytes(recs.tobytes())
        xs.append(x)
        ys.append(y)
    names = "airplane automobile bird cat deer dog frog horse ship truck".split()
    (folder / "batches.meta.txt").write_text("\n".join(names) + "\n")
    return np.concatenate(xs[:5]), np.concatenate(ys[:5]), xs[5], ys[5]


def _pickle_batch(path: Path, x: np.ndarray, labels: dict[bytes, list[int]]) -> None:
    d = {b"batch_label": b"fake batch", b"data": x.reshape(x.shape[0], -1), **labels}
    d[b"filenames"] = [f"img_{i}.png".encode() for i in range(x.shape[0])]
    path.write_bytes(pickle.dumps(d, protocol=2))


def write_cifar10_py(folder: Path, per_batch: int = 3, seed: int = 0) -> Arrays:
    """cifar-10-batches-py: pickled dicts with bytes keys, as the upstream python version."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    xs, ys = [], []
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        x, y = _images(rng, per_batch, 3, 32, 32), _labels(rng, per_batch, 10)
        _pickle_batch(folder / name, x, {b"labels": [int(v) for v in y]})
        xs.append(x)
        ys.append(y)
    names = [n.encode() for n in "airplane automobile bird cat deer dog frog horse ship truck".split()]
    meta = {b"num_cases_per_batch": per_batch, b"label_names": names, b"num_vis": 3072}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))
    return np.concatenate(xs[:5]), np.concatenate(ys[:5]), xs[5], ys[5]


def write_cifar100_bin(folder: Path, n_test: int = 2, seed: int = 0) -> Arrays:
    """cifar-100-binary: train.bin (5x test records), test.bin; coarse byte, fine byte, pixels."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for name, n in (("train.bin", 5 * n_test), ("test.bin", n_test)):
        x, y = _images(rng, n, 3, 32, 32), _labels(rng, n, 100)
        coarse = (y // 5).astype(np.uint8)
        recs = np.concatenate([coarse[:, None], y.astype(np.uint8)[:, None], x.reshape(n, -1)], axis=1)
        (folder / name).write_bytes(recs.tobytes())
        out += [x, y]
    return out[0], out[1], out[2], out[3]


def write_cifar100_py(folder: Path, n_train: int = 5, n_test: int = 2, seed: int = 0) -> Arrays:
    """cifar-100-python: pickled train/test dicts with b'fine_labels' and b'coarse_labels'."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for name, n in (("train", n_train), ("test", n_test)):
        x, y = _images(rng, n, 3, 32, 32), _labels(rng, n, 100)
        labels = {b"fine_labels": [int(v) for v in y], b"coarse_labels": [int(v) // 5 for v in y]}
        _pickle_batch(folder / name, x, labels)
        out += [x, y]
    return out[0], out[1], out[2], out[3]


def write_svhn(folder: Path, n_train: int = 4, n_test: int = 3, seed: int = 0) -> Arrays:
    """train_32x32.mat / test_32x32.mat (MATLAB v5): X (32, 32, 3, N) uint8, y (N, 1) in 1..10."""
    import scipy.io

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for name, n in (("train_32x32.mat", n_train), ("test_32x32.mat", n_test)):
        x, y = _images(rng, n, 3, 32, 32), _labels(rng, n, 10)
        mat_y = np.where(y == 0, 10, y).astype(np.uint8)[:, None]
        scipy.io.savemat(folder / name, {"X": x.transpose(2, 3, 1, 0), "y": mat_y})
        out += [x, y]
    return out[0], out[1], out[2], out[3]


def write_imagenette(
    folder: Path,
    wnids: tuple[str, ...] = ("n01440764", "n02102040", "n02979186"),
    per_class: int = 2,
    size: int = 16,
    seed: int = 0,
) -> Arrays:
    """An imagenette2-style tree: train/ and val/ with one folder of JPEGs per class.

    Images are size x size, so a loader at that size decodes them without resizing; the
    returned pixels are Pillow's decode of the written JPEGs (JPEG is lossy).
    """
    from PIL import Image

    rng = np.random.default_rng(seed)
    out = []
    for split in ("train", "val"):
        xs, ys = [], []
        for label, wnid in enumerate(wnids):
            d = folder / split / wnid
            d.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                pixels = rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8)
                path = d / f"{wnid}_{i}.JPEG"
                Image.fromarray(pixels).save(path, quality=90)
                with Image.open(path) as im:
                    xs.append(np.asarray(im.convert("RGB")).transpose(2, 0, 1))
                ys.append(label)
        out += [np.stack(xs), np.array(ys, dtype=np.int64)]
    return out[0], out[1], out[2], out[3]
