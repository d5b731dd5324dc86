"""MNIST and Fashion-MNIST: the IDX format, gzipped or plain.

The IDX header states the exact array shape, so a truncated or padded file is detected by its
length, not discovered later as a reshape error or, worse, silently loaded garbage.
"""

from __future__ import annotations

import gzip
import hashlib
import math
import struct
import zlib
from pathlib import Path

import numpy as np
import torch

from ..errors import DataError
from .dataset import Dataset
from .download import Resource, downloaded_by_fflearn
from .source import Source

# IDX type codes (third magic byte) -> big-endian numpy dtypes.
IDX_TYPES: dict[int, str] = {0x08: "u1", 0x09: "i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def _decompress(raw: bytes, path: Path) -> bytes:
    if raw[:2] != b"\x1f\x8b":
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(
            f"{path} is a damaged gzip file ({exc or type(exc).__name__}); delete it and download it again"
        ) from None


def read_idx(path: Path) -> tuple[np.ndarray, str]:
    """Read an IDX file (gzip-compressed or not); return the array and the md5 of the IDX bytes.

    The md5 is of the uncompressed bytes because different gzip wrappers (e.g. Debian's
    repackaged Fashion-MNIST) hold identical data.
    """
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}") from None
    raw = _decompress(raw, path)
    if len(raw) < 4:
        raise DataError(f"{path} is truncated: {len(raw)} bytes, too short for an IDX header")
    if raw[0] != 0 or raw[1] != 0 or raw[2] not in IDX_TYPES or not 1 <= raw[3] <= 4:
        raise DataError(
            f"{path} is not an IDX file: bad magic number 0x{raw[:4].hex()} "
            "(expected 0x00000803 for images or 0x00000801 for labels)"
        )
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path} is truncated inside its IDX header")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    dtype = np.dtype(IDX_TYPES[raw[2]])
    expected = math.prod(dims) * dtype.itemsize
    actual = len(raw) - header
    if actual < expected:
        raise DataError(
            f"{path} is truncated: its header promises shape {dims} ({expected} data bytes) "
            f"but only {actual} bytes follow"
        )
    if actual > expected:
        raise DataError(f"{path} has {actual - expected} unexpected bytes after the data of shape {dims}")
    arr = np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims)
    return arr, hashlib.md5(raw, usedforsecurity=False).hexdigest()


def _variants(split: str, kind: str) -> list[str]:
    idx = "idx3" if kind == "images" else "idx1"
    names = [f"{split}-{kind}-{idx}-ubyte", f"{split}-{kind}.{idx}-ubyte"]
    return names + [n + ".gz" for n in names]


