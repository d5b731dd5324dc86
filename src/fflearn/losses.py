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

    @property
    def reads_scores(self) -> bool:
        """Whether :meth:`from_scores` applies (the softplus form without lambda)."""
        return self.form == "softplus" and not self.lam

    def from_scores(self, scores: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The softplus form over all K-1 wrong classes straight from the (B, K) score matrix, in one
        autograd node (fewer operations than gathering the positive and the negatives first). It is
        (1/s) CE(s G - s m e_y, y) (docs/distance-forward.md), but computed, and differentiated, as
        the pairwise form: CE's gradient at the true class, softmax_y - 1, loses its digits when a
        sample is confident, and Adam magnifies such small gradients (training drifted away)."""
        return _NPairAll.apply(scores, y, self.margin, self.scale)

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


class _NPairAll(torch.autograd.Function):
    """(1/s) log(1 + sum_{c != y} exp(s (m - G_y + G_c))) per sample from G (B, K); its gradient is
    p_c = exp(x_c) / (1 + sum exp(x)) at each wrong class and minus their sum at the true one."""

    @staticmethod
    def forward(ctx: Any, g: torch.Tensor, y: torch.Tensor, m: float, s: float) -> torch.Tensor:
        col = y.unsqueeze(1)
        # x_c = s (m + G_c - G_y) for the wrong classes; -inf at the true one (it is not a negative)
        x = (s * (g - g.gather(1, col) + m)).scatter(1, col, float("-inf"))
        lse = torch.logsumexp(x, 1)
        ctx.save_for_backward(x, lse, col)
        ctx.s = s
        return F.softplus(lse) / s

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> Any:
        x, lse, col = ctx.saved_tensors
        # d/dx_c of log(1 + sum exp x) = exp(x_c) / (1 + sum exp x) = exp(x_c - lse) * sigmoid(lse)
        p = (x - lse.unsqueeze(1)).exp() * torch.sigmoid(lse).unsqueeze(1) * grad.unsqueeze(1)
        return p.scatter(1, col, -p.sum(1, keepdim=True)), None, None, None


def support_fraction(g_pos: torch.Tensor, g_neg: torch.Tensor, margin: float) -> torch.Tensor:
    """Share of (positive, negative) pairs inside the margin, DF's support points (a 0-d tensor:
    the learner logs it per layer for every loss with a ``margin``, without a host read)."""
    return (g_pos.unsqueeze(1) - g_neg < margin).float().mean()
