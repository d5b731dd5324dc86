"""The in-memory dataset every loader returns.

Datasets used by fflearn are small enough (MNIST, CIFAR, SVHN, ImageNette at low resolution) to
live as whole uint8 tensors, so training never waits on a DataLoader: batches are index slices,
and normalisation and augmentation run as batched tensor ops on the training device.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from ..errors import DataError


@dataclass
class Dataset:
    """Train and test splits as uint8 image tensors (N, C, H, W) and int64 labels (N,)."""

    name: str
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    num_classes: int
    classes: list[str]
    label: str
    source: str = ""  # the folder the files were read from, for logs and result records

    def __post_init__(self) -> None:
        # Checked here once so that a plugin loader's mistake shows up at load time, not as a
        # shape error deep inside a training step.
        for split, x, y in (("train", self.train_x, self.train_y), ("test", self.test_x, self.test_y)):
            if not isinstance(x, torch.Tensor) or x.dtype != torch.uint8 or x.dim() != 4:
                raise DataError(f"{self.name}: {split}_x must be a uint8 tensor (N, C, H, W)")
            if not isinstance(y, torch.Tensor) or y.dtype != torch.int64 or y.dim() != 1:
                raise DataError(f"{self.name}: {split}_y must be an int64 tensor (N,)")
            if x.shape[0] != y.shape[0]:
                raise DataError(f"{self.name}: {split} split has {x.shape[0]} images but {y.shape[0]} labels")
        if self.train_x.shape[1:] != self.test_x.shape[1:]:
            raise DataError(
                f"{self.name}: train images {tuple(self.train_x.shape[1:])} and test images "
                f"{tuple(self.test_x.shape[1:])} differ in shape"
            )
        if self.num_classes != len(self.classes):
            raise DataError(f"{self.name}: num_classes={self.num_classes} but {len(self.classes)} class names")
        self.train_x = self.train_x.contiguous()
        self.test_x = self.test_x.contiguous()

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one image, what a model needs to size its first layer."""
        c, h, w = self.train_x.shape[1:]
        return int(c), int(h), int(w)

    def mean_std(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-channel float32 mean and (population) std of ``train_x / 255``, shape (C,).

        Computed exactly from a 256-bin histogram per channel, so it needs no float copy of the
        whole training set (600 MB for CIFAR-10).
        """
        x = self.train_x
        levels = torch.arange(256, dtype=torch.float64, device=x.device) / 255.0
        means, stds = [], []
        for c in range(x.shape[1]):
            counts = torch.bincount(x[:, c].reshape(-1), minlength=256).to(torch.float64)
            n = counts.sum().clamp_min(1.0)
            mean = (counts * levels).sum() / n
            var = (counts * (levels - mean) ** 2).sum() / n
            means.append(mean)
            stds.append(var.sqrt())
        return torch.stack(means).float(), torch.stack(stds).float()

    def to(self, device: torch.device | str) -> Dataset:
        """A copy with all four tensors on ``device`` (the original is left where it was)."""
        return dataclasses.replace(
            self,
            train_x=self.train_x.to(device),
            train_y=self.train_y.to(device),
            test_x=self.test_x.to(device),
            test_y=self.test_y.to(device),
            classes=list(self.classes),
        )
