"""Data-parallel training (``fflearn train --nproc N`` or torchrun), any method.

Every rank holds the whole net and trains on its shard of each batch; after each segment's
backward the gradients of the optimisers about to step are averaged with one all-reduce
(``Learner.grad_sync``), so every rank takes the same step. The clock that drives a time budget
and the lr schedule is rank 0's, broadcast at every step, so the ranks apply the same learning
rate and stop on the same step.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from ..config import Config
from ..errors import ConfigError
from ..negatives import Sampler
from ..registry import NEGATIVES
from ..trainer import Trainer
from .ranks import RankContext, all_reduce_mean, broadcast_state, broadcast_value, rank_seed


def check_multiprocess(cfg: Config, mode: str) -> None:
    """Refuse an ingredient whose state cannot be shared between processes (its ``multiprocess``)."""
    sampler = NEGATIVES.get(cfg.negatives)
    if isinstance(sampler, type) and issubclass(sampler, Sampler) and not sampler.multiprocess:
        raise ConfigError(f"{mode} does not support negatives {cfg.negatives!r} (its per-sample state cannot be "
                          "shared between processes); use negatives 'one' or 'all', or train on one process")


def check_data_parallel(cfg: Config, world: int) -> None:
    check_multiprocess(cfg, "data parallel training (--nproc)")
    if cfg.batch_size % world:
        raise ConfigError(f"data parallel over {world} processes needs a batch_size divisible by {world}; "
                          f"got {cfg.batch_size} (each rank takes batch_size/{world} samples of every batch)")


class DataParallelTrainer(Trainer):
    """A Trainer whose rank takes its shard of every batch and averages gradients with the others.

    ``batch_size`` is the global batch: rank r takes samples r, r+N, r+2N, ... of each batch of
    the shared epoch order, so a step sees the same samples and (the local losses being means
    over samples) the same averaged gradient as one process, up to float rounding, BatchNorm
    statistics and the draws of random negatives and augmentations (rank-offset seeds).
    """

    def __init__(self, cfg: Config, ctx: RankContext, overwrite: bool = False, resume: bool = False,
                 callbacks: list[Any] | None = None) -> None:
        check_data_parallel(cfg, ctx.world)
        self.ctx = ctx
        self._gen_states: list[torch.Tensor] | None = None
        self._loaded_gen_states: list[torch.Tensor] | None = None
        self._partial_totals: tuple[torch.Tensor, torch.Tensor] | None = None
        rank_cfg = cfg if ctx.is_main else cfg.replace(tensorboard=False)
        super().__init__(rank_cfg, overwrite=overwrite, resume=resume, write=ctx.is_main, verbose=ctx.is_main,
                         callbacks=callbacks)
        if self.device.type == "cuda" and any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
                                              for m in self.net.modules()):
            # batch statistics over the global batch; the parameters stay the same objects, so
            # the optimisers built on them still hold them
            torch.nn.SyncBatchNorm.convert_sync_batchnorm(self.net)
        self.learner.grad_sync = self._sync_grads

    def start(self, out: Path, ck_path: Path | None) -> None:
        """After every rank could start: resume, seed this rank's stream, same weights everywhere."""
        self.out = out
        if ck_path is not None:
            self.load_checkpoint(ck_path)
        states = self._loaded_gen_states
        if states is not None and len(states) == self.ctx.world:
            self.gen.set_state(states[self.ctx.rank].cpu())
        elif not self.ctx.is_main or ck_path is None:
            self.gen.manual_seed(rank_seed(self.cfg.seed, self.ctx.rank) + self.global_step)
        broadcast_state(self.net)

    def close(self) -> None:
        pass

    # --- what the ranks agree on: the clock, gradients, metrics, checkpoints -------------------
    def decide(self, s: int, elapsed: float) -> tuple[float, bool]:
        if self.cfg.time_budget:  # only a time budget makes the schedule and the stop depend on a clock
            elapsed = broadcast_value(elapsed)
        return super().decide(s, elapsed)

    def agree_seconds(self, seconds: float) -> float:
        return broadcast_value(seconds)

    def _sync_grads(self, opts: list[torch.optim.Optimizer]) -> None:
        seen: set[int] = set()
        grads = []
        for opt in opts:
            for group in opt.param_groups:
                for p in group["params"]:
                    if p.grad is not None and id(p) not in seen:
                        seen.add(id(p))
                        grads.append(p.grad)
        if grads:
            all_reduce_mean(grads, self.ctx.world)

    def batch_indices(self, order: torch.Tensor, s: int) -> torch.Tensor:
        b = self.cfg.batch_size
        return order[s * b + self.ctx.rank : (s + 1) * b : self.ctx.world]

    def _sync_norm_stats(self) -> None:
        """Local BatchNorm running statistics -> their mean over the ranks (what rank 0 evaluates
        and saves). SyncBatchNorm (GPU) keeps them equal already."""
        bufs = [b for m in self.net.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
                for b in (m.running_mean, m.running_var) if b is not None]
        if bufs:
            all_reduce_mean(bufs, self.ctx.world)

    def evaluate(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, Any]:
        """Each rank scores a strided share of ``x``; the correct counts are summed."""
        self._sync_norm_stats()
        xs, ys = x[self.ctx.rank :: self.ctx.world], y[self.ctx.rank :: self.ctx.world]
        part = super().evaluate(xs, ys)
        n = len(ys)
        counts = torch.tensor([a * n for a in part["per_layer"]] + [part["accuracy"] * n, n],
                              dtype=torch.float64, device=self.device)
        dist.all_reduce(counts)
        total = max(1.0, float(counts[-1]))
        vals = (counts[:-1].round() / total).tolist()
        return {"per_layer": vals[:-1], "accuracy": vals[-1]}

    def _epoch_record(self, stats: Any, seconds: float, samples: int) -> dict[str, Any]:
        dist.all_reduce(stats.sums)
        dist.all_reduce(stats.count)
        rec = super()._epoch_record(stats, seconds, samples)
        rec["world_size"] = self.ctx.world
        return rec

    def save_checkpoint(self) -> None:
        self._sync_norm_stats()
        states: list[Any] = [None] * self.ctx.world
        dist.all_gather_object(states, self.gen.get_state())
        self._partial_totals = None
        if self.partial_stats is not None:  # mid-epoch: the statistics of all ranks so far
            self._partial_totals = (self.partial_stats.sums.clone(), self.partial_stats.count.clone())
            for t in self._partial_totals:
                dist.all_reduce(t)
        if self.ctx.is_main:
            self._gen_states = states
            super().save_checkpoint()

    def checkpoint(self) -> dict[str, Any]:
        ck = super().checkpoint()
        ck["data_parallel"] = {"world_size": self.ctx.world, "gen_states": self._gen_states or []}
        if self._partial_totals is not None:
            ck["partial_stats"] = {"sums": self._partial_totals[0].cpu(), "count": self._partial_totals[1].cpu()}
        return ck

    def load_checkpoint(self, path: Path, ck: dict[str, Any] | None = None) -> dict[str, Any]:
        ck = super().load_checkpoint(path, ck)
        info = ck.get("data_parallel") or {}
        self._loaded_gen_states = list(info.get("gen_states") or []) or None
        if self.partial_stats is not None and not self.ctx.is_main:  # rank 0 holds the totals so far
            self.partial_stats.sums.zero_()
            self.partial_stats.count.zero_()
        return ck

    def summary(self) -> dict[str, Any]:
        s = super().summary()
        s["distributed"] = {"mode": "data", "world_size": self.ctx.world, "backend": dist.get_backend()}
        return s
