"""Learning-rate schedules: the lr at a fraction of training done.

Each schedule is a function ``(cfg, progress) -> lr`` in :data:`fflearn.registry.SCHEDULES`, with
``progress`` in [0, 1). With a time budget the progress is whichever of steps and elapsed time
is further along (:func:`progress`); under several processes the elapsed time is rank 0's, so
every rank applies the same lr at every step.
"""

from __future__ import annotations

import math
from typing import Any

from .registry import SCHEDULES


@SCHEDULES.register("constant")
def constant(cfg: Any, progress: float) -> float:
    return float(cfg.lr)


@SCHEDULES.register("cosine")
def cosine(cfg: Any, progress: float) -> float:
    return cfg.lr * 0.5 * (1 + math.cos(math.pi * progress))


@SCHEDULES.register("step")
def step(cfg: Any, progress: float) -> float:
    """``gamma`` times lower at each of ``milestones`` (fractions of training)."""
    return cfg.lr * cfg.gamma ** sum(progress >= m for m in cfg.milestones)


@SCHEDULES.register("trifecta500")
def trifecta500(cfg: Any, progress: float) -> float:
    """The Trifecta slides' 500-epoch run: 1e-3 x200, 5e-4 x200, 1e-4 x100 epochs (for lr 1e-3)."""
    return cfg.lr * (1.0 if progress < 0.4 else 0.5 if progress < 0.8 else 0.1)


def lr_at(cfg: Any, progress: float) -> float:
    """Learning rate at a fraction ``progress`` in [0, 1) of training."""
    return float(SCHEDULES.get(cfg.schedule)(cfg, progress))


def progress(cfg: Any, by_steps: float, elapsed: float) -> float:
    """Fraction of training done: by steps, or with a time budget by whichever of steps and
    elapsed training seconds is further along."""
    if not cfg.time_budget:
        return by_steps
    return min(0.999999, max(by_steps, elapsed / cfg.time_budget))
