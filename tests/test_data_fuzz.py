"""Fuzz: damaged files in every real format give a DataError or a valid Dataset, nothing else.

Seeded random truncations and byte flips of tiny files written in the upstream formats; a few
hundred cases in total, a few seconds of run time.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path
from urllib.error import URLError

import pytest
import torch

import fakes
from fflearn.data import Dataset, load_dataset, locate
from fflearn.data import download as dl
from fflearn.data import imagenette as imnette
from fflearn.errors import DataError

CASES = 60  # per format


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_network(*args: object, **kwargs: object) -> None:
        raise URLError("network disabled in tests")

    monkeypatch.setattr(dl, "urlopen", no_network)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    monkeypatch.delenv("FFLEARN_DATA", raising=False)
    monkeypatch.setattr(locate, "STANDARD_ROOTS", [])
    monkeypatch.setattr(imnette, "IMAGENETTE_SIZE", 8)


FORMATS: dict[str, tuple[str, str, Callable[[Path], object]]] = {
    # id: (dataset name, folder relative to the data root, writer)
    "idx-gz": ("mnist", "mnist/raw", lambda d: fakes.write_mnist(d, 3, 2, gz=True)),
    "idx-plain": ("fashion-mnist", "fashion-mnist", lambda d: fakes.write_mnist(d, 3, 2, gz=False)),
    "cifar10-bin": ("cifar10", "cifar-10-batches-bin", lambda d: fakes.write_cifar10_bin(d, 2)),
    "cifar10-py": ("cifar10", "cifar-10-batches-py", lambda d: fakes.write_cifar10_py(d, 2)),
    "cifar100-bin": ("cifar100", "cifar-100-binary", lambda d: fakes.write_cifar100_bin(d, 1)),
    "cifar100-py": ("cifar100", "cifar-100-python", lambda d: fakes.write_cifar100_py(d, 3, 2)),
    "svhn-mat": ("svhn", "svhn", lambda d: fakes.write_svhn(d, 2, 2)),
    "imagenette-jpeg": (
        "imagenette",
        "imagenette2-160",
        lambda d: fakes.write_imagenette(d, ("n01440764", "n02102040"), 1, 8),
    ),
}


def _mutate(data: bytes, rng: random.Random) -> bytes:
    b = bytearray(data)
    kind = rng.choice(["truncate", "flip", "flip", "both", "header"])
    if kind in ("flip", "both"):
        for _ in range(rng.randint(1, 4)):
            b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
    if kind == "header":  # the first bytes hold magic numbers, sizes and pickle opcodes
        for _ in range(rng.randint(1, 2)):
            b[rng.randrange(min(len(b), 64))] = rng.randrange(256)
    if kind in ("truncate", "both"):
        del b[rng.randrange(len(b)) :]
    return bytes(b)


def _check_valid(ds: Dataset) -> None:
    for x, y in ((ds.train_x, ds.train_y), (ds.test_x, ds.test_y)):
        assert x.dtype == torch.uint8 and x.dim() == 4 and x.shape[0] == y.shape[0] > 0
        assert y.dtype == torch.int64
        assert int(y.min()) >= 0 and int(y.max()) < ds.num_classes
    assert ds.train_x.shape[1:] == ds.test_x.shape[1:]


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_damaged_files_never_crash(tmp_path: Path, fmt: str) -> None:
    name, rel, write = FORMATS[fmt]
    root = tmp_path / "data"
    folder = root / rel
    write(folder)
    originals = {p: p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file() and p.name != dl.STAMP_NAME}
    rng = random.Random(f"fflearn-fuzz-{fmt}")
    outcomes = {"error": 0, "loaded": 0}
    for _ in range(CASES):
        for p, data in originals.items():
            p.write_bytes(data)
        (folder / dl.STAMP_NAME).unlink(missing_ok=True)
        victim = rng.choice(list(originals))
        victim.write_bytes(_mutate(originals[victim], rng))
        try:
            ds = load_dataset(name, root, download=False)
        except DataError as exc:
            assert str(exc)
            outcomes["error"] += 1
        else:
            _check_valid(ds)
            outcomes["loaded"] += 1
    assert outcomes["error"] > 0  # the damage is noticed at least sometimes
