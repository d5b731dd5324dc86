"""The run folder: where a run writes, the checks before it may, and atomic writes.

A run folder holds ``config.yaml`` (resolved), ``metrics.jsonl`` (a line per epoch),
``metrics.csv``, ``summary.json`` and ``checkpoint.pt``. Every file is written atomically (a
temporary file, then a rename), so a killed run leaves the last complete version of each.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import torch

from .errors import ConfigError, FFLearnError

CHECKPOINT = "checkpoint.pt"
RUN_FILES = ("config.yaml", CHECKPOINT, "summary.json")  # any of these marks a folder as a run
LOG_FILES = ("metrics.jsonl", "metrics.csv")


def default_out(method: str, dataset: str) -> Path:
    return Path("runs") / f"{method}-{dataset}-{time.strftime('%Y%m%d-%H%M%S')}"


def check_out(out: Path, overwrite: bool, resume: bool) -> None:
    """Refuse an unusable run folder before any work, without changing anything on disk."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} exists and is not a folder")
    used = out.is_dir() and any((out / f).exists() for f in RUN_FILES)
    if used and not (overwrite or resume):
        raise ConfigError(f"--out {out} already holds a run; pass --overwrite to replace it or --resume {out} to continue it")
    # the nearest existing ancestor must be a folder we can write to (root ignores permissions,
    # but not a regular file standing where a folder should be)
    p = Path(os.path.abspath(out))
    while not p.exists() and p.parent != p:
        p = p.parent
    if not p.is_dir():
        raise ConfigError(f"--out {out} is not writable: {p} is not a folder")
    if not os.access(p, os.W_OK | os.X_OK):
        raise ConfigError(f"--out {out} is not writable: no write permission on {p}")


def prepare_out(out: Path, overwrite: bool, resume: bool) -> Path:
    """Create the run folder (after every check passed); --overwrite removes the old run's files."""
    check_out(out, overwrite, resume)
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise ConfigError(f"--out {out} is not writable: {e.strerror or e}") from None
    if overwrite and not resume:
        for f in (*RUN_FILES, *LOG_FILES):
            (out / f).unlink(missing_ok=True)
            (out / (f + ".tmp")).unlink(missing_ok=True)
    return out


def atomic_save(obj: Any, path: Path) -> None:
    """torch.save to a temporary file, fsync, rename: a crash leaves the old file or the new one,
    never half of one. A failed write (disk full) keeps the old file and is one clear error."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise FFLearnError(f"cannot write {path}: {e.strerror or e}; the previous checkpoint is kept") from None
    _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    """Make a rename durable (a power cut after it must not bring the old name back)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_text(text: str, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise FFLearnError(f"cannot write {path}: {e.strerror or e}") from None


def provenance() -> dict[str, Any]:
    """Where a figure comes from: the command line, the machine, torch, the date."""
    import platform
    import sys

    dev = "cpu: " + (platform.processor() or platform.machine())
    if torch.cuda.is_available():
        dev += f"; cuda: {torch.cuda.get_device_name(0)}"
    return {"command": " ".join(["fflearn" if sys.argv[0].endswith(("fflearn", "__main__.py")) else sys.argv[0],
                                 *sys.argv[1:]]),
            "hardware": f"{dev}, {os.cpu_count()} cores, {torch.get_num_threads()} threads",
            "torch": torch.__version__, "date": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


def write_json(payload: Any, path: str | Path | None, quiet: bool = False) -> Path | None:
    """Write ``payload`` as indented JSON to ``path`` (the ``--json FILE`` of every command that
    measures something), creating its folder; a mapping gets a ``provenance`` entry (command,
    hardware, torch version, date) unless it has one. None: nothing to write."""
    if not path:
        return None
    if isinstance(payload, dict) and "provenance" not in payload:
        payload = {**payload, "provenance": provenance()}
    p = Path(path)
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"cannot write --json {p}: {e.strerror or e}") from None
    try:
        atomic_write_text(json.dumps(payload, indent=2) + "\n", p)
    except FFLearnError:
        raise ConfigError(f"cannot write --json {p}: not writable") from None
    if not quiet:
        print(f"figures written to {p}")
    return p
