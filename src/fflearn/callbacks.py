"""Callbacks: code that runs at points of training without being part of the loop.

A callback is an object with any of ``on_start(trainer)``, ``on_step(trainer, loss)`` (after
every step; ``loss`` is a 0-d device tensor, read it only when needed), ``on_epoch(trainer,
record)`` (after each epoch's record is written) and ``on_end(trainer, summary)``. Pass
instances to ``Trainer(callbacks=[...])``, or register a class in
:data:`fflearn.registry.CALLBACKS` and name it in the config's ``callbacks`` list (a plugin's
callback may declare hyperparameters like any other ingredient). The console output, the CSV
log and TensorBoard are callbacks too.
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any

from .console import Progress, epoch_line


class Callback:
    """Base class with every hook as a no-op."""

    def on_start(self, trainer: Any) -> None:
        pass

    def on_step(self, trainer: Any, loss: Any) -> None:
        pass

    def on_epoch(self, trainer: Any, record: dict[str, Any]) -> None:
        pass

    def on_end(self, trainer: Any, summary: dict[str, Any]) -> None:
        pass


class Console(Callback):
    """Progress (a bar on a terminal, plain lines elsewhere, off with ``progress: false``) and one
    line per epoch."""

    def __init__(self) -> None:
        self.progress: Progress | None = None

    def on_epoch_start(self, trainer: Any) -> None:
        cfg = trainer.cfg
        if cfg.progress:
            self.progress = Progress(trainer.steps_per_epoch(), trainer.epoch, cfg.epochs, trainer.step_in_epoch,
                                     every=cfg.log_every)

    def on_step(self, trainer: Any, loss: Any) -> None:
        if self.progress is not None:
            self.progress.update(loss)

    def on_epoch(self, trainer: Any, record: dict[str, Any]) -> None:
        self.close()
        print(epoch_line(trainer.cfg.epochs, record), flush=True)

    def close(self) -> None:
        if self.progress is not None:
            self.progress.close()
            self.progress = None


def flat_record(record: dict[str, Any]) -> dict[str, float]:
    """The numbers of an epoch record as ``{name: value}``: a scalar field under its own name, a
    per-layer list as ``name/layer0``, ``name/layer1``, ...; booleans, strings, ``None`` and
    non-finite values are skipped (a missing evaluation is a gap, not a zero)."""
    out: dict[str, float] = {}
    for key, value in record.items():
        if isinstance(value, (list, tuple)):
            for i, v in enumerate(value):
                if _number(v):
                    out[f"{key}/layer{i}"] = float(v)
        elif _number(value):
            out[key] = float(value)
    return out


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


class CSVLog(Callback):
    """``metrics.csv`` beside ``metrics.jsonl``: one row per epoch, one column per number
    (per-layer lists as ``name/layerI``); rewritten whole each epoch, so columns that appear later
    (the test accuracy at the end of a validation run) get their header too."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def on_epoch(self, trainer: Any, record: dict[str, Any]) -> None:
        from .runfolder import atomic_write_text

        rows = [flat_record(m) for m in trainer.metrics]
        cols: list[str] = []
        for r in rows:
            cols += [c for c in r if c not in cols]
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=cols, restval="")
        w.writeheader()
        w.writerows(rows)
        atomic_write_text(buf.getvalue(), self.path)
