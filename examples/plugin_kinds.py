"""One plugin of each ingredient kind, each with a hyperparameter of its own.

Import it with ``--plugin examples/plugin_kinds.py`` and select an ingredient by name; its
hyperparameter is a flag (and a YAML key), checked against its annotation, saved in the run's
config.yaml under ``params`` and restored on resume::

    fflearn train --plugin examples/plugin_kinds.py --method symba --loss focal-symba --focal-gamma 1.5
    fflearn train --plugin examples/plugin_kinds.py --method df --negatives n-random --n-negatives 3
    fflearn train --plugin examples/plugin_kinds.py --method df --scheme first-alone --tail-block 3
    fflearn train --plugin examples/plugin_kinds.py --method symba --goodness power-mean --goodness-power 3
    fflearn train --plugin examples/plugin_kinds.py --method symba --model small --label-mode random-pattern \\
        --pattern-scale 2
    fflearn train --plugin examples/plugin_kinds.py --method lcp --head cosine-linear --head-temperature 5

The rule every registered class is built by: each constructor parameter is filled from the
caller's context (``num_classes``, ``features``, ...), else the config field of that name
(``alpha`` below is the config's), else the plugin hyperparameter of that name, else its
default. ``tests/test_plugins.py`` trains, resumes and evaluates with each of these.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fflearn.labels import LabelInjection
from fflearn.registry import GOODNESS, HEADS, LABELS, LOSSES, NEGATIVES, SCHEMES
from fflearn.schemes import Greedy, Segment

BUILT: list[tuple[str, dict[str, float]]] = []  # (ingredient, its hyperparameters) as constructed


@LOSSES.register("focal-symba", overwrite=True)
class FocalSymBa:
    """SymBa with a focal weight: pairs the net already separates count less (Lin et al. 2017)."""

    def __init__(self, alpha: float = 4.0, focal_gamma: float = 2.0) -> None:
        self.alpha, self.gamma = alpha, focal_gamma
        BUILT.append(("focal-symba", {"focal_gamma": focal_gamma}))

    def __call__(self, g_pos: torch.Tensor, g_neg: torch.Tensor) -> torch.Tensor:
        z = -self.alpha * (g_pos.unsqueeze(1) - g_neg)
        weight = torch.sigmoid(z).detach() ** self.gamma
        return (weight * F.softplus(z)).mean(1)


@NEGATIVES.register("n-random", overwrite=True)
class NRandom:
    """``n_negatives`` distinct wrong labels per sample, uniform (never the true one)."""

    def __init__(self, num_classes: int, n_negatives: int = 2) -> None:
        if not 1 <= n_negatives < num_classes:
            raise ValueError(f"n_negatives must be in [1, {num_classes - 1}], got {n_negatives}")
        self.n = n_negatives
        BUILT.append(("n-random", {"n_negatives": n_negatives}))

    def __call__(self, y: torch.Tensor, num_classes: int, generator: torch.Generator | None = None) -> torch.Tensor:
        # distinct offsets in [1, K-1] from a random permutation per sample
        keys = torch.rand(len(y), num_classes - 1, generator=generator, device=y.device if generator is None
                          else generator.device).to(y.device)
        offsets = keys.argsort(1)[:, : self.n] + 1
        return (y.unsqueeze(1) + offsets) % num_classes


@SCHEMES.register("first-alone", overwrite=True)
class FirstAlone(Greedy):
    """The first layer trains alone, the rest in blocks of ``tail_block`` (each layer's loss counts)."""

    def __init__(self, tail_block: int = 2) -> None:
        self.tail = tail_block
        BUILT.append(("first-alone", {"tail_block": tail_block}))

    def segments(self, step: int, n: int) -> list[Segment]:
        cuts = sorted({0, 1, n, *range(1, n, self.tail)})
        return [Segment(a, b, tuple(range(a, b))) for a, b in zip(cuts, cuts[1:], strict=False)]


@GOODNESS.register("power-mean", overwrite=True)
class PowerMean:
    """Mean of |h|^p over the features (p = 2: the Trifecta's mean of squares)."""

    def __init__(self, goodness_power: float = 2.0) -> None:
        self.p = goodness_power
        BUILT.append(("power-mean", {"goodness_power": goodness_power}))

    def __call__(self, h: torch.Tensor) -> torch.Tensor:
        return h.flatten(1).float().abs().pow(self.p).mean(1)


@LABELS.register("random-pattern", overwrite=True)
class RandomPattern(LabelInjection):
    """A fixed random HxW pattern per class, of height ``pattern_scale``, as an extra input channel."""

    conditions_input = True
    extra_channels = 1
    default_head = "goodness"

    def __init__(self, num_classes: int, height: int, width: int, pattern_scale: float = 1.0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(1234)
        self.register_buffer("patterns", pattern_scale * torch.randn(num_classes, 1, height, width, generator=g))
        BUILT.append(("random-pattern", {"pattern_scale": pattern_scale}))

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        assert labels is not None
        return torch.cat([x, self.patterns[labels].to(x.dtype)], 1)


@HEADS.register("cosine-linear", overwrite=True)
class CosineLinear(nn.Module):
    """Cosine of the pooled features with a learned vector per class, times ``head_temperature``."""

    all_classes = True

    def __init__(self, features: int, num_classes: int, head_pool: str = "avg", head_temperature: float = 10.0) -> None:
        super().__init__()
        from fflearn.goodness import pool_features

        self.pool_features, self.pool = pool_features, head_pool
        self.t = head_temperature
        self.w = nn.Parameter(torch.randn(num_classes, features) * 0.01)
        BUILT.append(("cosine-linear", {"head_temperature": head_temperature}))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        z = self.pool_features(h, self.pool)
        return self.t * F.normalize(z, dim=1) @ F.normalize(self.w, dim=1).t()
