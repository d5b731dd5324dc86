"""Negative labels: which wrong classes a sample is contrasted with.

A sampler never returns the true label (a known bug of some public FF code draws negatives from
a permutation, which can hit the true label). ``one`` draws one wrong label per sample, uniform
over the K-1 wrong classes (the Trifecta's choice); ``all`` uses every wrong class (DF's N-pair
mining). Both return an index tensor (B, M) of negative classes.

A sampler with state is a :class:`Sampler` object (``hard``, :class:`HardNegatives`, keeps a
margin per training sample): the learner gives it the batch's training-set indices when it asks
for them (``needs_indices``), reports the deepest loss layer's goodness back (``observe``), and
the checkpoint saves its ``state_dict``; ``multiprocess = False`` makes data-parallel and
pipeline training refuse it up front instead of letting each process keep its own state.
"""

from __future__ import annotations

from typing import Any

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


class Sampler:
    """Protocol of a negative sampler object (a plain function ``(y, num_classes, generator)``
    is a stateless sampler and needs none of this)."""

    needs_indices = False  # sample() wants the batch's indices in the training set
    multiprocess = True  # can run under --nproc / --pipeline (its state is not per process)

    def __call__(self, y: torch.Tensor, num_classes: int, generator: torch.Generator | None = None,
                 idx: torch.Tensor | None = None) -> torch.Tensor:
        raise NotImplementedError

    def observe(self, idx: torch.Tensor, neg: torch.Tensor, g_pos: torch.Tensor, g_neg: torch.Tensor) -> None:
        """The deepest loss layer's positive (B,) and negative (B, M) goodness for ``neg`` (B, M)."""

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


@NEGATIVES.register("hard")
class HardNegatives(Sampler):
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

    needs_indices = True
    multiprocess = False  # the margins come from the last pipeline rank, each data-parallel rank sees a shard

    def __init__(self, num_train: int, num_classes: int, hard_mix: float = 0.5, hard_scale: float = 1.0,
                 device: torch.device | str = "cpu") -> None:
        self.k = num_classes
        self.mix = hard_mix
        self.scale = hard_scale
        self.table = torch.zeros(num_train, num_classes, device=device)

    def probabilities(self, idx: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """(B,) sample indices and labels -> (B, K) probability of each negative label."""
        logits = (self.scale * self.table[idx]).scatter(1, y.unsqueeze(1), float("-inf"))
        uniform = torch.full_like(logits, 1.0 / (self.k - 1)).scatter(1, y.unsqueeze(1), 0.0)
        return (1 - self.mix) * logits.softmax(1) + self.mix * uniform

    def __call__(self, y: torch.Tensor, num_classes: int, generator: torch.Generator | None = None,
                 idx: torch.Tensor | None = None) -> torch.Tensor:
        """One negative per sample: (B,) -> (B, 1), never the true label."""
        if idx is None:
            raise ValueError("negatives 'hard' needs each batch's indices in the training set")
        return torch.multinomial(self.probabilities(idx, y), 1, generator=generator)

    def observe(self, idx: torch.Tensor, neg: torch.Tensor, g_pos: torch.Tensor, g_neg: torch.Tensor) -> None:
        """Record the margins g_neg - g_pos (B, M) just measured for the negatives ``neg`` (B, M)."""
        rows = idx.unsqueeze(1).expand_as(neg)
        margin = (g_neg - g_pos.unsqueeze(1)).to(self.table.dtype)
        # a non-finite goodness is the NaN guard's to report (on a GPU it reads the losses a few
        # steps late): keep the table finite meanwhile, so that no draw fails first
        self.table[rows, neg] = margin.nan_to_num(0.0, posinf=1e4, neginf=-1e4)

    def state_dict(self) -> dict[str, Any]:
        return {"table": self.table}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        table = state["table"]
        if table.shape != self.table.shape:
            raise ValueError(f"hard-negative table {tuple(table.shape)} does not fit the training set "
                             f"{tuple(self.table.shape)}")
        self.table.copy_(table)
