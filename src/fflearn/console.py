"""What a run prints: a progress bar on a terminal, plain lines elsewhere, epoch lines, tables.

On a terminal the progress is a tqdm bar with the current loss. Piped to a file (a cluster job's
log) it is a plain line every ``log_every`` seconds and no ``\\r`` frames. Epoch lines and the
final summary are printed either way; ``progress: false`` drops only the bar or progress lines.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from typing import Any


def pct(v: float | None, digits: int = 2, unit: str = "%") -> str:
    """A fraction as a percentage ('-' for None); ``unit=""`` where a column header says %."""
    return "-" if v is None else f"{100 * v:.{digits}f}{unit}"


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], markdown: bool = False) -> str:
    """A plain-text (aligned: first column left, the rest right) or markdown table; None as '-'."""
    cells = [[("-" if v is None else str(v)) for v in r] for r in rows]
    if markdown:
        lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
        return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in cells])
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]

    def line(cs: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cs, widths, strict=True)))

    return "\n".join([line(headers), line(["-" * w for w in widths])] + [line(r) for r in cells])


class Progress:
    """Progress of one epoch: a tqdm bar on a terminal, else a plain line every ``every`` seconds.

    ``update`` takes the step's loss as a tensor and reads it (a device sync) only when it is shown:
    every 20 steps on the bar, once per line elsewhere."""

    def __init__(self, total: int, epoch: int, epochs: int, start: int = 0, every: float = 30.0,
                 stream: Any = None, tty: bool | None = None) -> None:
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty
        self.total, self.epoch, self.epochs, self.done = total, epoch, epochs, start
        self.every = every
        self.t0 = self.last = time.perf_counter()
        self.bar: Any = None
        if self.tty:
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=start, desc=f"epoch {epoch + 1}/{epochs}", leave=False,
                            file=self.stream, dynamic_ncols=True)

    def update(self, loss: Any) -> None:
        self.done += 1
        if self.bar is not None:
            self.bar.update(1)
            if self.done % 20 == 1:
                self.bar.set_postfix(loss=f"{float(loss):.4f}")
            return
        now = time.perf_counter()
        if self.every and now - self.last >= self.every:
            self.last = now
            rate = self.done / max(now - self.t0, 1e-9)
            print(f"epoch {self.epoch + 1}/{self.epochs}  step {self.done}/{self.total}  loss {float(loss):.4f}  "
                  f"{rate:.1f} steps/s", file=self.stream, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def epoch_line(epochs: int, rec: dict[str, Any]) -> str:
    loss = "-" if rec.get("loss") is None else f"{rec['loss']:.4f}"
    msg = f"epoch {rec['epoch']:3d}/{epochs}  loss {loss}  {rec['seconds']:.1f}s"
    for split in ("val", "test"):
        if f"{split}_accuracy" in rec:
            layers = " ".join(f"{100 * a:5.2f}" for a in rec[f"per_layer_{split}_accuracy"])
            msg += f"  {split} {100 * rec[f'{split}_accuracy']:5.2f}%  per layer [{layers}]"
    return msg


def summary_text(s: dict[str, Any]) -> str:
    per = s.get("per_layer_test_accuracy") or []
    lines = [f"\n{s['method']} on {s.get('dataset_label', s['dataset'])}, {s['epochs']} epochs, "
             f"{s['train_seconds']:.1f} s of training", "layer  test accuracy"]
    lines += [f"{i:5d}  {'   -' if a is None else f'{100 * a:6.2f}%'}" for i, a in enumerate(per)]
    if s.get("val_accuracy") is not None:
        lines.append(f"validation accuracy: {pct(s['val_accuracy'])}")
    lines += [f"test accuracy: {pct(s.get('test_accuracy'))}", f"run folder: {s['run_dir']}"]
    return "\n".join(lines)
