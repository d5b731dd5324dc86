"""Per-channel standardisation of images, as the network sees them.

The statistics are the training set's (or fixed constants) and travel in the checkpoint, so a
loaded model needs no dataset to normalise its input.
"""

from __future__ import annotations

import torch


class Normalizer:
    """Images on the 0..255 scale (uint8, or float after augmentation) -> standardised floats;
    :meth:`standardize` takes images already scaled to [0, 1] (torchvision's ``ToTensor``)."""

    def __init__(self, mean: torch.Tensor, std: torch.Tensor, channels_last: bool = False) -> None:
        self.mean = mean.reshape(1, -1, 1, 1).float()
        self.std = std.reshape(1, -1, 1, 1).float()
        self.channels_last = channels_last

    def __call__(self, xb: torch.Tensor) -> torch.Tensor:
        x = (xb.float() / 255 - self.mean) / self.std
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def standardize(self, x01: torch.Tensor) -> torch.Tensor:
        return (x01.float() - self.mean.to(x01.device)) / self.std.to(x01.device)

    def pixel_value(self) -> float:
        """Value of a white pixel after normalisation: the height of Hinton's one-hot overlay."""
        return float(((1 - self.mean) / self.std).max())

    def to(self, device: torch.device | str) -> Normalizer:
        return Normalizer(self.mean.to(device), self.std.to(device), self.channels_last)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"mean": self.mean.flatten().cpu(), "std": self.std.flatten().cpu()}
