"""Test plugin: callbacks that make a rank die or run slow, and log what each rank did.

Injected with ``--plugin tests/plugins/rank_hooks.py --callbacks ...``: fflearn ships no test hooks.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from fflearn.callbacks import Callback
from fflearn.registry import CALLBACKS


def _rank(trainer: Any) -> int:
    ctx = getattr(trainer, "ctx", None)
    return 0 if ctx is None else int(ctx.rank)


@CALLBACKS.register("die-at")
class DieAt(Callback):
    """Rank ``die_rank`` exits with status 1 after step ``die_step``."""

    def __init__(self, die_rank: int = 1, die_step: int = 3) -> None:
        self.die_rank, self.die_step = die_rank, die_step

    def on_step(self, trainer: Any, loss: Any) -> None:
        if _rank(trainer) == self.die_rank and trainer.global_step >= self.die_step:
            print(f"rank {self.die_rank}: exiting at step {trainer.global_step} (test hook)", file=sys.stderr, flush=True)
            os._exit(1)


@CALLBACKS.register("rank-log")
class RankLog(Callback):
    """Each rank records (step, lr) of every step and a hash of its final weights into
    ``rank_log_dir/rank{r}.json``; rank ``slow_rank`` sleeps ``slow_seconds`` after each step."""

    def __init__(self, rank_log_dir: str = ".", slow_rank: int = -1, slow_seconds: float = 0.0) -> None:
        self.dir, self.slow_rank, self.slow_seconds = Path(rank_log_dir), slow_rank, slow_seconds
        self.steps: list[tuple[int, float]] = []

    def on_step(self, trainer: Any, loss: Any) -> None:
        self.steps.append((trainer.global_step, trainer.lr))
        if _rank(trainer) == self.slow_rank:
            time.sleep(self.slow_seconds)

    def on_end(self, trainer: Any, summary: dict[str, Any]) -> None:
        h = hashlib.sha256()
        for k, v in sorted(trainer.net.state_dict().items()):
            h.update(k.encode())
            h.update(v.detach().float().cpu().numpy().tobytes())
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / f"rank{_rank(trainer)}.json").write_text(json.dumps(
            {"steps": self.steps, "weights": h.hexdigest(), "train_seconds": trainer.train_seconds,
             "epochs": trainer.epoch}))
