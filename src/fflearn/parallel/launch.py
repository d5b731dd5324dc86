"""Starting a multi-process run: the launcher (``--nproc N`` / ``--pipeline N``) and one rank's life.

:func:`main` is what ``fflearn train`` calls with a finished :class:`Request`. Outside a rank it
checks what can be checked in one process, then starts N ranks that run the same command line
(the variables torchrun would set); inside a rank (started by the launcher or by torchrun) it
joins the group, builds this rank's trainer, agrees with the others that every rank could start,
trains, and rank 0 prints the summary. A rank that dies stops the others: the launcher stops the
rest, and the others see the closed connection (or the ``--dist-timeout``) and say so in one line.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch.distributed as dist

from ..checkpoint import resume_config
from ..config import Config, validate
from ..console import summary_text
from ..errors import ConfigError, FFLearnError
from ..runfolder import default_out
from ..runtime import resolve_device
from .data import DataParallelTrainer, check_data_parallel
from .pipeline import PipelineTrainer, check_pipeline
from .ranks import GRACE_SECONDS, DistributedError, _first_line, agree, env_world, init_rank, is_comm_error


@dataclass
class Request:
    """A multi-process ``fflearn train``, as parsed from its command line."""

    mode: str  # "data" (data parallel) or "pipeline" (layer-parallel)
    world: int  # processes asked for (0: as many as WORLD_SIZE says, inside torchrun)
    argv: list[str]  # the command line every launched rank runs
    cfg: Config | None = None  # a new run's config
    resume: str | None = None  # or the run folder to continue ...
    overrides: dict[str, Any] = field(default_factory=dict)  # ... with these fields changed
    overwrite: bool = False
    timeout: float = 300.0  # seconds a collective or a receive may wait

    def config(self, rank: int | None = None) -> tuple[Config, Path | None]:
        """The run's config, and for a resume the checkpoint it continues (a pipeline rank's own
        ``checkpoint-rank{r}.pt`` where present, else the run's ``checkpoint.pt``)."""
        if self.resume is None:
            assert self.cfg is not None
            return self.cfg, None
        names = (f"checkpoint-rank{rank}.pt",) if rank is not None else ()
        cfg, path, _ = resume_config(self.resume, self.overrides, candidates=names)
        return cfg, path


def check(cfg: Config, mode: str, world: int) -> None:
    validate(cfg)
    if mode == "pipeline":
        check_pipeline(cfg, world)
    else:
        check_data_parallel(cfg, world)


def main(req: Request) -> int:
    flag = "--pipeline" if req.mode == "pipeline" else "--nproc"
    if req.world < 1 and not (req.world == 0 and env_world()):
        raise ConfigError(f"{flag} takes a number of processes >= 1; got {req.world}")
    if not req.timeout > 0:
        raise ConfigError(f"--dist-timeout must be a positive number of seconds; got {req.timeout}")
    world = env_world()
    if world == 0:  # the launcher: check what can be checked here, then start the ranks
        cfg, _ = req.config(0 if req.mode == "pipeline" else None)
        check(cfg, req.mode, req.world)
        argv = list(req.argv)
        if req.resume is None and not cfg.out:  # all ranks must agree on the run folder
            argv += ["--out", str(default_out(cfg.method, cfg.dataset))]
        return launch(req.world, argv)
    if req.world > 1 and req.world != world:
        raise ConfigError(f"{flag} {req.world} but this rank was started with WORLD_SIZE={world}")
    return run_rank(req)


def run_rank(req: Request) -> int:
    """Train as one rank of a data-parallel or pipeline run; rank 0 prints the summary."""
    rank = int(os.environ["RANK"])
    cfg, ck_path = req.config(rank if req.mode == "pipeline" else None)
    ctx = init_rank(req.timeout, resolve_device(cfg.device))
    trainer: Any = None
    resume = req.resume is not None
    try:
        error: FFLearnError | None = None
        try:
            cls = PipelineTrainer if req.mode == "pipeline" else DataParallelTrainer
            trainer = cls(cfg, ctx, overwrite=req.overwrite, resume=resume)
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
        print(summary_text(summary))
    return 0


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


def run_fflearn(argv: list[str], threads: int, what: str) -> None:
    """``python -m fflearn ARGV`` in a fresh process with ``threads`` CPU threads (the runs a
    measurement compares each start alike); a failure is one FFLearnError naming ``what``."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    proc = subprocess.run([sys.executable, "-m", "fflearn", *argv], env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
        raise FFLearnError(f"{what} failed (exit status {proc.returncode}): {lines[-1] if lines else 'no message'}")
