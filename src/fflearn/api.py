"""The public Python API; the CLI is a thin layer over it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .config import Config, load_yaml
from .methods import method_defaults


def make_config(config_file: str | Path | None = None, **fields: Any) -> Config:
    """Resolve a config: Config defaults < the method's recipe < ``config_file`` < ``fields``.

    The recipe depends on the method and model, which may themselves come from the file or the
    fields, so those two are read first.
    """
    from_file = load_yaml(config_file) if config_file else {}
    given = {k: v for k, v in fields.items() if v is not None}
    base = Config()
    method = given.get("method", from_file.get("method", base.method))
    model = given.get("model", from_file.get("model", base.model))
    merged = {**method_defaults(str(method), str(model)), **from_file, **given}
    merged["method"], merged["model"] = method, model
    return Config.from_dict(merged)


def train(cfg: Config, overwrite: bool = False, dataset: Any = None) -> dict[str, Any]:
    """Train as ``cfg`` says; returns the summary dict (also in the run folder's summary.json)."""
    from .trainer import train as _train

    return _train(cfg, overwrite=overwrite, dataset=dataset)


def resume(run_dir: str | Path, epochs: int | None = None, **overrides: Any) -> dict[str, Any]:
    """Continue a checkpointed run (optionally to a larger number of epochs)."""
    from .trainer import resume as _resume

    return _resume(run_dir, epochs=epochs, **overrides)
