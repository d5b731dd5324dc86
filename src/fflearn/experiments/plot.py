"""``fflearn plot RUN_DIR...``: training curves of one or more runs, from their metrics.jsonl.

Three PNGs, with every run overlaid (one colour per run, darker = deeper layer):

* ``accuracy.png``: test accuracy of every layer over epochs (DF paper Fig. 3, left);
* ``separation.png``: average goodness separation g_pos - g_neg on training data per layer over
  epochs (DF paper Fig. 3, right);
* ``loss.png``: mean local loss over epochs (thick) and each layer's loss (thin).

matplotlib runs with the Agg backend, so no display is needed.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import yaml

from ..errors import FFLearnError

PLOTS = ("accuracy", "separation", "loss")


def load_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    """The per-epoch records of a run folder (one JSON object per line of metrics.jsonl)."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.exists():
        raise FFLearnError(f"{run_dir} is not a run folder: {path} is missing")
    records = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            raise FFLearnError(f"{path} line {n} is not valid JSON") from None
    if not records:
        raise FFLearnError(f"{path} holds no epochs yet: train the run for at least one epoch")
    return records


def run_config(run_dir: str | Path) -> dict[str, Any]:
    """The resolved config of a run (config.yaml), or {} when it is absent or unreadable."""
    path = Path(run_dir) / "config.yaml"
    try:
        d = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return {}
    return d if isinstance(d, dict) else {}


def run_label(run_dir: str | Path) -> str:
    """Legend label of a run: its folder name, with the method when the name does not say it."""
    name = Path(run_dir).resolve().name
    method = run_config(run_dir).get("method")
    return name if not method or str(method) in name else f"{name} ({method})"


def _series(records: list[dict[str, Any]], key: str) -> tuple[list[int], list[list[float | None]]]:
    """Epochs and per-layer values of a list-valued metric, skipping epochs without it."""
    epochs, rows = [], []
    for r in records:
        v = r.get(key)
        if v:
            epochs.append(int(r["epoch"]))
            rows.append(list(v))
    return epochs, rows


def _per_layer(ax: Any, color: Any, epochs: list[int], rows: list[list[float | None]], label: str,
               scale: float = 1.0, lw: float = 1.5, suffix: str = "") -> None:
    n = max((len(r) for r in rows), default=0)
    for i in range(n):
        pts = [(e, v * scale) for e, r in zip(epochs, rows, strict=True) if i < len(r) and (v := r[i]) is not None]
        if not pts:
            continue
        xs, ys = zip(*pts, strict=True)
        shade = 0.35 + 0.65 * (i + 1) / n  # deeper layers darker, so one run reads as one colour
        ax.plot(xs, ys, color=color, alpha=shade, lw=lw, marker="o", ms=3,
                label=f"{label}{suffix}" if i == n - 1 else None)
        ax.annotate(f"L{i}", (xs[-1], ys[-1]), fontsize=7, color=color, xytext=(3, 0),
                    textcoords="offset points", va="center")


def _symlog_if_spread(ax: Any, rows: list[list[float | None]]) -> None:
    """Goodness scales differ between methods (anchor distances vs logits): when the largest
    |separation| of an epoch is over 20x the smallest, a symlog axis keeps every run visible."""
    peaks = [max(abs(v) for v in r if v is not None) for r in rows if any(v is not None for v in r)]
    peaks = [p for p in peaks if p > 0]
    if peaks and max(peaks) > 20 * min(peaks):
        ax.set_yscale("symlog", linthresh=min(peaks))


def plot_runs(run_dirs: list[str | Path], out_dir: str | Path | None = None,
              prefix: str = "") -> list[Path]:
    """Write the three PNGs for ``run_dirs`` into ``out_dir`` (default: the first run folder)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    if not run_dirs:
        raise FFLearnError("give at least one run folder")
    runs = [(run_label(d), load_metrics(d)) for d in run_dirs]
    out = Path(out_dir) if out_dir is not None else Path(run_dirs[0])
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise FFLearnError(f"cannot create output folder {out}: {e.strerror or e}") from None
    colors = [plt.get_cmap("tab10")(k) for k in range(10)]
    paths = []
    for kind in PLOTS:
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for k, (label, recs) in enumerate(runs):
            c = colors[k % len(colors)]
            if kind == "accuracy":
                _per_layer(ax, c, *_series(recs, "per_layer_test_accuracy"), label, scale=100)
            elif kind == "separation":
                _per_layer(ax, c, *_series(recs, "per_layer_separation"), label)
            else:
                _per_layer(ax, c, *_series(recs, "per_layer_loss"), label, lw=0.8, suffix=" per layer")
                pts = [(int(r["epoch"]), r["loss"]) for r in recs if r.get("loss") is not None]
                if pts:
                    xs, ys = zip(*pts, strict=True)
                    ax.plot(xs, ys, color=c, lw=2.5, marker="s", ms=4, label=f"{label} mean")
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if kind == "separation":
            _symlog_if_spread(ax, [r for _, recs in runs for r in _series(recs, "per_layer_separation")[1]])
        ax.set_ylabel({"accuracy": "test accuracy (%) per layer",
                       "separation": "goodness separation g_pos - g_neg (train)",
                       "loss": "local loss"}[kind])
        ax.set_title({"accuracy": "Test accuracy per layer",
                      "separation": "Average goodness separation per layer",
                      "loss": "Training loss"}[kind])
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
        fig.tight_layout()
        path = out / f"{prefix}{kind}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)
    return paths


def cmd_plot(args: argparse.Namespace) -> int:
    for p in plot_runs(args.run_dirs, args.out):
        print(p)
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("plot", help="plot per-layer accuracy, goodness separation and loss of runs")
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="run folders (several are overlaid)")
    p.add_argument("--out", metavar="DIR", help="output folder (default: the first run folder)")
    p.set_defaults(func=cmd_plot)
