"""The public Python API (``fflearn.make_config``, ``train``, ``resume``, ``load``); the CLI is a
thin layer over it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .config import Config
from .methods import make_config
from .runs import load as _load
from .trainer import resume as _resume
from .trainer import train as _train


def train(cfg: Config, overwrite: bool = False, dataset: Any = None, callbacks: list[Any] | None = None) -> dict[str, Any]:
    """Train as ``cfg`` says; returns the summary dict (also in the run folder's summary.json)."""
    return _train(cfg, overwrite=overwrite, dataset=dataset, callbacks=callbacks)


def resume(run_dir: str | Path, epochs: int | None = None, **overrides: Any) -> dict[str, Any]:
    """Continue a checkpointed run (optionally to a larger number of epochs)."""
    return _resume(run_dir, epochs=epochs, **overrides)


def load(run_dir: str | Path, device: str = "cpu") -> Any:
    """A trained run as a ``torch.nn.Module`` in eval mode: ``model(x)`` maps images (B, C, H, W),
    floats in [0, 1] or uint8, to (B, K) class scores; ``model.layer_scores(x)`` gives each layer's.
    Needs no dataset, and loads a GPU-trained run on the CPU."""
    return _load(run_dir, device=device)


__all__ = ["Config", "load", "make_config", "resume", "train"]
