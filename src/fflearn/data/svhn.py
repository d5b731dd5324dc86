"""SVHN (cropped digits), read from the upstream MATLAB v5 files ``{train,test}_32x32.mat``.

Upstream stores ``X`` as (32, 32, 3, N) uint8 and ``y`` as (N, 1) with labels 1..10, where 10
means the digit 0; fflearn maps 10 to 0 so that label i is digit i.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..errors import DataError
from .dataset import Dataset
from .download import Resource, upstream_status
from .source import Source


def read_svhn_mat(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (N, 3, 32, 32) uint8 and labels (N,) int64 in 0..9 from one SVHN .mat file."""
    import scipy.io  # imported here: only SVHN needs scipy, and it is slow to import

    try:
        with open(path, "rb") as f:
            mat = scipy.io.loadmat(f, variable_names=("X", "y"))
    except NotImplementedError:
        raise DataError(f"{path} is a MATLAB v7.3 (HDF5) file; SVHN's upstream files are MATLAB v5") from None
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}") from None
    except Exception as exc:  # any parse failure of untrusted bytes is a data problem
        raise DataError(f"{path} is not a valid SVHN .mat file ({type(exc).__name__}: {exc})") from None
    x, y = mat.get("X"), mat.get("y")
    if not isinstance(x, np.ndarray) or x.ndim != 4 or x.shape[:3] != (32, 32, 3):
        shape = getattr(x, "shape", None)
        raise DataError(f"{path}: 'X' must be an array of shape (32, 32, 3, N), found {shape}")
    if x.dtype != np.uint8:
        raise DataError(f"{path}: 'X' must be uint8, found {x.dtype}")
    n = x.shape[3]
    if n == 0:
        raise DataError(f"{path} holds no images")
    if not isinstance(y, np.ndarray) or y.size != n:
        raise DataError(f"{path}: 'y' must hold {n} labels, found {getattr(y, 'shape', None)}")
    y = y.reshape(-1)
    if not (np.issubdtype(y.dtype, np.integer) or np.issubdtype(y.dtype, np.floating)):
        raise DataError(f"{path}: 'y' must be numeric, found {y.dtype}")
    bad = np.flatnonzero(~np.isin(y, np.arange(1, 11)))
    if bad.size:
        raise DataError(
            f"{path}: label {y[bad[0]]} at index {int(bad[0])} is out of range 1..10 (SVHN uses 10 for the digit 0)"
        )
    labels = y.astype(np.int64) % 10
    images = np.ascontiguousarray(x.transpose(3, 2, 0, 1))
    return torch.from_numpy(images), torch.from_numpy(labels)


class SVHN(Source):
    name = "svhn"
    title = "SVHN"
    rels = ("svhn", "SVHN", "")
    download_rel = "svhn"
    placement = "DIR/svhn/"
    resources = (
        Resource(
            "train_32x32.mat",
            "http://ufldl.stanford.edu/housenumbers/train_32x32.mat",
            "e26dedcc434d2e4c54c9b2d4a06d8373",
        ),
        Resource(
            "test_32x32.mat",
            "http://ufldl.stanford.edu/housenumbers/test_32x32.mat",
            "eb5a983be6a315427106f1b9a5e0e3b7",
        ),
    )

    def missing_files(self, folder: Path) -> list[str]:
        return [r.filename for r in self.resources if not (folder / r.filename).is_file()]

    def read(self, folder: Path) -> Dataset:
        train_x, train_y = read_svhn_mat(folder / "train_32x32.mat")
        test_x, test_y = read_svhn_mat(folder / "test_32x32.mat")
        upstream = upstream_status(folder, {r.filename: r.md5 for r in self.resources})
        return Dataset(
            name=self.name,
            train_x=train_x,
            train_y=train_y,
            test_x=test_x,
            test_y=test_y,
            num_classes=10,
            classes=[str(i) for i in range(10)],
            label=self.make_label(folder, upstream),
            source=str(folder),
        )
