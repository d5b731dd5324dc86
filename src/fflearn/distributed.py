"""Training on several processes with torch.distributed: the launcher, rank set-up, data parallel.

Two ways to use N processes (docs/distributed.md):

* data parallel (``fflearn train --nproc N`` or ``torchrun --nproc_per_node=N -m fflearn train``),
  any method: every rank holds the whole net and trains on its shard of each batch; after each
  segment's backward the gradients of the optimisers about to step are averaged with one
  all-reduce (``Learner.grad_sync``), so every rank takes the same step;
* layer-parallel pipeline (``fflearn train --pipeline N``), local methods with a static scheme:
  see :mod:`fflearn.pipeline`.

A rank reads its place from the variables torchrun sets (RANK, WORLD_SIZE, LOCAL_RANK,
MASTER_ADDR, MASTER_PORT); ``launch`` sets the same ones for N local processes. Only rank 0
writes the run folder. A dead or hung rank never hangs the others: the process group has a
timeout (``--dist-timeout``), a closed connection fails at once, and ``launch`` stops the
remaining ranks when one exits with an error.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from .config import Config
from .errors import ConfigError, FFLearnError, TrainingError
from .trainer import CHECKPOINT, Trainer

DIE_ENV = "FFLEARN_TEST_DIE_AT"  # "RANK:STEP": that rank exits with status 1 at that step (tests)
GRACE_SECONDS = 10.0  # launch: time the other ranks get to report a failed rank themselves


class DistributedError(TrainingError):
    """Another rank died, hung, or failed to start."""


@dataclass
class RankContext:
    rank: int
    world: int
    local_rank: int
    timeout: float  # seconds a collective or a receive may wait

    @property
    def is_main(self) -> bool:
        return self.rank == 0


# --- the command line -------------------------------------------------------------------------
def env_world() -> int:
    """WORLD_SIZE when this process is a rank started by torchrun or ``launch``, else 0."""
    if "RANK" not in os.environ:
        return 0
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        raise ConfigError(f"WORLD_SIZE must be an integer, got {os.environ['WORLD_SIZE']!r}") from None


def requested(args: argparse.Namespace) -> bool:
    """True when ``fflearn train`` must run on several processes."""
    return (getattr(args, "nproc", 0) or 0) > 1 or (getattr(args, "pipeline", 0) or 0) > 1 or env_world() > 1


def run_command(args: argparse.Namespace) -> int:
    """``fflearn train`` with --nproc/--pipeline N (launch N ranks) or inside a rank."""
    nproc, pipe = args.nproc or 0, args.pipeline or 0
    if nproc < 0 or pipe < 0:
        raise ConfigError("--nproc and --pipeline take a number of processes >= 1")
    if nproc > 1 and pipe > 1:
        raise ConfigError("--nproc N (data parallel) and --pipeline N (layer-parallel) are two modes: choose one")
    if not args.dist_timeout > 0:
        raise ConfigError(f"--dist-timeout must be a positive number of seconds; got {args.dist_timeout}")
    mode = "pipeline" if pipe > 1 else "data"
    wanted = pipe if pipe > 1 else nproc
    world = env_world()
    if world == 0:  # the launcher: check what can be checked here, then start the ranks
        cfg, _ = resolve_config(args, 0 if mode == "pipeline" else None)
        if mode == "pipeline":
            from .pipeline import check_pipeline

            check_pipeline(cfg, wanted)
        else:
            check_data_parallel(cfg, wanted)
        argv = list(getattr(args, "argv", None) or sys.argv[1:])
        if not args.resume and not cfg.out:  # all ranks must agree on the run folder
            from .trainer import out_dir

            argv += ["--out", str(out_dir(cfg))]
        return launch(wanted, argv)
    if wanted > 1 and wanted != world:
        flag = "--pipeline" if mode == "pipeline" else "--nproc"
        raise ConfigError(f"{flag} {wanted} but this rank was started with WORLD_SIZE={world}")
    return run_rank(args, mode)


def resolve_config(args: argparse.Namespace, rank: int | None = None) -> tuple[Config, Path | None]:
    """The run's config, and for --resume the checkpoint it came from (a pipeline rank's own
    checkpoint-rank{r}.pt where present, else the run's checkpoint.pt)."""
    from .cli import config_from_args

    if not args.resume:
        return config_from_args(args), None
    from .trainer import check_compatible, read_checkpoint

    run_dir = Path(args.resume)
    candidates = ([run_dir / f"checkpoint-rank{rank}.pt"] if rank is not None else []) + [run_dir / CHECKPOINT]
    path = next((p for p in candidates if p.exists()), None)
    if path is None:
        raise FFLearnError(f"no checkpoint in {run_dir}: nothing to resume (expected {run_dir / CHECKPOINT})")
    ck = read_checkpoint(path) if path.name == CHECKPOINT else _read_rank_checkpoint(path)
    old = dict(ck["config"])
    d = dict(old)
    d["out"] = str(run_dir)
    for f in Config.__dataclass_fields__:
        v = getattr(args, f, None)
        if v is not None and f != "out":
            d[f] = v
    cfg = Config.from_dict(d)
    check_compatible(old, cfg, path)
    if cfg.epochs < ck["epoch"]:
        raise ConfigError(f"config field 'epochs' ({cfg.epochs}) is below the {ck['epoch']} epochs already done in {run_dir}")
    return cfg, path


