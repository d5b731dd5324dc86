"""Negative labels: which wrong classes a sample is contrasted with.

A sampler never returns the true label (a known bug of some public FF code draws negatives from
a permutation, which can hit the true label). ``one`` draws one wrong label per sample, uniform
over the K-1 wrong classes (the Trifecta's choice); ``all`` uses every wrong class (DF's N-pair
mining). Both return an index tensor (B, M) of negative classes. ``hard`` (config
``negatives: hard``) is :class:`HardNegatives`, which keeps state per training sample.
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


class HardNegatives:
    """One wrong label per sample, drawn towards the labels the network finds hardest for it.

    Hinton (2022, section 3.3) drew negative labels from the network's own predictions, so that
    training spends its negatives where the network is wrong. Predicting every training image
    costs K forward passes each, so this sampler keeps what training measures anyway: for each
    training sample i and wrong label c, ``table[i, c]`` is the margin g_neg - g_pos of the
    deepest loss layer the last time c was sample i's negative (0 until then: an unvisited label
    counts as a tie, which makes the sampler try it). A sample's negative is drawn with
    probability ``(1 - mix) * softmax(scale * table[i])`` over its wrong labels plus ``mix``
    spread uniformly over them, so every wrong label keeps at least ``mix / (K-1)`` and a stale
    entry gets measured again. The true label has probability exactly 0.

    The table is (N, K) floats on the training device (60,000 x 10 x 4 bytes = 2.4 MB for MNIST)
    and is part of the checkpoint.
    """

    def __init__(self, num_train: int, num_classes: int, mix: float, scale: float, device: torch.device) -> None:
        self.k = num_classes
        self.mix = mix
        self.scale = scale
        self.table = torch.zeros(num_train, num_classes, device=device)

    def probabilities(self, idx: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """(B,) sample indices and labels -> (B, K) probability of each negative label."""
        logits = (self.scale * self.table[idx]).scatter(1, y.unsqueeze(1), float("-inf"))
        uniform = torch.full_like(logits, 1.0 / (self.k - 1)).scatter(1, y.unsqueeze(1), 0.0)
        return (1 - self.mix) * logits.softmax(1) + self.mix * uniform

    def sample(self, idx: torch.Tensor, y: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """One negative per sample: (B,) -> (B, 1), never the true label."""
        return torch.multinomial(self.probabilities(idx, y), 1, generator=generator)

    def update(self, idx: torch.Tensor, neg: torch.Tensor, g_pos: torch.Tensor, g_neg: torch.Tensor) -> None:
        """Record the margins g_neg - g_pos (B, M) just measured for the negatives ``neg`` (B, M)."""
        rows = idx.unsqueeze(1).expand_as(neg)
        margin = (g_neg - g_pos.unsqueeze(1)).to(self.table.dtype)
        # a non-finite goodness is the NaN guard's to report (on a GPU it reads the losses a few
        # steps late): keep the table finite meanwhile, so that no draw fails first
        self.table[rows, neg] = margin.nan_to_num(0.0, posinf=1e4, neginf=-1e4)
