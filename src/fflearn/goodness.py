"""Goodness functions: how strongly a layer's activations say "this input fits this label".

Two families:

* activation goodness (FF, SymBa, the Trifecta): the label is injected at the input and the
  goodness of a sample is a function of the layer's output alone, e.g. the mean of squares;
* anchor goodness (the DF "centroid" reading, REFERENCE section 1): each layer keeps one learned
  anchor per class and the goodness of sample x for class c is its closeness to anchor c, so one
  label-free forward pass scores all K classes.

Every function returns one value per sample (and per class for anchors); higher is better.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from .registry import ANCHOR_GOODNESS, GOODNESS, POOLS


def _flat(h: torch.Tensor) -> torch.Tensor:
    return h.flatten(1)


@GOODNESS.register("mean_squares")
def mean_squares(h: torch.Tensor) -> torch.Tensor:
    """Mean of squared activations over all features (C*H*W): the Trifecta's goodness."""
    return _flat(h).float().pow(2).mean(1)


@GOODNESS.register("sum_squares")
def sum_squares(h: torch.Tensor) -> torch.Tensor:
    """Sum of squared activations: Hinton's (2022) goodness."""
    return _flat(h).float().pow(2).sum(1)


@GOODNESS.register("sum_squares_minus_width")
def sum_squares_minus_width(h: torch.Tensor) -> torch.Tensor:
    """Sum of squares minus the number of features: loeweX's FF threshold (with ``tau: 0``, a layer
    of D units is positive when its sum of squares passes D, i.e. a mean square of 1)."""
    flat = _flat(h).float()
    return flat.pow(2).sum(1) - flat.shape[1]


@POOLS.register("avg")
def _avg(h: torch.Tensor) -> torch.Tensor:
    return h.mean((2, 3))


@POOLS.register("avgmax")
def _avgmax(h: torch.Tensor) -> torch.Tensor:
    return torch.cat([h.mean((2, 3)), h.amax((2, 3))], 1)


def _grid(n: int) -> Callable[[torch.Tensor], torch.Tensor]:
    def pool(h: torch.Tensor) -> torch.Tensor:
        return F.adaptive_avg_pool2d(h, n).flatten(1)

    return pool


for _n in (2, 3, 4):
    POOLS.register(f"grid{_n}", _grid(_n))


@POOLS.register("flat")
def _flat_map(h: torch.Tensor) -> torch.Tensor:
    return h.flatten(1)


def pool_features(h: torch.Tensor, pool: str = "avg") -> torch.Tensor:
    """Feature vector of a layer output: as is for (B, D); for (B, C, H, W), by ``pool`` (a name
    in :data:`fflearn.registry.POOLS`):

    * ``avg``: global average pool, C features. Keeps anchors small (K x C) and the score
      translation-invariant, but an early layer's 32 channel means say little about the class.
    * ``avgmax``: global average and global max pool side by side, 2C features.
    * ``grid2``: average pool over a 2x2 grid of regions (top-left, top-right, ...), 4C features:
      where in the image a feature fires counts too. ``grid3``, ``grid4``: 3x3 and 4x4 grids, 9C and 16C.
      (Adaptive pooling: on a map smaller than the grid the regions overlap.)
    * ``flat``: no pooling, the whole map (C*H*W features).
    """
    if h.dim() != 4:
        return h.float()
    return POOLS.get(pool)(h.float())


def pool_scored(h: torch.Tensor, pool: str, weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`pool_features` and the (K, D) weight (anchors, a linear map) that scores them, with
    ``flat`` features of a channels-last map taken in its memory order (H, W, C) and the weight's
    columns permuted to match: the same scores, but no copy of the map in the forward and a
    gradient in the map's own layout in the backward (a mixed-layout sum is several times slower
    than the convolution's). The weight stays stored in (C, H, W) order, whatever the layout."""
    if (pool == "flat" and h.dim() == 4 and not h.is_contiguous()
            and h.is_contiguous(memory_format=torch.channels_last)):
        c, hh, ww = h.shape[1:]
        return (h.float().permute(0, 2, 3, 1).flatten(1),
                weight.view(-1, c, hh, ww).permute(0, 2, 3, 1).flatten(1))
    return pool_features(h, pool), weight


def pooled_size(shape: tuple[int, ...], pool: str) -> int:
    """Length of :func:`pool_features`' vector for a layer output of ``shape`` (D,) or (C, H, W):
    read off one pooled zero map, so it cannot drift from what the pool does."""
    return pool_features(torch.zeros(1, *shape), pool).shape[1]


@ANCHOR_GOODNESS.register("neg_sqdist")
def neg_sqdist(z: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
    """Minus the mean squared distance of each feature vector to each anchor: (B, D), (K, D) -> (B, K).

    This is DF's Fig. 1A reading: g = -||W x - a_y||^2 / D, large when x projects close to the
    anchor of y. Expanded as |z|^2 - 2 z.a + |a|^2 so that no (B, K, D) tensor is built.
    """
    d = z.shape[1]
    zz = z.pow(2).sum(1, keepdim=True)
    aa = anchors.float().pow(2).sum(1)
    dist = (zz - 2 * z @ anchors.float().t() + aa).clamp_min(0)
    return -dist / d


EPS = 1e-12  # as F.normalize


class _Cosine(torch.autograd.Function):
    """Cosine scores that keep, for the backward, only the inputs, their norms and the (B, K)
    scores: no normalised copy of z (as large as a layer's whole output with ``head_pool: flat``)
    is made, forward or backward. With s = (z a_n^T) / |z| and a_n = a / |a|, the gradients are
    dz = (g a_n) / |z| - z (g*s).sum(1) / |z|^2 and da = ((g / |z|)^T z - a_n (g*s).sum(0)) / |a|:
    one matmul and one elementwise pass over z each, where normalising z first takes five. z is a
    view of the layer's output, which the next layer saves anyway, so the head adds almost nothing
    to a block's saved activations."""

    @staticmethod
    def forward(ctx: Any, z: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        with torch.autocast(z.device.type, enabled=False):  # the head works in z's precision (float32)
            nz = z.norm(dim=1, keepdim=True).clamp_min(EPS)
            na = a.norm(dim=1, keepdim=True).clamp_min(EPS)
            an = a / na
            s = (z @ an.t()) / nz
            ctx.save_for_backward(z, an, nz, na, s)
            return s

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> Any:
        z, an, nz, na, s = ctx.saved_tensors
        grad = grad.to(z.dtype)
        gz = ga = None
        gs = grad * s  # (B, K)
        if ctx.needs_input_grad[0]:
            gz = torch.addcmul((grad / nz) @ an, z, gs.sum(1, keepdim=True) / nz.pow(2), value=-1)
        if ctx.needs_input_grad[1]:
            ga = ((grad / nz).t() @ z - an * gs.sum(0).unsqueeze(1)) / na
        return gz, ga


@ANCHOR_GOODNESS.register("cosine")
def cosine(z: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
    """Cosine similarity of each feature vector with each anchor: (B, D), (K, D) -> (B, K)."""
    return _Cosine.apply(z, anchors.to(z.dtype))
