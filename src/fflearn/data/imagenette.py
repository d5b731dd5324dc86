"""ImageNette (the 10-class ImageNet subset) from the upstream image-folder release.

The release (``imagenette2-160/``, ``imagenette2-320/`` or ``imagenette2/``) holds ``train/`` and
``val/`` folders of class folders (``n01440764`` ...) with JPEGs of varying size. Images are
decoded once with Pillow, resized so the shorter side is :data:`IMAGENETTE_SIZE` and center
cropped to a square, then cached as a ``.pt`` file in the user cache folder: decoding 13k JPEGs
takes a while, loading the cache well under a second.
"""

from __future__ import annotations

import hashlib
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from ..errors import DataError
from .dataset import Dataset
from .download import Resource
from .locate import cache_dir
from .source import Source

log = logging.getLogger("fflearn.data")

# Side of the square images fflearn makes from ImageNette; small by default so that CPU runs
# are practical. Read at load time: set ``fflearn.data.imagenette.IMAGENETTE_SIZE`` to change it.
IMAGENETTE_SIZE = 64

_BILINEAR = getattr(Image, "Resampling", Image).BILINEAR  # Pillow < 9.1 has no Resampling
IMAGE_SUFFIXES = frozenset({".jpeg", ".jpg", ".png"})
_CACHE_VERSION = 1

WNID_NAMES = {
    "n01440764": "tench",
    "n02102040": "English springer",
    "n02979186": "cassette player",
    "n03000684": "chain saw",
    "n03028079": "church",
    "n03394916": "French horn",
    "n03417042": "garbage truck",
    "n03425413": "gas pump",
    "n03445777": "golf ball",
    "n03888605": "parachute",
}


def decode_image(path: Path, size: int) -> np.ndarray:
    """One image as (size, size, 3) uint8: shorter side resized to ``size``, center crop."""
    try:
        with Image.open(path) as im:
            im.draft("RGB", (size, size))  # JPEG: decode at a reduced scale, still >= size
            rgb = im.convert("RGB")
        w, h = rgb.size
        if w < 1 or h < 1:
            raise ValueError("empty image")
        scale = size / min(w, h)
        nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
        if (nw, nh) != (w, h):
            rgb = rgb.resize((nw, nh), _BILINEAR)
        left, top = (nw - size) // 2, (nh - size) // 2
        rgb = rgb.crop((left, top, left + size, top + size))
        return np.asarray(rgb, dtype=np.uint8)
    except Exception as exc:  # any decoder failure on untrusted bytes is a data problem
        raise DataError(f"{path} is not a readable image ({type(exc).__name__}: {exc})") from None


def _class_dirs(split_dir: Path) -> list[str]:
    try:
        return sorted(d.name for d in split_dir.iterdir() if d.is_dir() and not d.name.startswith("."))
    except OSError as exc:
        raise DataError(f"cannot list {split_dir}: {exc.strerror or exc}") from None


