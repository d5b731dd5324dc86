"""Local losses, each a small callable returning one loss per sample.

Every loss takes the positive goodness ``g_pos`` (B,) and the negative goodness ``g_neg``
(B, M), M >= 1 negatives per sample, and returns (B,). One signature serves the FF threshold
loss, SymBa, DF's N-pair margin loss and the cross-entropy of a local classifier (LCP, BP),
so any loss can be paired with any negative sampler and label injection.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from .registry import LOSSES


@LOSSES.register("ff")
@dataclass
class FFLoss:
    """Hinton's threshold loss: softplus(tau - g_pos) + mean_j softplus(g_neg_j - tau)."""

    tau: float = 2.0

    def __call__(self, g_pos: torch.Tensor, g_neg: torch.Tensor) -> torch.Tensor:
        return F.softplus(self.tau - g_pos) + F.softplus(g_neg - self.tau).mean(1)


@LOSSES.register("symba")
@dataclass
class SymBaLoss:
    """SymBa (Lee & Song 2023): mean_j softplus(-alpha (g_pos - g_neg_j))."""

    alpha: float = 4.0

    def __call__(self, g_pos: torch.Tensor, g_neg: torch.Tensor) -> torch.Tensor:
        return F.softplus(-self.alpha * (g_pos.unsqueeze(1) - g_neg)).mean(1)


@LOSSES.register("npair")
@dataclass
class NPairMarginLoss:
    """DF's goodness-based N-pair margin loss (a reconstruction; see docs/distance-forward.md).

    Each positive must beat every negative by the margin m. Support pairs are those inside the
    margin (gap = g_pos - g_neg_j < m); only they carry gradient.

    * ``hinge``:    mean_j relu(m - gap_j)
    * ``softplus``: (1/s) log(1 + sum_j exp(s (m - gap_j))), a smooth max over the negatives
      that concentrates on the hardest supports (N-pair loss of Sohn 2016 with a margin).

    Plus ``lam`` times the largest negative goodness, which pushes every negative away from
    every anchor (DF's absolute-distance regulariser, Fig. 1D).
    """

    margin: float = 0.1
    lam: float = 0.0
    form: str = "softplus"
    scale: float = 100.0

    @classmethod
    def from_config(cls, cfg: Any) -> NPairMarginLoss:
        return cls(cfg.margin, cfg.lam, cfg.npair_form, cfg.npair_scale)

    def offsets(self, y: torch.Tensor, num_classes: int) -> torch.Tensor | None:
        """For :meth:`from_scores`: s * m on each sample's true class (B, K), made once per step;
        None where the shortcut does not apply (the hinge form, or lambda)."""
        if self.form != "softplus" or self.lam:
            return None
        return torch.zeros(len(y), num_classes, device=y.device).scatter_(1, y.unsqueeze(1), self.scale * self.margin)

    def from_scores(self, scores: torch.Tensor, y: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        """The softplus form over all K-1 wrong classes from the (B, K) score matrix, by the identity
        (1/s) log(1 + sum_c exp(s(m - gap_c))) = (1/s) CE(s G - s m e_y, y) (docs/distance-forward.md):
        the same number, with fewer operations than gathering the positive and negatives first."""
        logits = self.scale * scores - offsets
        return (torch.logsumexp(logits, 1) - logits.gather(1, y.unsqueeze(1)).squeeze(1)) / self.scale

    def __call__(self, g_pos: torch.Tensor, g_neg: torch.Tensor) -> torch.Tensor:
        viol = self.margin - (g_pos.unsqueeze(1) - g_neg)
        if self.form == "hinge":
            loss = F.relu(viol).mean(1)
        else:
            # log(1 + sum_j exp(x_j)) = softplus(logsumexp_j x_j): no column of zeros to concatenate
            loss = F.softplus(torch.logsumexp(self.scale * viol, 1)) / self.scale
        if self.lam:
            loss = loss + self.lam * g_neg.max(1).values
        return loss


@LOSSES.register("ce")
@dataclass
class CrossEntropyLoss:
    """Cross-entropy of the class scores, the positive being the true class: LCP and BP heads.

    With all K-1 negatives this is exactly softmax cross-entropy over the K logits.
    """

    def __call__(self, g_pos: torch.Tensor, g_neg: torch.Tensor) -> torch.Tensor:
        return torch.logsumexp(torch.cat([g_pos.unsqueeze(1), g_neg], 1), 1) - g_pos


def support_fraction(g_pos: torch.Tensor, g_neg: torch.Tensor, margin: float) -> torch.Tensor:
    """Share of (positive, negative) pairs inside the margin, DF's support points (a 0-d tensor:
    the learner logs it per layer for every loss with a ``margin``, without a host read)."""
    return (g_pos.unsqueeze(1) - g_neg < margin).float().mean()