class IdxSource(Source):
    """A 28x28 grayscale, 10-class dataset in the four upstream IDX files."""

    classes: tuple[str, ...] = tuple(str(i) for i in range(10))
    raw_md5: dict[str, str] = {}  # md5 of the UNCOMPRESSED upstream files, by canonical name
    base_url: str = ""
    gz_md5: dict[str, str] = {}

    def __init__(self) -> None:
        self.resources = tuple(
            Resource(f"{stem}.gz", self.base_url + f"{stem}.gz", md5) for stem, md5 in self.gz_md5.items()
        )

    @staticmethod
    def _find(folder: Path, split: str, kind: str) -> Path | None:
        for name in _variants(split, kind):
            p = folder / name
            if p.is_file():
                return p
        return None

    def missing_files(self, folder: Path) -> list[str]:
        return [
            _variants(split, kind)[2]
            for split in ("train", "t10k")
            for kind in ("images", "labels")
            if self._find(folder, split, kind) is None
        ]

    def _split(self, folder: Path, split: str) -> tuple[torch.Tensor, torch.Tensor, bool]:
        img_path = self._find(folder, split, "images")
        lab_path = self._find(folder, split, "labels")
        if img_path is None or lab_path is None:
            raise DataError(f"{folder} lacks the {split} files of {self.title}")
        images, img_md5 = read_idx(img_path)
        labels, lab_md5 = read_idx(lab_path)
        if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (28, 28):
            raise DataError(
                f"{img_path}: expected uint8 images of shape (N, 28, 28) (IDX magic 0x00000803), "
                f"found {images.dtype} {images.shape}"
            )
        if labels.dtype != np.uint8 or labels.ndim != 1:
            raise DataError(
                f"{lab_path}: expected uint8 labels of shape (N,) (IDX magic 0x00000801), "
                f"found {labels.dtype} {labels.shape}"
            )
        if images.shape[0] == 0:
            raise DataError(f"{img_path} holds no images")
        if images.shape[0] != labels.shape[0]:
            raise DataError(f"{img_path} holds {images.shape[0]} images but {lab_path} holds {labels.shape[0]} labels")
        bad = np.flatnonzero(labels >= len(self.classes))
        if bad.size:
            raise DataError(
                f"{lab_path}: label {int(labels[bad[0]])} at index {int(bad[0])} is out of range "
                f"0..{len(self.classes) - 1}"
            )
        exact = (
            self.raw_md5.get(f"{split}-images-idx3-ubyte") == img_md5
            and self.raw_md5.get(f"{split}-labels-idx1-ubyte") == lab_md5
        )
        x = torch.from_numpy(images.copy()).unsqueeze(1)
        y = torch.from_numpy(labels.astype(np.int64))
        return x, y, exact

    def read(self, folder: Path) -> Dataset:
        train_x, train_y, train_exact = self._split(folder, "train")
        test_x, test_y, test_exact = self._split(folder, "t10k")
        upstream = (train_exact and test_exact) or downloaded_by_fflearn(folder, [r.filename for r in self.resources])
        return Dataset(
            name=self.name,
            train_x=train_x,
            train_y=train_y,
            test_x=test_x,
            test_y=test_y,
            num_classes=len(self.classes),
            classes=list(self.classes),
            label=self.make_label(folder, upstream),
            source=str(folder),
        )


class MNIST(IdxSource):
    name = "mnist"
    title = "MNIST"
    rels = ("mnist/raw", "mnist", "MNIST/raw", "MNIST")
    download_rel = "mnist/raw"
    placement = "DIR/mnist/raw/ (gzipped or not; DIR/mnist/ and DIR/MNIST/raw/ work too)"
    base_url = "https://ossci-datasets.s3.amazonaws.com/mnist/"
    gz_md5 = {
        "train-images-idx3-ubyte": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "train-labels-idx1-ubyte": "d53e105ee54ea40749a09fcbcd1e9432",
        "t10k-images-idx3-ubyte": "9fb629c4189551a2d022fa330f9573f3",
        "t10k-labels-idx1-ubyte": "ec29112dd5afa0611ce80d1b7f02629c",
    }
    raw_md5 = {
        "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
        "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
        "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
        "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
    }


class FashionMNIST(IdxSource):
    name = "fashion-mnist"
    title = "Fashion-MNIST"
    rels = (
        "fashion-mnist",
        "fashion-mnist/raw",
        "FashionMNIST/raw",
        "FashionMNIST",
        "fashion_mnist",
        "fashion_mnist/raw",
    )
    download_rel = "fashion-mnist"
    placement = "DIR/fashion-mnist/ (gzipped or not; DIR/FashionMNIST/raw/ works too)"
    base_url = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
    classes = (
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    )
    gz_md5 = {
        "train-images-idx3-ubyte": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "train-labels-idx1-ubyte": "25c81989df183df01b3e8a0aad5dffbe",
        "t10k-images-idx3-ubyte": "bef4ecab320f06d8554ea6380940ec79",
        "t10k-labels-idx1-ubyte": "bb300cfdad3c16e7a12a480ee83cd310",
    }
    raw_md5 = {
        "train-images-idx3-ubyte": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
        "train-labels-idx1-ubyte": "9018921c3c673c538a1fc5bad174d6f9",
        "t10k-images-idx3-ubyte": "8181f5470baa50b63fa0f6fddb340f0a",
        "t10k-labels-idx1-ubyte": "15d484375f8d13e6eb1aabb0c3f46965",
    }