def _read_rank_checkpoint(path: Path) -> dict[str, Any]:
    try:
        ck = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(ck, dict) or not isinstance(ck.get("config"), dict) or "epoch" not in ck:
            raise ValueError("not an fflearn pipeline checkpoint")
        return ck
    except Exception as e:  # a damaged file: torch raises many kinds
        raise FFLearnError(f"cannot read checkpoint {path}: {str(e).strip().splitlines()[0]}") from None


def check_data_parallel(cfg: Config, world: int) -> None:
    if cfg.negatives == "hard":  # each rank would keep its own, diverging per-sample table
        raise ConfigError("data parallel training (--nproc) does not support negatives 'hard' (a per-sample "
                          "table that each rank would keep apart); use negatives 'one' or 'all', or train "
                          "on one process")
    if cfg.batch_size % world:
        raise ConfigError(f"data parallel over {world} processes needs a batch_size divisible by {world}; "
                          f"got {cfg.batch_size} (each rank takes batch_size/{world} samples of every batch)")


# --- one rank ----------------------------------------------------------------------------------
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


def run_rank(args: argparse.Namespace, mode: str) -> int:
    """Train as one rank of a data-parallel or pipeline run; rank 0 prints the summary."""
    from .trainer import resolve_device

    rank = int(os.environ["RANK"])
    cfg, ck_path = resolve_config(args, rank if mode == "pipeline" else None)
    ctx = init_rank(args.dist_timeout, resolve_device(cfg.device))
    trainer: Any = None
    try:
        error: FFLearnError | None = None
        try:
            if mode == "pipeline":
                from .pipeline import PipelineTrainer

                trainer = PipelineTrainer(cfg, ctx, overwrite=args.overwrite, resume=bool(args.resume))
            else:
                trainer = DataParallelTrainer(cfg, ctx, overwrite=args.overwrite, resume=bool(args.resume))
        except FFLearnError as e:
            error = e
        out = agree(ctx, error, None if trainer is None else str(trainer.out))
        trainer.start(Path(out), ck_path)
        summary = trainer.run()
        dist.barrier()  # rank 0 hosts the rendezvous store: leave together
    except RuntimeError as e:
        if is_comm_error(e):
            raise DistributedError(
                f"rank {ctx.rank}: lost contact with another rank: it died, or did not answer within "
                f"--dist-timeout {ctx.timeout:g} s ({_first_line(e)})") from None
        raise
    finally:
        if trainer is not None:
            trainer.close()
    dist.destroy_process_group()
    if ctx.is_main:
        from .cli import _print_summary

        _print_summary(summary)
    return 0


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


def maybe_die(rank: int, step: int) -> None:
    """Test hook: FFLEARN_TEST_DIE_AT=R:S makes rank R exit with status 1 at step S."""
    spec = os.environ.get(DIE_ENV)
    if not spec:
        return
    r, s = (int(v) for v in spec.split(":"))
    if r == rank and step >= s:
        print(f"rank {rank}: {DIE_ENV}={spec}: exiting at step {step} (test hook)", file=sys.stderr, flush=True)
        os._exit(1)


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


