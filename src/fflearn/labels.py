"""Label injection: how a layer learns which label a sample is paired with.

* ``overlay``: Hinton (2022): the first K input values become a one-hot code of the label.
* ``channel``: the Trifecta: a learned embedding maps each class to one HxW map, concatenated to
  the image as an extra channel; the first layer's optimiser trains it.
* ``icp``: SymBa's intrinsic class pattern, as fflearn reconstructs it: a fixed random pattern
  per class spread over the whole image and added to it, so the class is part of every pixel.
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


@LABELS.register("icp")
class IntrinsicClassPattern(LabelInjection):
    """SymBa's intrinsic class pattern (ICP; Lee & Song 2023), a reconstruction: the abstract says
    only that SymBa adds "Intrinsic Class Pattern (ICP) containing class information to prevent
    the loss of class information during training", and the full text was not at hand. Here each
    class owns a fixed random +-1 pattern over the H x W pixels (drawn from ``icp_seed``, the same
    in every channel, kept in the checkpoint), and the input is the image plus ``icp_scale`` times
    its label's pattern.

    Why spread it: Hinton's overlay writes the label into K of the D inputs, a share of the input's
    length that shrinks with D and that each layer's length normalisation passes on diluted; a
    pattern over every pixel carries as much of the input's energy as ``icp_scale`` sets (1: as
    much as the normalised image, whose pixels have unit spread) and reaches every receptive
    field of a conv net. Nothing is learned: the patterns are buffers, not parameters. The default
    height, 0.1, is the best of 0.1, 0.3, 1 and 3 on validation (docs/methods/symba.md)."""

    conditions_input = True

    def __init__(self, num_classes: int, height: int = 32, width: int = 32, icp_scale: float = 0.1,
                 icp_seed: int = 0) -> None:
        super().__init__()
        if not icp_scale > 0:  # also refuses NaN
            raise ValueError(f"icp_scale must be > 0 (the pattern's height against the image's unit spread), got {icp_scale}")
        g = torch.Generator().manual_seed(icp_seed)
        signs = torch.randint(0, 2, (num_classes, height * width), generator=g).float() * 2 - 1
        self.patterns: torch.Tensor
        self.register_buffer("patterns", signs * icp_scale)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        assert labels is not None
        b, hw = x.shape[0], self.patterns.shape[1]
        pattern = self.patterns[labels].to(x.dtype).view(b, 1, hw)  # one pattern, every channel
        return (x.reshape(b, -1, hw) + pattern).view(x.shape)


@LABELS.register("anchors")
class NoInjection(LabelInjection):
    """The input carries no label; per-layer class anchors score all K classes (DF one pass)."""

    default_head = "anchors"


@LABELS.register("head")
class NoInjectionHead(NoInjection):
    """The input carries no label; a classifier head scores all K classes (LCP, BP)."""

    default_head = "linear"
