"""Shared machinery of the benchmarks: trainers built as ``fflearn train`` builds them, steps timed
as a real epoch takes them, device clocks read only after a synchronise, tables and JSON.

Why the benchmarks drive the :class:`~fflearn.trainer.Trainer`'s own parts (its data on the
device, its augmentation, its normaliser, its learner) instead of a stripped-down loop: a speed
figure must be the speed a user gets from ``fflearn train``, augmentation and normalisation
included. What is left out is what an epoch does after its last step (test evaluation,
checkpoint writing), which the run's ``metrics.jsonl`` reports separately as ``eval_seconds``.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from collections.abc import Callable
from typing import Any

import torch

from ..cliargs import add_bool, add_overrides
from ..config import parse_overrides
from ..console import format_table
from ..errors import ConfigError
from ..runtime import set_threads, sync

MODEL_NAMES = ("mlp", "small", "large")


# --- options shared by every bench subcommand ----------------------------------------------
def add_common_args(p: argparse.ArgumentParser, methods: str, models: str, dataset: str) -> None:
    p.add_argument("--methods", default=methods, help=f"comma-separated methods (default: {methods})")
    p.add_argument("--models", default=models, help=f"comma-separated models: mlp, small, large (default: {models})")
    p.add_argument("--dataset", default=dataset, help=f"dataset (default: {dataset})")
    p.add_argument("--data-dir", default=None, help="data root (default: $FFLEARN_DATA, then the standard places)")
    p.add_argument("--width", type=float, default=None, help="channel scale of the conv nets (default: the config's 1.0)")
    p.add_argument("--batch-size", type=int, default=None, help="samples per step (default: the config's 128)")
    p.add_argument("--limit-train", type=int, default=None, help="use only the first N training images")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (default: auto)")
    p.add_argument("--threads", type=int, default=0,
                   help="torch CPU threads (default 0: torch's own choice; say it, the figures depend on it)")
    add_bool(p, "--bf16", "bf16 autocast (config field bf16)")
    add_bool(p, "--channels-last", "channels_last memory format (conv models only)")
    add_bool(p, "--compile", "torch.compile each layer (config field compile)")
    p.add_argument("--seed", type=int, default=0)
    add_overrides(p, "any other config field, e.g. --set hidden=500,500 --set lr=2e-3")
    p.add_argument("--json", metavar="FILE", help="also write the figures as JSON")


def split_list(text: str, what: str) -> list[str]:
    items = [s.strip() for s in text.split(",") if s.strip()]
    if not items:
        raise ConfigError(f"--{what} needs at least one name")
    return items


def check_positive(name: str, value: float | None, allow_zero: bool = False) -> None:
    if value is None:
        return
    if value < 0 or (value == 0 and not allow_zero):
        raise ConfigError(f"--{name} must be {'>= 0' if allow_zero else 'positive'}; got {value}")


def setup_threads(threads: int) -> None:
    """Fix the CPU thread count before any work: an unset count differs between machines and
    makes figures incomparable (the README's first pitfall)."""
    set_threads(threads)


# --- configs and trainers ------------------------------------------------------------------
def bench_config(args: argparse.Namespace, method: str, model: str, **extra: Any) -> Any:
    """The config a ``fflearn train`` with the same flags would resolve (method recipe first)."""
    from ..config import validate
    from ..methods import make_config

    fields: dict[str, Any] = dict(
        method=method, model=model, dataset=args.dataset, data_dir=args.data_dir,
        width=args.width, batch_size=args.batch_size, limit_train=args.limit_train,
        device=args.device, threads=args.threads, seed=args.seed,
        bf16=args.bf16, compile=args.compile, progress=False,
        # channels_last is a conv-net flag; the MLP rows of a mixed run simply go without it
        channels_last=bool(args.channels_last and model != "mlp"),
    )
    fields.update(parse_overrides(args.overrides))
    fields.update(extra)
    return validate(make_config(**fields))


_DATA_CACHE: dict[tuple[str, str | None], Any] = {}


def load_data(name: str, data_dir: str | None) -> Any:
    """Load a dataset once per process; every trainer of a bench shares its tensors."""
    from ..data import load_dataset

    key = (name, data_dir)
    if key not in _DATA_CACHE:
        _DATA_CACHE[key] = load_dataset(name, data_dir)
    return _DATA_CACHE[key]


def make_trainer(cfg: Any) -> Any:
    """A Trainer that writes no run folder and prints nothing (a bench only takes its steps)."""
    from ..trainer import Trainer

    return Trainer(cfg, dataset=load_data(cfg.dataset, cfg.data_dir), write=False, verbose=False)


class StepRunner:
    """Training steps of ``fflearn train``'s own loop (:meth:`Trainer.train_steps`: the epoch's
    order, augmentation, normalisation, the lr schedule, one ``Learner.step``), rolling over to
    the next epoch when the order runs out, without its evaluations and checkpoints."""

    def __init__(self, trainer: Any) -> None:
        self.t = trainer
        self.spe = trainer.steps_per_epoch()
        trainer.net.train()

    def step(self) -> None:
        self.steps(1)

    def steps(self, n: int) -> None:
        while n > 0:
            n -= self.t.train_steps(limit=n)
            if self.t.step_in_epoch >= self.spe:
                self.t.next_epoch()

    def timed(self, steps: int) -> float:
        """Seconds for ``steps`` steps, the device synchronised before and after."""
        sync(self.t.device)
        t0 = time.perf_counter()
        self.steps(steps)
        sync(self.t.device)
        return time.perf_counter() - t0


def count_ops(fn: Callable[[], Any]) -> int:
    """The number of aten operations ``fn`` dispatches (forward, backward and optimiser alike).
    On a GPU the conv nets' steps are bound by kernel launches, not arithmetic (README, H100), so
    this count, the same on every machine, is the figure a CPU session can lower for the GPU."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class _Count(TorchDispatchMode):
        n = 0

        def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
            self.n += 1
            return func(*args, **(kwargs or {}))

    with _Count() as counter:
        fn()
    return counter.n


# --- machine description and output --------------------------------------------------------
def machine_info(device: torch.device) -> dict[str, Any]:
    info: dict[str, Any] = {
        "device": str(device),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),  # PASSIVE matters on a shared CPU (README)
        # other processes' load: above cpu_count, multi-threaded CPU figures are not trustworthy
        "load_average": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
    }
    if device.type == "cuda":
        info["device_name"] = torch.cuda.get_device_name(device)
    return info


def resolve(device: str) -> torch.device:
    from ..runtime import resolve_device

    if not (device in ("auto", "cpu", "cuda") or device.startswith("cuda:")):
        raise ConfigError(f"--device must be auto, cpu, cuda or cuda:N; got {device!r}")
    return resolve_device(device)


def print_table(rows: list[dict[str, Any]], columns: list[tuple[str, str, Callable[[Any], str]]]) -> None:
    """Print ``rows`` as an aligned table; ``columns`` are (key, header, formatter)."""
    print(format_table([h for _, h, _ in columns],
                       [[fmt(r[k]) if r.get(k) is not None else None for k, _, fmt in columns] for r in rows]))


def f0(v: float) -> str:
    return f"{v:,.0f}"


def f2(v: float) -> str:
    return f"{v:.2f}"


def f3(v: float) -> str:
    return f"{v:.3f}"


def si(v: float) -> str:
    """FLOP figures in engineering units (G, T)."""
    for unit, scale in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(v) >= scale:
            return f"{v / scale:.2f}{unit}"
    return f"{v:.0f}"
