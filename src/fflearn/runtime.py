"""The machine a run uses: device, seeds, threads, autocast, device clocks, downloads.

Small helpers every layer above needs, kept in one place so that the trainer, the pipeline, the
benches and the experiments make the same choices (and one fix reaches all of them).
"""

from __future__ import annotations

import contextlib
import os
import random
from typing import Any

import numpy as np
import torch

from .errors import ConfigError

NO_DOWNLOAD_ENV = "FFLEARN_NO_DOWNLOAD"


def resolve_device(name: str) -> torch.device:
    """``auto`` -> cuda where available, else cpu; a CUDA request without CUDA is a ConfigError."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not (name in ("cpu", "cuda") or name.startswith("cuda:")):
        raise ConfigError(f"config field 'device' must be auto, cpu, cuda or cuda:N; got {name!r}")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"config field 'device' is {name!r} but no CUDA device is available; use --device cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ConfigError(f"config field 'device' is {name!r} but only {torch.cuda.device_count()} CUDA "
                          "device(s) are visible")
    return dev


def set_seed(seed: int, deterministic: bool = False) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        # cuBLAS reads this when it starts: set it before anything may touch the GPU
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=False)


def set_threads(threads: int) -> None:
    """Fix the CPU thread count (0: torch's own choice). An unset count differs between machines
    and makes speed figures incomparable."""
    if threads < 0:
        raise ConfigError(f"config field 'threads' must be >= 0; got {threads}")
    if threads:
        torch.set_num_threads(threads)


def autocast(device: torch.device, bf16: bool) -> Any:
    """bf16 autocast on ``device`` when asked, else a no-op context."""
    return torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()


def sync(device: torch.device) -> None:
    """Wait for queued device work: CUDA runs asynchronously, so a clock read without a
    synchronise measures how fast kernels are *queued*, not run."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def downloads_allowed() -> bool:
    """False when ``$FFLEARN_NO_DOWNLOAD`` is set (offline machines, CI): missing data then
    fails at once with the list of files to fetch, instead of waiting on the network."""
    return os.environ.get(NO_DOWNLOAD_ENV, "").strip().lower() in ("", "0", "false", "no")
