"""CIFAR-10 and CIFAR-100, in both upstream releases: the binary and the python-pickle version.

The binary version has no header, so truncation to a whole number of records is caught by
comparing record counts between files (upstream: 10000 per CIFAR-10 batch; CIFAR-100 train.bin
holds 5x test.bin). Pickles are read with an unpickler that only builds numpy arrays, so a
crafted or damaged file can neither run code nor load as garbage.
"""

from __future__ import annotations

import codecs
import importlib
import logging
import pickle
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import DataError
from .dataset import Dataset
from .download import Resource, upstream_status
from .source import Source

log = logging.getLogger("fflearn.data")

CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip

CIFAR100_CLASSES = (
    "apple", "aquarium_fish", "baby", "bear", "beaver", "bed", "bee", "beetle", "bicycle",
    "bottle", "bowl", "boy", "bridge", "bus", "butterfly", "camel", "can", "castle",
    "caterpillar", "cattle", "chair", "chimpanzee", "clock", "cloud", "cockroach", "couch",
    "crab", "crocodile", "cup", "dinosaur", "dolphin", "elephant", "flatfish", "forest", "fox",
    "girl", "hamster", "house", "kangaroo", "keyboard", "lamp", "lawn_mower", "leopard", "lion",
    "lizard", "lobster", "man", "maple_tree", "motorcycle", "mountain", "mouse", "mushroom",
    "oak_tree", "orange", "orchid", "otter", "palm_tree", "pear", "pickup_truck", "pine_tree",
    "plain", "plate", "poppy", "porcupine", "possum", "rabbit", "raccoon", "ray", "road",
    "rocket", "rose", "sea", "seal", "shark", "shrew", "skunk", "skyscraper", "snail", "snake",
    "spider", "squirrel", "streetcar", "sunflower", "sweet_pepper", "table", "tank",
    "telephone", "television", "tiger", "tractor", "train", "trout", "tulip", "turtle",
    "wardrobe", "whale", "willow_tree", "wolf", "woman", "worm",
)  # fmt: skip

PIXELS = 3 * 32 * 32

# md5 of test_batch.bin in the JPEG-derived CIFAR-10 rebuild shared on offline machines, so the
# copy is recognised (and labelled) even when copied away from its PROVENANCE.txt.
JPEG_DERIVED_TEST_BATCH_MD5 = "45bf7819e39709b87eab7ba2b1c31b65"


# -- safe unpickling ------------------------------------------------------------------------


