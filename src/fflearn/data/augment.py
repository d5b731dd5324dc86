"""Batched data augmentation as tensor ops on (N, C, H, W) float tensors, on any device.

Whole batches are augmented at once on the training device (no per-sample Python loop, no
DataLoader workers), which keeps augmentation cheap next to the forward passes of local
learning. Every function takes an optional ``torch.Generator`` for reproducible runs; without
one it uses the global RNG of the tensor's device.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..errors import ConfigError


def _rand(n: int, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """n uniform numbers on x's device, drawn from ``generator`` on its own device."""
    device = generator.device if generator is not None else x.device
    return torch.rand(n, generator=generator, device=device).to(x.device)


def _randint(high: int, size: tuple[int, ...], x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    device = generator.device if generator is not None else x.device
    return torch.randint(0, high, size, generator=generator, device=device).to(x.device)


def _check_batch(x: torch.Tensor, fn: str) -> None:
    if x.dim() != 4:
        raise ValueError(f"{fn} expects a batch (N, C, H, W), got shape {tuple(x.shape)}")


def random_crop(x: torch.Tensor, padding: int = 4, generator: torch.Generator | None = None) -> torch.Tensor:
    """Zero-pad by ``padding`` on each side, then cut an HxW window at a per-sample offset.

    Vectorised: one gather with per-sample row and column indices.
    """
    _check_batch(x, "random_crop")
    if padding < 0:
        raise ValueError(f"padding must be >= 0, got {padding}")
    if padding == 0 or x.shape[0] == 0:
        return x
    n, c, h, w = x.shape
    padded = F.pad(x, (padding, padding, padding, padding))
    offsets = _randint(2 * padding + 1, (n, 2), x, generator)
    rows = offsets[:, 0:1] + torch.arange(h, device=x.device)  # (N, H)
    cols = offsets[:, 1:2] + torch.arange(w, device=x.device)  # (N, W)
    n_idx = torch.arange(n, device=x.device)[:, None, None, None]
    c_idx = torch.arange(c, device=x.device)[None, :, None, None]
    return padded[n_idx, c_idx, rows[:, None, :, None], cols[:, None, None, :]]


def rotate(x: torch.Tensor, degrees: torch.Tensor) -> torch.Tensor:
    """Rotate each image counter-clockwise by its angle in ``degrees`` (shape (N,)), zero fill.

    Bilinear sampling about the image centre; correct for non-square images too (the angle is
    applied in pixel space, not in the normalised [-1, 1] grid coordinates).
    """
    _check_batch(x, "rotate")
    if not x.is_floating_point():
        raise TypeError(f"rotate needs a floating-point tensor, got {x.dtype}")
    n, _, h, w = x.shape
    rad = degrees.to(device=x.device, dtype=x.dtype) * (math.pi / 180.0)
    cos, sin = torch.cos(rad), torch.sin(rad)
    zero = torch.zeros_like(cos)
    # Maps output pixel coordinates to input ones (inverse rotation, y axis pointing down).
    theta = torch.stack(
        [
            torch.stack([cos, -sin * (h / w), zero], dim=1),
            torch.stack([sin * (w / h), cos, zero], dim=1),
        ],
        dim=1,
    )
    grid = F.affine_grid(theta, [n, x.shape[1], h, w], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def random_rotation(x: torch.Tensor, degrees: float = 15.0, generator: torch.Generator | None = None) -> torch.Tensor:
    """Rotate each image by an angle drawn uniformly from [-degrees, degrees]."""
    _check_batch(x, "random_rotation")
    if degrees < 0:
        raise ValueError(f"degrees must be >= 0, got {degrees}")
    if degrees == 0 or x.shape[0] == 0:
        return x
    angles = (_rand(x.shape[0], x, generator) * 2.0 - 1.0) * degrees
    return rotate(x, angles)


def random_flip(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Mirror each image left-right with probability 1/2."""
    _check_batch(x, "random_flip")
    if x.shape[0] == 0:
        return x
    flip = _rand(x.shape[0], x, generator) < 0.5
    return torch.where(flip[:, None, None, None], x.flip(-1), x)


class Augment:
    """The enabled augmentations, applied in the order rotation, crop, flip.

    Identity (returns its input unchanged) when everything is off, so callers need not special
    case "no augmentation".
    """

    def __init__(self, crop_padding: int = 0, rotation: float = 0.0, flip: bool = False) -> None:
        if isinstance(crop_padding, bool) or not isinstance(crop_padding, int) or crop_padding < 0:
            raise ConfigError(f"crop_padding must be an integer >= 0, got {crop_padding!r}")
        if isinstance(rotation, bool) or not isinstance(rotation, (int, float)) or not (0 <= rotation <= 180):
            raise ConfigError(f"rotation must be a number of degrees in [0, 180], got {rotation!r}")
        self.crop_padding = crop_padding
        self.rotation = float(rotation)
        self.flip = bool(flip)

    @property
    def enabled(self) -> bool:
        return self.crop_padding > 0 or self.rotation > 0 or self.flip

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if self.rotation > 0:
            x = random_rotation(x, self.rotation, generator)
        if self.crop_padding > 0:
            x = random_crop(x, self.crop_padding, generator)
        if self.flip:
            x = random_flip(x, generator)
        return x

    def __repr__(self) -> str:
        return f"Augment(crop_padding={self.crop_padding}, rotation={self.rotation}, flip={self.flip})"
