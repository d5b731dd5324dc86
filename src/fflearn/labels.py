"""Label injection: how a layer learns which label a sample is paired with.

* ``overlay``: Hinton (2022): the first K input values become a one-hot code of the label.
* ``channel``: the Trifecta: a learned embedding maps each class to one HxW map, concatenated to
  the image as an extra channel; the first layer's optimiser trains it.
* ``anchors`` / ``head``: no injection; the label enters through per-layer class anchors (DF's
  one-pass reading) or a classifier head (LCP, BP), see :mod:`fflearn.models`.

Input-injecting modes need one forward pass per candidate label to predict (K passes).
"""

from __future__ import annotations

import torch
from torch import nn

from .registry import LABELS


class LabelInjection(nn.Module):
    """Base: ``conditions_input`` says whether the label is part of the input (K passes to
    predict); ``default_head`` is the head (:data:`fflearn.registry.HEADS`) that scores a layer
    under this injection when the config's ``head`` is ``auto``."""

    conditions_input = False
    extra_channels = 0
    default_head = "goodness"

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return x


@LABELS.register("overlay")
class Overlay(LabelInjection):
    """Write a one-hot code of the label, of height ``value``, over the first K input values."""

    conditions_input = True

    def __init__(self, num_classes: int, value: float = 1.0) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.value = value

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        assert labels is not None
        shape = x.shape
        flat = x.flatten(1).clone()
        flat[:, : self.num_classes] = 0
        flat[torch.arange(flat.shape[0], device=x.device), labels] = self.value
        return flat.view(shape)


@LABELS.register("channel")
class LabelChannel(LabelInjection):
    """The Trifecta's learned label map: Embedding(K, H*W) -> one extra input channel."""

    conditions_input = True
    extra_channels = 1

    def __init__(self, num_classes: int, height: int = 32, width: int = 32) -> None:
        super().__init__()
        self.hw = (height, width)
        self.embed = nn.Embedding(num_classes, height * width)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        assert labels is not None
        maps = self.embed(labels).view(labels.shape[0], 1, *self.hw).to(x.dtype)
        return torch.cat([x, maps], 1)


@LABELS.register("anchors")
class NoInjection(LabelInjection):
    """The input carries no label; per-layer class anchors score all K classes (DF one pass)."""

    default_head = "anchors"


@LABELS.register("head")
class NoInjectionHead(NoInjection):
    """The input carries no label; a classifier head scores all K classes (LCP, BP)."""

    default_head = "linear"
