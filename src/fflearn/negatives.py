"""Negative labels: which wrong classes a sample is contrasted with.

A sampler never returns the true label (a known bug of some public FF code draws negatives from
a permutation, which can hit the true label). ``one`` draws one wrong label per sample, uniform
over the K-1 wrong classes (the Trifecta's choice); ``all`` uses every wrong class (DF's N-pair
mining). Both return an index tensor (B, M) of negative classes.
"""

from __future__ import annotations

import torch

from .registry import NEGATIVES


@NEGATIVES.register("one")
def one_wrong(y: torch.Tensor, num_classes: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """One wrong label per sample, uniform over the K-1 others: (B,) -> (B, 1).

    Adding an offset in [1, K-1] modulo K is uniform over the wrong classes and can never give y.
    """
    offset = torch.randint(1, num_classes, y.shape, device=y.device, generator=generator)
    return ((y + offset) % num_classes).unsqueeze(1)


@NEGATIVES.register("all")
def all_wrong(y: torch.Tensor, num_classes: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """All K-1 wrong labels of each sample, in increasing order: (B,) -> (B, K-1)."""
    offsets = torch.arange(1, num_classes, device=y.device)
    neg = (y.unsqueeze(1) + offsets) % num_classes
    return neg.sort(1).values


def pos_neg(scores: torch.Tensor, y: torch.Tensor, neg: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Pick the positive goodness (B,) and negative goodness (B, M) out of a (B, K) score matrix."""
    return scores.gather(1, y.unsqueeze(1)).squeeze(1), scores.gather(1, neg)