def _images(class_dir: Path) -> list[Path]:
    try:
        return sorted(p for p in class_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    except OSError as exc:
        raise DataError(f"cannot list {class_dir}: {exc.strerror or exc}") from None


class Imagenette(Source):
    name = "imagenette"
    title = "ImageNette"
    rels = (
        "imagenette/imagenette2-160",
        "imagenette2-160",
        "imagenette/imagenette2-320",
        "imagenette2-320",
        "imagenette/imagenette2",
        "imagenette2",
    )
    download_rel = "imagenette"
    placement = (
        "DIR/imagenette/ (unpack the archive there, giving DIR/imagenette/imagenette2-160/ "
        "with train/ and val/ folders of class folders n01440764 ... holding JPEGs)"
    )
    resources = (
        Resource(
            "imagenette2-160.tgz",
            "https://s3.amazonaws.com/fast-ai-imageclas/imagenette2-160.tgz",
            "e793b78cc4c9e9a4ccc0c1155377a412",
            archive=True,
        ),
    )

    def missing_files(self, folder: Path) -> list[str]:
        missing = []
        for split in ("train", "val"):
            d = folder / split
            if not d.is_dir():
                missing.append(f"{split}/")
            elif not _class_dirs(d):
                missing.append(f"{split}/<class folders>")
        return missing

    def _listing(self, folder: Path) -> tuple[list[str], dict[str, list[tuple[Path, int]]]]:
        wnids = _class_dirs(folder / "train")
        index = {w: i for i, w in enumerate(wnids)}
        unknown = sorted(set(_class_dirs(folder / "val")) - set(wnids))
        if unknown:
            raise DataError(f"{folder / 'val'} has class folders missing from train/: {', '.join(unknown)}")
        splits: dict[str, list[tuple[Path, int]]] = {}
        for split in ("train", "val"):
            items = []
            for w in _class_dirs(folder / split):
                items += [(p, index[w]) for p in _images(folder / split / w)]
            if not items:
                raise DataError(f"{folder / split} holds no images (.JPEG, .jpg or .png)")
            splits[split] = items
        return wnids, splits

    @staticmethod
    def _cache_key(folder: Path, size: int, splits: dict[str, list[tuple[Path, int]]]) -> str:
        h = hashlib.sha1(usedforsecurity=False)
        h.update(f"{_CACHE_VERSION}|{os.path.abspath(folder)}|{size}".encode())
        for split, items in splits.items():
            for p, label in items:
                st = p.stat()
                h.update(f"|{split}/{p.parent.name}/{p.name}:{label}:{st.st_size}:{st.st_mtime_ns}".encode())
        return h.hexdigest()

    @staticmethod
    def _load_cache(path: Path, key: str, size: int) -> dict[str, Any] | None:
        if not path.is_file():
            return None
        try:
            data = torch.load(path, map_location="cpu", weights_only=True)
            ok = isinstance(data, dict) and data.get("key") == key
            for split in ("train", "test"):
                x, y = data[f"{split}_x"], data[f"{split}_y"]
                ok = ok and x.dtype == torch.uint8 and x.dim() == 4
                ok = ok and tuple(x.shape[1:]) == (3, size, size) and y.dtype == torch.int64
                ok = ok and y.shape == x.shape[:1]
            ok = ok and all(isinstance(c, str) for c in data["classes"])
        except Exception as exc:  # a damaged cache is rebuilt, never trusted
            log.warning("ignoring unreadable ImageNette cache %s: %s", path, exc)
            return None
        return data if ok else None

    def _decode_all(self, items: list[tuple[Path, int]], size: int) -> tuple[torch.Tensor, torch.Tensor]:
        workers = max(1, min(4, os.cpu_count() or 1))
        with ThreadPoolExecutor(max_workers=workers) as pool:
            arrays = list(pool.map(lambda it: decode_image(it[0], size), items))
        x = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()
        y = torch.tensor([label for _, label in items], dtype=torch.int64)
        return x, y

    def read(self, folder: Path) -> Dataset:
        size = int(IMAGENETTE_SIZE)
        if size < 1:
            raise DataError(f"IMAGENETTE_SIZE must be a positive integer, not {IMAGENETTE_SIZE!r}")
        wnids, splits = self._listing(folder)
        key = self._cache_key(folder, size, splits)
        cache = cache_dir() / "imagenette" / f"{folder.name}-{size}px-{key[:20]}.pt"
        data = self._load_cache(cache, key, size)
        if data is None:
            log.info("decoding ImageNette from %s at %dx%d (cached afterwards)", folder, size, size)
            train_x, train_y = self._decode_all(splits["train"], size)
            test_x, test_y = self._decode_all(splits["val"], size)
            classes = [WNID_NAMES.get(w, w) for w in wnids]
            data = {
                "key": key,
                "train_x": train_x,
                "train_y": train_y,
                "test_x": test_x,
                "test_y": test_y,
                "classes": classes,
            }
            self._save_cache(cache, data)
        return Dataset(
            name=self.name,
            train_x=data["train_x"],
            train_y=data["train_y"],
            test_x=data["test_x"],
            test_y=data["test_y"],
            num_classes=len(data["classes"]),
            classes=list(data["classes"]),
            label=self.make_label(folder, None),
            source=str(folder),
        )

    @staticmethod
    def _save_cache(path: Path, data: dict[str, Any]) -> None:
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            torch.save(data, tmp)
            os.replace(tmp, path)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            log.warning("could not cache decoded ImageNette at %s: %s", path, exc)