# --- data parallel -----------------------------------------------------------------------------
class DataParallelTrainer(Trainer):
    """A Trainer whose rank takes its shard of every batch and averages gradients with the others.

    ``batch_size`` is the global batch: rank r takes samples r, r+N, r+2N, ... of each batch of
    the shared epoch order, so a step sees the same samples and (the local losses being means
    over samples) the same averaged gradient as one process, up to float rounding, BatchNorm
    statistics and the draws of random negatives and augmentations (rank-offset seeds).
    """

    def __init__(self, cfg: Config, ctx: RankContext, overwrite: bool = False, resume: bool = False) -> None:
        check_data_parallel(cfg, ctx.world)
        self.ctx = ctx
        self._scratch: str | None = None
        self._gen_states: list[torch.Tensor] | None = None
        self._loaded_gen_states: list[torch.Tensor] | None = None
        self._partial_totals: tuple[torch.Tensor, torch.Tensor] | None = None
        rank_cfg = cfg if ctx.is_main else cfg.replace(progress=False, tensorboard=False)
        super().__init__(rank_cfg, overwrite=overwrite, resume=resume, readonly=not ctx.is_main)
        if not ctx.is_main:  # the other ranks never touch the run folder
            self._scratch = tempfile.mkdtemp(prefix=f"fflearn-rank{ctx.rank}-")
            self.out = Path(self._scratch)
        if self.device.type == "cuda" and any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
                                              for m in self.net.modules()):
            # batch statistics over the global batch; the parameters stay the same objects, so
            # the optimisers built on them still hold them
            torch.nn.SyncBatchNorm.convert_sync_batchnorm(self.net)
        self.learner.grad_sync = self._sync_grads

    def start(self, out: Path, ck_path: Path | None) -> None:
        """After every rank could start: resume, seed this rank's stream, same weights everywhere."""
        if ck_path is not None:
            self.load_checkpoint(ck_path)
        states = self._loaded_gen_states
        if states is not None and len(states) == self.ctx.world:
            self.gen.set_state(states[self.ctx.rank].cpu())
        elif not self.ctx.is_main or ck_path is None:
            self.gen.manual_seed(rank_seed(self.cfg.seed, self.ctx.rank) + self.global_step)
        broadcast_state(self.net)

    def close(self) -> None:
        if self._scratch:
            shutil.rmtree(self._scratch, ignore_errors=True)

    # --- the three collective points: gradients, metrics, checkpoints --------------------------
    def _sync_grads(self, opts: list[torch.optim.Optimizer]) -> None:
        maybe_die(self.ctx.rank, self.global_step)
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

    def load_checkpoint(self, path: Path) -> None:
        super().load_checkpoint(path)
        from .trainer import read_checkpoint

        info = read_checkpoint(path).get("data_parallel") or {}
        self._loaded_gen_states = list(info.get("gen_states") or []) or None
        if self.partial_stats is not None and not self.ctx.is_main:  # rank 0 holds the totals so far
            self.partial_stats.sums.zero_()
            self.partial_stats.count.zero_()

    def summary(self) -> dict[str, Any]:
        s = super().summary()
        s["distributed"] = {"mode": "data", "world_size": self.ctx.world, "backend": dist.get_backend()}
        return s


# --- the launcher -------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def launch(nproc: int, argv: Sequence[str], grace: float = GRACE_SECONDS) -> int:
    """Run ``python -m fflearn ARGV`` as ``nproc`` local ranks (the variables torchrun would set);
    returns 0, or the status of the first rank that failed, after stopping the others."""
    if nproc < 2:
        raise ConfigError(f"launch needs at least 2 processes, got {nproc}")
    env = dict(os.environ)
    env.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()), WORLD_SIZE=str(nproc),
               LOCAL_WORLD_SIZE=str(nproc), GROUP_RANK="0")
    # N ranks on one machine share its cores (torchrun sets 1 thread; we share them out)
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    procs: list[subprocess.Popen[bytes]] = []
    old_handler = None
    with contextlib.suppress(ValueError):  # not the main thread: no handler, the finally still stops them
        old_handler = signal.signal(signal.SIGTERM, _terminated)  # a killed launcher takes its ranks along
    try:
        for r in range(nproc):
            procs.append(subprocess.Popen([sys.executable, "-m", "fflearn", *argv],
                                          env={**env, "RANK": str(r), "LOCAL_RANK": str(r)}))
        return _watch(procs, grace)
    except KeyboardInterrupt:
        _stop(procs)
        print("fflearn: interrupted; stopped all ranks", file=sys.stderr)
        return 130
    finally:
        _stop(procs)
        if old_handler is not None:
            signal.signal(signal.SIGTERM, old_handler)


def _terminated(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


def _watch(procs: list[subprocess.Popen[bytes]], grace: float) -> int:
    while True:
        codes = [p.poll() for p in procs]
        failed = [(r, c) for r, c in enumerate(codes) if c not in (None, 0)]
        if failed:
            rank, code = failed[0]
            deadline = time.monotonic() + grace  # let the others notice and say so themselves
            while time.monotonic() < deadline and any(p.poll() is None for p in procs):
                time.sleep(0.1)
            stopped = [r for r, p in enumerate(procs) if p.poll() is None]
            _stop(procs)
            how = f"was killed by signal {-code}" if code < 0 else f"exited with status {code}"
            extra = f"; stopped rank(s) {', '.join(map(str, stopped))}" if stopped else ""
            print(f"fflearn: error: rank {rank} {how}{extra}", file=sys.stderr, flush=True)
            return code if code > 0 else 1
        if all(c == 0 for c in codes):
            return 0
        time.sleep(0.2)


def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    alive = [p for p in procs if p.poll() is None]
    for p in alive:
        p.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 5
    for p in alive:
        try:
            p.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