def _numpy_multiarray() -> Any:
    try:
        return importlib.import_module("numpy._core.multiarray")
    except ImportError:  # numpy < 2
        return importlib.import_module("numpy.core.multiarray")


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickler that resolves only what pickled numpy arrays and Python-2 strings need."""

    def find_class(self, module: str, name: str) -> Any:
        if module in ("numpy.core.multiarray", "numpy._core.multiarray") and name in (
            "_reconstruct",
            "scalar",
        ):
            return getattr(_numpy_multiarray(), name)
        if module == "numpy" and name in ("ndarray", "dtype"):
            return getattr(np, name)
        if module == "_codecs" and name == "encode":
            return codecs.encode
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def read_pickle(path: Path) -> dict[str, Any]:
    """Load a CIFAR python-version pickle as a dict with str keys."""
    try:
        with open(path, "rb") as f:
            obj = _ArrayUnpickler(f, encoding="bytes").load()
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}") from None
    except Exception as exc:  # any parse failure of untrusted bytes is a data problem
        raise DataError(f"{path} is not a valid CIFAR python-version pickle ({type(exc).__name__}: {exc})") from None
    if not isinstance(obj, dict):
        raise DataError(f"{path}: expected a pickled dict, found {type(obj).__name__}")
    return {k.decode("latin-1") if isinstance(k, bytes) else str(k): v for k, v in obj.items()}


def _tensor(a: np.ndarray) -> torch.Tensor:
    """A torch tensor owning a writable C-contiguous copy only where ``a`` is not one already."""
    if not (a.flags.writeable and a.flags.c_contiguous):
        a = np.array(a, order="C")
    return torch.from_numpy(a)


def _check_labels(labels: np.ndarray, num: int, path: Path, what: str = "label") -> None:
    bad = np.flatnonzero((labels < 0) | (labels >= num))
    if bad.size:
        raise DataError(f"{path}: {what} {int(labels[bad[0]])} at record {int(bad[0])} is out of range 0..{num - 1}")


def _batch_from_pickle(path: Path, label_key: str, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    d = read_pickle(path)
    data, labels = d.get("data"), d.get(label_key)
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2:
        raise DataError(f"{path}: 'data' must be a uint8 array (N, {PIXELS})")
    if data.shape[1] != PIXELS or data.shape[0] == 0:
        raise DataError(f"{path}: 'data' has shape {data.shape}, expected (N, {PIXELS})")
    if labels is None:
        raise DataError(f"{path}: no '{label_key}' entry")
    try:
        y = np.asarray(labels)
    except Exception:  # ragged or otherwise unconvertible content
        raise DataError(f"{path}: '{label_key}' is not a list of integers") from None
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise DataError(f"{path}: '{label_key}' is not a list of integers")
    if y.shape[0] != data.shape[0]:
        raise DataError(f"{path}: {data.shape[0]} images but {y.shape[0]} entries in '{label_key}'")
    _check_labels(y, num_classes, path)
    return data.reshape(-1, 3, 32, 32), y.astype(np.int64)


def _records_from_bin(path: Path, label_bytes: int) -> np.ndarray:
    try:
        raw = np.fromfile(path, dtype=np.uint8)
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}") from None
    rec = label_bytes + PIXELS
    if raw.size == 0 or raw.size % rec:
        raise DataError(
            f"{path} is truncated or not a CIFAR binary file: {raw.size} bytes is not a whole "
            f"number of {rec}-byte records"
        )
    return raw.reshape(-1, rec)


def _check_counts(counts: dict[Path, int], ratio: dict[Path, int] | None = None) -> None:
    """All files must hold the same number of records (times ``ratio``): catches truncation."""
    ratio = ratio or {}
    units = {p: n / ratio.get(p, 1) for p, n in counts.items()}
    common, _ = Counter(units.values()).most_common(1)[0]
    for p, u in units.items():
        if u != common:
            others = ", ".join(f"{q.name}: {counts[q]}" for q in counts)
            raise DataError(
                f"{p} holds {counts[p]} records, inconsistent with the other files ({others}); it is probably truncated"
            )


def _read_names(folder: Path, txt: str, pkl: str, key: str, default: tuple[str, ...]) -> list[str]:
    """Class names from the meta file when it is present and sane, else the upstream names."""
    names: Any = None
    try:
        if (folder / txt).is_file():
            names = [n.strip() for n in (folder / txt).read_text().splitlines() if n.strip()]
        elif (folder / pkl).is_file():
            raw = read_pickle(folder / pkl).get(key)
            names = [n.decode() if isinstance(n, bytes) else str(n) for n in raw or []]
    except (OSError, UnicodeDecodeError, DataError, TypeError) as exc:
        log.warning("ignoring unreadable class names in %s: %s", folder, exc)
        names = None
    if names is not None and len(names) != len(default):
        log.warning("ignoring %d class names in %s (expected %d)", len(names), folder, len(default))
        names = None
    return list(names) if names else list(default)


class CifarSource(Source):
    """Shared reading logic; subclasses give file names, label layout and checksums."""

    classes: tuple[str, ...] = ()
    bin_dir = ""
    py_dir = ""
    bin_train: tuple[str, ...] = ()
    bin_test: tuple[str, ...] = ()
    py_train: tuple[str, ...] = ()
    py_test: tuple[str, ...] = ()
    py_md5: dict[str, str] = {}

    def _bin_files(self) -> tuple[str, ...]:
        return self.bin_train + self.bin_test

    def _py_files(self) -> tuple[str, ...]:
        return self.py_train + self.py_test

    def _format(self, folder: Path) -> str | None:
        if all((folder / n).is_file() for n in self._bin_files()):
            return "bin"
        if all((folder / n).is_file() for n in self._py_files()):
            return "py"
        return None

    def missing_files(self, folder: Path) -> list[str]:
        if self._format(folder):
            return []
        bin_missing = [n for n in self._bin_files() if not (folder / n).is_file()]
        py_missing = [n for n in self._py_files() if not (folder / n).is_file()]
        if len(py_missing) < len(self._py_files()) and folder.name == self.py_dir:
            return py_missing
        return bin_missing

    def downloaded_files(self, folder: Path) -> list[str]:
        return list(self._bin_files())

    # subclass hooks
    def _bin_split(self, paths: list[Path]) -> tuple[np.ndarray, np.ndarray, dict[Path, int]]:
        raise NotImplementedError

    def _check_bin_counts(self, counts: dict[Path, int]) -> None:
        raise NotImplementedError

    def _names(self, folder: Path) -> list[str]:
        raise NotImplementedError

    label_key = "labels"

    def read(self, folder: Path) -> Dataset:
        fmt = self._format(folder)
        if fmt is None:
            raise DataError(f"{folder} lacks {', '.join(self.missing_files(folder))}")
        counts: dict[Path, int] = {}
        if fmt == "bin":
            tr_x, tr_y, c1 = self._bin_split([folder / n for n in self.bin_train])
            te_x, te_y, c2 = self._bin_split([folder / n for n in self.bin_test])
            counts = {**c1, **c2}
            self._check_bin_counts(counts)
            expected: dict[str, str | None] = {n: None for n in self._bin_files()}
        else:
            tr_x, tr_y = self._py_split([folder / n for n in self.py_train])
            te_x, te_y = self._py_split([folder / n for n in self.py_test])
            expected = {n: self.py_md5.get(n) for n in self._py_files()}
        upstream = upstream_status(folder, expected)
        label = self.make_label(folder, upstream)
        if fmt == "bin" and upstream is None and label == self.title and self._is_jpeg_copy(folder):
            label = f"{self.title} (JPEG-derived copy)"
        return Dataset(
            name=self.name,
            train_x=_tensor(tr_x),
            train_y=_tensor(tr_y),
            test_x=_tensor(te_x),
            test_y=_tensor(te_y),
            num_classes=len(self.classes),
            classes=self._names(folder),
            label=label,
            source=str(folder),
        )

    def _is_jpeg_copy(self, folder: Path) -> bool:
        return False

    def _py_split(self, paths: list[Path]) -> tuple[np.ndarray, np.ndarray]:
        xs, ys = [], []
        for p in paths:
            x, y = _batch_from_pickle(p, self.label_key, len(self.classes))
            xs.append(x)
            ys.append(y)
        x = np.ascontiguousarray(np.concatenate(xs) if len(xs) > 1 else xs[0])
        y = np.concatenate(ys) if len(ys) > 1 else ys[0]
        return x, y


class Cifar10(CifarSource):
    name = "cifar10"
    title = "CIFAR-10"
    classes = CIFAR10_CLASSES
    bin_dir = "cifar-10-batches-bin"
    py_dir = "cifar-10-batches-py"
    rels = (
        "cifar10/cifar-10-batches-bin",
        "cifar-10-batches-bin",
        "cifar10/cifar-10-batches-py",
        "cifar-10-batches-py",
        "CIFAR10/cifar-10-batches-bin",
        "CIFAR10/cifar-10-batches-py",
        "cifar-10/cifar-10-batches-bin",
        "cifar-10/cifar-10-batches-py",
        "cifar10",
    )
    download_rel = "cifar10"
    placement = (
        "DIR/cifar10/ (unpack the archive there, giving DIR/cifar10/cifar-10-batches-bin/ with "
        "data_batch_1.bin..data_batch_5.bin and test_batch.bin; the python version "
        "cifar-10-batches-py/ works too)"
    )
    resources = (
        Resource(
            "cifar-10-binary.tar.gz",
            "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz",
            "c32a1d4ab5d03f1284b67883e8d87530",
            archive=True,
        ),
    )
    bin_train = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
    bin_test = ("test_batch.bin",)
    py_train = tuple(f"data_batch_{i}" for i in range(1, 6))
    py_test = ("test_batch",)
    py_md5 = {
        "data_batch_1": "c99cafc152244af753f735de768cd75f",
        "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
        "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
        "data_batch_4": "634d18415352ddfa80567beed471001a",
        "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
        "test_batch": "40351d587109b95175f43aff81a1287e",
    }

    def _bin_split(self, paths: list[Path]) -> tuple[np.ndarray, np.ndarray, dict[Path, int]]:
        xs, ys, counts = [], [], {}
        for p in paths:
            recs = _records_from_bin(p, 1)
            y = recs[:, 0]
            _check_labels(y, len(self.classes), p)
            xs.append(recs[:, 1:])
            ys.append(y.astype(np.int64))
            counts[p] = recs.shape[0]
        x = np.concatenate(xs) if len(xs) > 1 else np.ascontiguousarray(xs[0])
        y = np.concatenate(ys) if len(ys) > 1 else ys[0]
        return x.reshape(-1, 3, 32, 32), y, counts

    def _check_bin_counts(self, counts: dict[Path, int]) -> None:
        _check_counts(counts)

    def _names(self, folder: Path) -> list[str]:
        return _read_names(folder, "batches.meta.txt", "batches.meta", "label_names", self.classes)

    def _is_jpeg_copy(self, folder: Path) -> bool:
        p = folder / "test_batch.bin"
        try:
            if p.stat().st_size != 10000 * (PIXELS + 1):
                return False
        except OSError:
            return False
        return upstream_status(folder, {"test_batch.bin": JPEG_DERIVED_TEST_BATCH_MD5}) is True


class Cifar100(CifarSource):
    name = "cifar100"
    title = "CIFAR-100"
    classes = CIFAR100_CLASSES
    bin_dir = "cifar-100-binary"
    py_dir = "cifar-100-python"
    label_key = "fine_labels"
    rels = (
        "cifar100/cifar-100-binary",
        "cifar-100-binary",
        "cifar100/cifar-100-python",
        "cifar-100-python",
        "CIFAR100/cifar-100-binary",
        "CIFAR100/cifar-100-python",
        "cifar-100/cifar-100-binary",
        "cifar-100/cifar-100-python",
        "cifar100",
    )
    download_rel = "cifar100"
    placement = (
        "DIR/cifar100/ (unpack the archive there, giving DIR/cifar100/cifar-100-binary/ with "
        "train.bin and test.bin; the python version cifar-100-python/ works too)"
    )
    resources = (
        Resource(
            "cifar-100-binary.tar.gz",
            "https://www.cs.toronto.edu/~kriz/cifar-100-binary.tar.gz",
            "03b5dce01913d631647c71ecec9e9cb8",
            archive=True,
        ),
    )
    bin_train = ("train.bin",)
    bin_test = ("test.bin",)
    py_train = ("train",)
    py_test = ("test",)
    py_md5 = {
        "train": "16019d7e3df5f24257cddd939b257f8d",
        "test": "f0ef6b0ae62326f3e7ffdfab6717acfc",
    }

    def _bin_split(self, paths: list[Path]) -> tuple[np.ndarray, np.ndarray, dict[Path, int]]:
        (p,) = paths
        recs = _records_from_bin(p, 2)
        _check_labels(recs[:, 0], 20, p, "coarse label")
        y = recs[:, 1]
        _check_labels(y, len(self.classes), p, "fine label")
        x = np.ascontiguousarray(recs[:, 2:]).reshape(-1, 3, 32, 32)
        return x, y.astype(np.int64), {p: recs.shape[0]}

    def _check_bin_counts(self, counts: dict[Path, int]) -> None:
        # upstream: train.bin 50000 records, test.bin 10000
        _check_counts(counts, {p: (5 if p.name == "train.bin" else 1) for p in counts})

    def _names(self, folder: Path) -> list[str]:
        return _read_names(folder, "fine_label_names.txt", "meta", "fine_label_names", self.classes)
