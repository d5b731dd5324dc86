"""Optional TensorBoard logging of the per-epoch records (config field ``tensorboard``).

The trainer stays free of any logging backend: when ``tensorboard`` is true it calls
:func:`attach`, which adds a callback to ``Trainer.callbacks``. It writes every number of the
epoch record that ``metrics.jsonl`` also holds, so the two never disagree:

* a scalar field (``loss``, ``test_accuracy``, ``seconds``, ...) as the tag of the same name;
* a per-layer list (``per_layer_test_accuracy``, ``per_layer_separation``, ...) as one tag per
  layer, ``per_layer_test_accuracy/layer0``, ``.../layer1``, ... (one chart per quantity);

with the epoch number as the step, into ``RUN_DIR/tb``. TensorBoard is an optional extra, so
the import is checked when the trainer is built, before any training work.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .callbacks import Callback, flat_record
from .errors import ConfigError

LOG_DIR = "tb"  # sub-folder of the run folder


def scalars(record: dict[str, Any]) -> dict[str, float]:
    """The loggable numbers of an epoch record as ``{tag: value}`` (those of ``metrics.csv``):
    ``epoch`` is the step, not a chart."""
    return {k: v for k, v in flat_record(record).items() if k != "epoch"}


class TensorBoardHook(Callback):
    """A trainer callback that writes each epoch record's scalars to ``log_dir``.

    The writer is opened at the first record, so a trainer that is only loaded for evaluation
    (:func:`fflearn.runs.load_run`) leaves no empty event file behind.
    """

    def __init__(self, log_dir: str | Path, writer_cls: Any) -> None:
        self.log_dir = Path(log_dir)
        self._writer_cls = writer_cls
        self.writer: Any = None

    def on_epoch(self, trainer: Any, record: dict[str, Any]) -> None:
        if self.writer is None:
            self.writer = self._writer_cls(log_dir=str(self.log_dir))
        step = int(record.get("epoch", trainer.epoch))
        for tag, value in scalars(record).items():
            self.writer.add_scalar(tag, value, step)
        self.writer.flush()  # a killed run keeps every epoch it finished
        if step >= trainer.cfg.epochs:
            self.close()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def summary_writer_class() -> Any:
    """``torch.utils.tensorboard.SummaryWriter``, or a ConfigError saying how to install it."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # torch raises ImportError when the tensorboard package is absent
        raise ConfigError(
            "config field 'tensorboard' is true but TensorBoard is not installed: "
            "pip install fflearn[tensorboard]  (or set tensorboard: false)"
        ) from None
    return SummaryWriter


def attach(trainer: Any) -> TensorBoardHook:
    """Add a TensorBoard callback to ``trainer.callbacks`` writing into ``trainer.out / "tb"``."""
    hook = TensorBoardHook(Path(trainer.out) / LOG_DIR, summary_writer_class())
    trainer.callbacks.append(hook)
    return hook
