"""Datasets for fflearn: find them on disk, download them if allowed, load them as tensors.

    from fflearn.data import load_dataset
    ds = load_dataset("cifar10", data_dir="~/data")   # or $FFLEARN_DATA, or ~/.cache/fflearn
    mean, std = ds.mean_std()

Built-in names (registered in :data:`fflearn.registry.DATASETS`): ``mnist``, ``fashion-mnist``,
``cifar10``, ``cifar100``, ``svhn``, ``imagenette``; aliases such as ``fmnist`` and ``cifar-10``
are accepted too. A plugin registers its own loader ``(root: Path, download: bool) -> Dataset``.
Every problem with the data (missing, corrupt, no network) is a :class:`DataError` saying what
is wrong and what to do, never a traceback from a parser.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from ..errors import DataError
from ..registry import DATASETS
from .augment import Augment, random_crop, random_flip, random_rotation, rotate
from .cifar import Cifar10, Cifar100
from .dataset import Dataset
from .idx import MNIST, FashionMNIST, read_idx
from .imagenette import Imagenette
from .locate import ENV_VAR, cache_dir, data_roots, is_writable, writable_roots
from .normalize import Normalizer
from .source import Source
from .splits import limit, split_validation
from .svhn import SVHN

__all__ = [
    "ALIASES",
    "ENV_VAR",
    "Augment",
    "DataError",
    "Dataset",
    "Normalizer",
    "Source",
    "cache_dir",
    "canonical_name",
    "data_roots",
    "find_data_dir",
    "limit",
    "load_dataset",
    "random_crop",
    "random_flip",
    "random_rotation",
    "read_idx",
    "rotate",
    "split_validation",
]

log = logging.getLogger("fflearn.data")

for _source in (MNIST(), FashionMNIST(), Cifar10(), Cifar100(), SVHN(), Imagenette()):
    if _source.name not in DATASETS:
        DATASETS.register(_source.name, _source)

ALIASES = DATASETS.aliases  # the one alias table: fmnist -> fashion-mnist, cifar-10 -> cifar10, ...


def canonical_name(name: str) -> str:
    """The registry name for ``name`` (aliases and letter case resolved where unambiguous)."""
    return DATASETS.canonical(name)


def find_data_dir(name: str, data_dir: str | os.PathLike[str] | None = None) -> Path | None:
    """The folder holding a complete copy of dataset ``name``, searched in lookup order.

    Order: ``data_dir`` alone when given, else ``$FFLEARN_DATA``, the user cache folder,
    ``/usr/share/datasets``;
    within each root the usual layouts (``mnist/raw/``, ``MNIST/raw/``,
    ``cifar10/cifar-10-batches-bin/``, ...). None when no copy is found (or the loader is a
    plugin without a ``locate`` method).
    """
    loader = DATASETS.get(canonical_name(name))
    locate = getattr(loader, "locate", None)
    if locate is None:
        return None
    for root in data_roots(data_dir):
        folder = locate(root)
        if folder is not None:
            return Path(folder)
    return None


def _download_root(loader: Source, data_dir: str | os.PathLike[str] | None) -> Path:
    """The first writable download location, reporting the read-only ones skipped."""
    candidates = writable_roots(data_dir)
    for root in candidates:
        if is_writable(root):
            skipped = candidates[: candidates.index(root)]
            if skipped:
                log.warning(
                    "data folder(s) %s not writable; downloading %s into %s",
                    ", ".join(map(str, skipped)),
                    loader.title,
                    root,
                )
            return root
    raise loader.missing_error(
        data_roots(data_dir),
        "Cannot download: "
        + ", ".join(f"{r} is not writable" for r in candidates)
        + ". Pass --data-dir with a writable folder.",
    )


def load_dataset(name: str, data_dir: str | os.PathLike[str] | None = None, download: bool = True) -> Dataset:
    """Load dataset ``name`` as uint8 tensors, downloading it first if needed and allowed.

    Raises :class:`~fflearn.errors.ConfigError` for an unknown name and
    :class:`~fflearn.errors.DataError` when the data is missing (after a failed or disabled
    download) or damaged.
    """
    loader = DATASETS.get(canonical_name(name))
    roots = data_roots(data_dir)
    if not isinstance(loader, Source):
        # A plugin loader: give it the first existing root, else where downloads may go.
        existing = [r for r in roots if r.is_dir()]
        root = existing[0] if existing else writable_roots(data_dir)[0]
        return loader(root, download)
    for root in roots:
        if loader.locate(root) is not None:
            return loader(root, False)
    searched = roots
    if not download:
        raise loader.missing_error(searched, "Downloading was disabled (download=False).")
    return loader(_download_root(loader, data_dir), True, searched=searched)
