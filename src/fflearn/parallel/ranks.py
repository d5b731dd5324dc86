"""Rank primitives of multi-process training: where a rank stands, joining the group, collectives.

A rank reads its place from the variables torchrun sets (RANK, WORLD_SIZE, LOCAL_RANK,
MASTER_ADDR, MASTER_PORT); :func:`fflearn.parallel.launch.launch` sets the same ones for N local
processes. A dead or hung rank never hangs the others: the process group has a timeout
(``--dist-timeout``) and a closed connection fails at once.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

from ..errors import ConfigError, FFLearnError, TrainingError


class DistributedError(TrainingError):
    """Another rank died, hung, or failed to start."""


GRACE_SECONDS = 10.0  # launch: time the other ranks get to report a failed rank themselves


@dataclass
class RankContext:
    rank: int
    world: int
    local_rank: int
    timeout: float  # seconds a collective or a receive may wait

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def env_world() -> int:
    """WORLD_SIZE when this process is a rank started by torchrun or ``launch``, else 0."""
    if "RANK" not in os.environ:
        return 0
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        raise ConfigError(f"WORLD_SIZE must be an integer, got {os.environ['WORLD_SIZE']!r}") from None


def init_rank(timeout: float, device: torch.device) -> RankContext:
    """Join the process group that torchrun or ``launch`` described in the environment."""
    ctx = RankContext(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]),
                      int(os.environ.get("LOCAL_RANK", os.environ["RANK"])), timeout)
    for var in ("MASTER_ADDR", "MASTER_PORT"):
        if var not in os.environ:
            raise ConfigError(f"rank {ctx.rank}: {var} is not set (start ranks with torchrun or fflearn train --nproc N)")
    backend = "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(ctx.local_rank % max(1, torch.cuda.device_count()))
        backend = "cpu:gloo,cuda:nccl"  # gloo for small CPU objects, nccl for tensors on the GPU
    try:
        dist.init_process_group(backend, rank=ctx.rank, world_size=ctx.world, timeout=timedelta(seconds=timeout))
    except (RuntimeError, ValueError) as e:
        raise DistributedError(f"rank {ctx.rank}: cannot join the process group at "
                               f"{os.environ['MASTER_ADDR']}:{os.environ['MASTER_PORT']}: {_first_line(e)}") from None
    return ctx


def agree(ctx: RankContext, error: FFLearnError | None, out: str | None) -> str:
    """Every rank reports whether it could start; all stop if one could not. Returns rank 0's run
    folder (all ranks must use the same one)."""
    reports: list[Any] = [None] * ctx.world
    dist.all_gather_object(reports, (None if error is None else str(error), out))
    if error is not None:
        raise error
    bad = [r for r, (msg, _) in enumerate(reports) if msg is not None]
    if bad:
        raise DistributedError(f"rank {ctx.rank}: stopped because rank {bad[0]} could not start: {reports[bad[0]][0]}")
    return str(reports[0][1])


def is_comm_error(e: BaseException) -> bool:
    """A failure of the process group (peer gone, timeout), not a bug in the training code."""
    if isinstance(e, getattr(dist, "DistError", ())):
        return True
    text = str(e)
    return any(s in text for s in ("gloo", "Connection closed", "Connection reset", "Timed out", "NCCL",
                                   "ProcessGroup", "Broken pipe"))


def _first_line(e: BaseException) -> str:
    """The useful part of a torch.distributed message (without the C++ source location)."""
    text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    if text.startswith("[") and "] " in text:
        text = text.split("] ", 1)[1]
    return text.split(". This is typically")[0]


def rank_seed(seed: int, rank: int) -> int:
    """Seed of a rank's augmentation and negatives: rank 0 keeps the single-process stream."""
    return seed + 1_000_003 * rank


def broadcast_state(module: torch.nn.Module, src: int = 0) -> None:
    """Copy every parameter and buffer of ``module`` from rank ``src``, one message per dtype."""
    tensors = list(module.state_dict().values())
    for dtype in _dtypes(tensors):
        group = [t for t in tensors if t.dtype == dtype]
        flat = torch.cat([t.reshape(-1) for t in group])
        dist.broadcast(flat, src)
        _unflatten(flat, group)


def all_reduce_mean(tensors: list[torch.Tensor], world: int) -> None:
    """Average ``tensors`` in place over the ranks, one all-reduce per dtype."""
    for dtype in _dtypes(tensors):
        group = [t for t in tensors if t.dtype == dtype]
        flat = torch.cat([t.reshape(-1) for t in group])
        dist.all_reduce(flat)
        flat.div_(world)
        _unflatten(flat, group)


def _dtypes(tensors: list[torch.Tensor]) -> list[torch.dtype]:
    """The dtypes of ``tensors`` in an order every rank agrees on (a set's order is per process)."""
    return sorted({t.dtype for t in tensors}, key=str)


def _unflatten(flat: torch.Tensor, group: list[torch.Tensor]) -> None:
    offset = 0
    with torch.no_grad():
        for t in group:
            t.copy_(flat[offset : offset + t.numel()].view_as(t))
            offset += t.numel()




def broadcast_value(value: float, src: int = 0) -> float:
    """``value`` as rank ``src`` has it, on every rank (a float64 on the CPU: gloo)."""
    t = torch.tensor([value], dtype=torch.float64)
    dist.broadcast(t, src)
    return float(t[0])
