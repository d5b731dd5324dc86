"""Checkpoints: reading one safely, checking it fits a config, and the config a resumed run uses.

A checkpoint is a plain dict of tensors and Python values (``torch.load(weights_only=True)``
reads it: no code runs from a pickle). What it holds is written by
:meth:`fflearn.trainer.Trainer.checkpoint`; this module only reads.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from .config import Config
from .data import canonical_name
from .errors import ConfigError, FFLearnError
from .plugins import import_plugins
from .runfolder import CHECKPOINT

# fields a resumed run may not change: they define the network's parameters, what it learns from
# and the data order (method, model and dataset first: the ones a user is most likely to mix up)
RESUME_FIXED = ("method", "model", "dataset", "hidden", "width", "norm", "label_mode", "head", "goodness",
                "anchor_goodness", "head_pool", "head_bias", "negatives", "loss", "scheme", "block_size", "block_partition",
                "alternate", "feedback", "limit_train", "val_split", "batch_size", "seed")
RUN_KEYS = ("config", "learner", "epoch", "step_in_epoch", "global_step", "train_seconds", "metrics", "rng")


def first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def read_checkpoint(path: Path, need: tuple[str, ...] = RUN_KEYS) -> dict[str, Any]:
    """Load a checkpoint on the CPU and check that it is one of ours (has the keys ``need``);
    any damage is one FFLearnError naming the file."""
    try:
        ck = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise FFLearnError(f"no checkpoint at {path}") from None
    except Exception as e:  # torch raises many kinds for a damaged or foreign file
        raise FFLearnError(f"cannot read checkpoint {path} (damaged, or not written by fflearn): {first_line(e)}") from None
    if not isinstance(ck, dict) or any(k not in ck for k in need) or not isinstance(ck.get("config"), dict):
        raise FFLearnError(f"{path} is not an fflearn checkpoint")
    return ck


def run_checkpoint(run_dir: Path) -> Path:
    """The checkpoint of a run folder, or one error saying the folder is not a run."""
    path = run_dir / CHECKPOINT
    if not path.exists():
        what = "nothing to resume" if run_dir.is_dir() else "no such folder"
        raise FFLearnError(f"{run_dir} is not a run folder ({what}): {path} is missing")
    return path


def check_compatible(old: dict[str, Any], cfg: Config, path: Path) -> None:
    """Refuse to continue a checkpoint under a config that changes what it is (RESUME_FIXED)."""
    base = Config()
    for key in RESUME_FIXED:
        was, now = old.get(key, getattr(base, key)), getattr(cfg, key)  # older runs lack newer fields
        if key == "dataset" and isinstance(was, str):
            was, now = canonical_name(was), canonical_name(now)
        if was != now:
            raise ConfigError(
                f"checkpoint {path} was made with {key}={was!r}, not {now!r}: "
                "resume with the same method, model and dataset, or start a new run with --out"
            )
    if old.get("params", {}) != cfg.params:
        raise ConfigError(f"checkpoint {path} was made with plugin hyperparameters {old.get('params', {})}, "
                          f"not {cfg.params}: resume with the same values")


def saved_config(ck: dict[str, Any], run_dir: Path, **overrides: Any) -> Config:
    """The config saved in a checkpoint, writing to ``run_dir``, with ``overrides`` applied."""
    return Config.from_dict({**ck["config"], "out": str(run_dir), **overrides})


def resume_config(run_dir: str | Path, overrides: dict[str, Any] | None = None,
                  candidates: tuple[str, ...] = ()) -> tuple[Config, Path, dict[str, Any]]:
    """The config a resumed run uses (the saved one with ``overrides``), the checkpoint it comes
    from and that checkpoint, checked for compatibility and the epoch count.

    ``candidates``: checkpoint file names to prefer over ``checkpoint.pt`` where present (a pipeline
    rank's own ``checkpoint-rank{r}.pt``). ``overrides`` may change the machinery (device, threads,
    data_dir, progress, checkpointing, evaluation) and the optimisation (lr, schedule, epochs, ...),
    not the fields in RESUME_FIXED."""
    run_dir = Path(run_dir)
    own = [run_dir / c for c in candidates if (run_dir / c).exists()]
    path = own[0] if own else run_checkpoint(run_dir)
    ck = read_checkpoint(path, need=("config", "epoch") if own else RUN_KEYS)
    import_plugins(ck["config"].get("plugins") or [])  # the run's own ingredients, before its config is read
    cfg = saved_config(ck, run_dir, **{k: v for k, v in (overrides or {}).items() if v is not None and k != "out"})
    check_compatible(ck["config"], cfg, path)
    if cfg.epochs < ck["epoch"]:
        raise ConfigError(f"config field 'epochs' ({cfg.epochs}) is below the {ck['epoch']} epochs "
                          f"already done in {run_dir}")
    return cfg, path, ck
