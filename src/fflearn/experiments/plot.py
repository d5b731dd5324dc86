"""``fflearn plot RUN_DIR...``: training curves of one or more runs, from their metrics.jsonl.

Figures, each as PNG and PDF, into ``--out`` (default: beside the first run, in its folder):

* ``curves``: the DF paper's Fig. 3 layout, one row per run: test accuracy (validation accuracy
  for a run with a validation split) of every layer over epochs, and the average goodness
  separation g_pos - g_neg on training data of every layer over epochs. Layers are told apart by
  colour and marker, with a legend; each run has its own panels, since goodness scales differ
  between methods (anchor distances, logits);
* ``layers``: the last evaluation's accuracy per layer (layer on the x axis), runs side by side;
* ``loss``: each run's mean local loss over epochs.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import yaml

from ..errors import FFLearnError

PLOTS = ("curves", "layers", "loss")


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


def accuracy_key(records: list[dict[str, Any]]) -> tuple[str, str]:
    """The per-layer accuracy a run reports every epoch: validation where it has a split, else test."""
    if any("per_layer_val_accuracy" in r for r in records):
        return "per_layer_val_accuracy", "validation"
    return "per_layer_test_accuracy", "test"


def _last_layers(records: list[dict[str, Any]]) -> list[float | None]:
    """The per-layer accuracy of a run's last evaluation: its test set's when scored, else the
    per-epoch accuracy's; [] when the run has not been evaluated yet."""
    final = next((r for r in reversed(records) if r.get("per_layer_test_accuracy")), None)
    if final:
        return list(final["per_layer_test_accuracy"])
    rows = _series(records, accuracy_key(records)[0])[1]
    return rows[-1] if rows else []


def _layers(ax: Any, epochs: list[int], rows: list[list[float | None]], scale: float = 1.0) -> None:
    from .figures import style

    n = max((len(r) for r in rows), default=0)
    for i in range(n):
        pts = [(e, v * scale) for e, r in zip(epochs, rows, strict=True) if i < len(r) and (v := r[i]) is not None]
        if pts:
            xs, ys = zip(*pts, strict=True)
            ax.plot(xs, ys, lw=1.5, ms=4, label=f"layer {i}", **style(i))


def plot_runs(run_dirs: list[str | Path], out_dir: str | Path | None = None, prefix: str = "") -> list[Path]:
    """Write the figures for ``run_dirs`` into ``out_dir`` (default: the first run folder)."""
    from .figures import epoch_axis, pyplot, save, style
    from .figures import out_dir as make_dir

    if not run_dirs:
        raise FFLearnError("give at least one run folder")
    plt = pyplot()
    runs = [(run_label(d), load_metrics(d)) for d in run_dirs]
    out = make_dir(out_dir if out_dir is not None else run_dirs[0])
    paths: list[Path] = []

    fig, axes = plt.subplots(len(runs), 2, figsize=(10, 3.6 * len(runs)), squeeze=False)
    for (label, recs), (ax_acc, ax_sep) in zip(runs, axes, strict=True):
        key, split = accuracy_key(recs)
        ep, rows = _series(recs, key)
        _layers(ax_acc, ep, rows, scale=100)
        ax_acc.set_ylabel(f"{split} accuracy (%)")
        ax_acc.set_title(f"{label}: {split} accuracy per layer", fontsize=10)
        ep2, rows2 = _series(recs, "per_layer_separation")
        _layers(ax_sep, ep2, rows2)
        ax_sep.set_ylabel("g_pos - g_neg (training data)")
        ax_sep.set_title(f"{label}: average goodness separation", fontsize=10)
        for ax, e in ((ax_acc, ep), (ax_sep, ep2)):
            epoch_axis(ax, e)
            ax.grid(alpha=0.3)
        if ax_acc.get_legend_handles_labels()[0]:
            ax_acc.legend(fontsize=7, ncol=2 if len(rows and rows[0]) > 6 else 1)
    paths += save(fig, out, f"{prefix}curves")

    # a run still in its first evaluation period has no per-layer accuracy yet: it has no bars
    finals = [(label, _last_layers(recs)) for label, recs in runs]
    n_layers = max((len(v) for _, v in finals), default=0)
    fig, ax = plt.subplots(figsize=(max(5.0, 1.0 + 0.9 * n_layers), 3.8))
    width = 0.8 / len(runs)
    for k, (label, vals) in enumerate(finals):
        xs = [i + (k - (len(runs) - 1) / 2) * width for i in range(len(vals))]
        ax.bar(xs, [100 * (v or 0) for v in vals], width, color=style(k)["color"],
               label=label if vals else f"{label} (not evaluated yet)")
    ax.set_xlabel("layer")
    ax.set_ylabel("test accuracy (%)")
    ax.set_xticks(range(n_layers))
    ax.set_title("Accuracy of each layer's own prediction (last evaluation)", fontsize=10)
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    paths += save(fig, out, f"{prefix}layers")

    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    all_epochs: list[int] = []
    for k, (label, recs) in enumerate(runs):
        pts = [(int(r["epoch"]), r["loss"]) for r in recs if r.get("loss") is not None]
        if pts:
            ex, ey = zip(*pts, strict=True)
            all_epochs += list(ex)
            ax.plot(ex, ey, lw=2, ms=4, label=label, **style(k))
    epoch_axis(ax, all_epochs)
    ax.set_ylabel("mean local loss (training)")
    ax.set_title("Training loss", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    paths += save(fig, out, f"{prefix}loss")
    return paths


def cmd_plot(args: argparse.Namespace) -> int:
    for p in plot_runs(args.run_dirs, args.out):
        print(p)
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("plot", help="plot per-layer accuracy, goodness separation and loss of runs (DF Fig. 3)")
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="run folders (one row of panels each)")
    p.add_argument("--out", metavar="DIR", help="output folder (default: the first run folder)")
    p.set_defaults(func=cmd_plot)
