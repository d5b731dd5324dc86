"""Views of a loaded dataset: the first N images, and a seeded validation split."""

from __future__ import annotations

import dataclasses

import torch

from ..errors import ConfigError
from .dataset import Dataset

VAL_SEED = 7919  # the validation draw's generator: seed * this + 1, apart from every other stream


def limit(data: Dataset, n_train: int | None, n_test: int | None) -> Dataset:
    """The first ``n_train`` training and ``n_test`` test images (None: all)."""
    return dataclasses.replace(data, train_x=data.train_x[:n_train], train_y=data.train_y[:n_train],
                               test_x=data.test_x[:n_test], test_y=data.test_y[:n_test])


def split_validation(data: Dataset, n: int, seed: int) -> tuple[Dataset, tuple[torch.Tensor, torch.Tensor] | None]:
    """Hold out ``n`` training images, drawn with ``seed``, as a validation set; returns the
    dataset with the rest as its training set (in their original order), and (images, labels)
    of the held-out part. The test set is never touched."""
    if not n:
        return data, None
    total = len(data.train_y)
    if n >= total:
        raise ConfigError(f"config field 'val_split' ({n}) must be below the number of training images ({total})")
    g = torch.Generator().manual_seed(seed * VAL_SEED + 1)
    perm = torch.randperm(total, generator=g).to(data.train_x.device)
    val, keep = perm[:n].sort().values, perm[n:].sort().values
    rest = dataclasses.replace(data, train_x=data.train_x[keep], train_y=data.train_y[keep])
    return rest, (data.train_x[val], data.train_y[val])
