"""``fflearn report RUN_DIR... --out report.md``: one markdown report of several runs.

It holds a summary table of the runs, the training curves of :mod:`fflearn.experiments.plot`
(generated beside the report), and the seed papers' numbers next to ours. The papers' numbers
live in :data:`PAPER_RESULTS` so that other code (benches, docs) can reuse them.

This module also has the small table and JSON helpers the experiment commands share.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..console import format_table, pct
from ..errors import FFLearnError

# --- the seed papers' numbers (test accuracy, %) -------------------------------------------
DF_PAPER = "DF paper (Wu et al. 2024, arXiv 2408.14925)"
TRIFECTA_SLIDES = "Trifecta slides (Dooms et al. 2023)"

# method -> list of {source, setting, accuracy: {dataset: %}}; datasets use fflearn's names.
# The slides' "FF(100)" row is the Trifecta (their FF with all three fixes) after 100 epochs.
PAPER_RESULTS: dict[str, list[dict[str, Any]]] = {
    "df-o": [{"source": DF_PAPER, "setting": "DF (best reported)",
              "accuracy": {"mnist": 99.7, "fashion-mnist": 93.89, "cifar10": 88.2, "cifar100": 59.0,
                           "svhn": 95.9, "imagenette": 82.5}}],
    "ff": [{"source": TRIFECTA_SLIDES, "setting": "vanilla FF, recreated, 100 epochs",
            "accuracy": {"cifar10": 34.3}}],
    "symba": [{"source": TRIFECTA_SLIDES, "setting": "SymBa, 100 epochs", "accuracy": {"cifar10": 55.7}}],
    "symba+apl": [{"source": TRIFECTA_SLIDES, "setting": "SymBa+APL, 100 epochs", "accuracy": {"cifar10": 61.4}}],
    "symba+bn": [{"source": TRIFECTA_SLIDES, "setting": "SymBa+BN, 100 epochs", "accuracy": {"cifar10": 64.7}}],
    "trifecta": [{"source": TRIFECTA_SLIDES, "setting": "Trifecta = FF(100 epochs)",
                  "accuracy": {"mnist": 98.3, "fashion-mnist": 85.0, "svhn": 91.8, "cifar10": 74.0}}],
    "bp": [{"source": TRIFECTA_SLIDES, "setting": "BP, same conv net, 100 epochs",
            "accuracy": {"mnist": 99.1, "fashion-mnist": 93.6, "svhn": 94.1, "cifar10": 88.9}}],
}
PAPER_RESULTS["df"] = PAPER_RESULTS["df-o"]  # fflearn's df is DF-O


def paper_numbers(method: str, dataset: str) -> list[tuple[str, float]]:
    """The papers' (setting, accuracy %) for a method on a dataset; [] when none is reported."""
    from ..data import canonical_name

    ds = canonical_name(dataset)
    return [(f"{e['setting']} [{e['source']}]", e["accuracy"][ds])
            for e in PAPER_RESULTS.get(method, []) if ds in e["accuracy"]]


# --- helpers shared by the experiment commands ---------------------------------------------
def out_dir(path: str | Path) -> Path:
    """Create an output folder (one-line error when impossible)."""
    p = Path(path)
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise FFLearnError(f"cannot create output folder {p}: {e.strerror or e}") from None
    return p


# --- the report ----------------------------------------------------------------------------
def run_summary(run_dir: str | Path) -> dict[str, Any]:
    """Summary of a run: summary.json where present, else rebuilt from metrics.jsonl and config.yaml."""
    from .plot import load_metrics, run_config

    d = Path(run_dir)
    metrics = load_metrics(d)
    cfg = run_config(d)
    s: dict[str, Any] = {}
    if (d / "summary.json").exists():
        try:
            s = json.loads((d / "summary.json").read_text())
        except json.JSONDecodeError:
            s = {}
    last: dict[str, Any] = next((m for m in reversed(metrics) if "test_accuracy" in m), {})
    return {
        "run": d.resolve().name,
        "method": s.get("method", cfg.get("method", "?")),
        "dataset": s.get("dataset", cfg.get("dataset", "?")),
        "dataset_label": s.get("dataset_label", cfg.get("dataset", "?")),
        "model": s.get("model", cfg.get("model", "?")),
        "epochs": s.get("epochs", metrics[-1].get("epoch")),
        "test_accuracy": s.get("test_accuracy", last.get("test_accuracy")),
        "per_layer_test_accuracy": s.get("per_layer_test_accuracy", last.get("per_layer_test_accuracy")) or [],
        "train_seconds": s.get("train_seconds", sum(m.get("seconds", 0.0) for m in metrics)),
        "limit_train": cfg.get("limit_train"),
    }


def build_report(run_dirs: Sequence[str | Path], out: str | Path) -> Path:
    """Write the markdown report to ``out`` and its plots to ``<out stem>_plots/`` beside it."""
    from .plot import plot_runs

    if not run_dirs:
        raise FFLearnError("give at least one run folder")
    out = Path(out)
    out_dir(out.parent if str(out.parent) else ".")
    runs = [run_summary(d) for d in run_dirs]
    plot_dir = out.parent / f"{out.stem}_plots"
    plots = plot_runs(list(run_dirs), plot_dir)

    lines = ["# fflearn report", "", f"Generated {time.strftime('%Y-%m-%d %H:%M')} from {len(runs)} run(s).", ""]
    lines += ["## Runs", ""]
    rows = []
    for r in runs:
        per = " / ".join(pct(a, 1, "") for a in r["per_layer_test_accuracy"])
        train_n = f" (first {r['limit_train']} train images)" if r.get("limit_train") else ""
        rows.append([r["run"], r["method"], f"{r['dataset_label']}{train_n}", r["model"], r["epochs"],
                     pct(r["test_accuracy"], unit=""), per, f"{r['train_seconds']:.1f}"])
    lines.append(format_table(["run", "method", "dataset", "model", "epochs", "test acc %",
                               "per-layer test acc %", "train s"], rows, markdown=True))
    lines += ["", "## Ours beside the papers", "",
              "Paper numbers are final test accuracies of their full training budgets (often 100+ epochs "
              "on the full training set); ours are from the runs above, so a short run is not expected "
              "to match them.", ""]
    rows = []
    for r in runs:
        papers: list[tuple[str, float | None]] = [*paper_numbers(str(r["method"]), str(r["dataset"]))]
        for setting, acc in papers or [("(no paper number)", None)]:
            rows.append([r["run"], r["method"], r["dataset_label"], pct(r["test_accuracy"], unit=""), setting,
                         None if acc is None else f"{acc:.2f}"])
    lines.append(format_table(["run", "method", "dataset", "ours %", "paper setting [source]", "paper %"],
                              rows, markdown=True))
    lines += ["", "## Curves", ""]
    titles = {"accuracy": "Test accuracy per layer", "separation": "Goodness separation per layer "
              "(g_pos - g_neg on training data, DF paper Fig. 3)", "loss": "Training loss"}
    for p in plots:
        rel = os.path.relpath(p, out.parent)
        lines += [f"### {titles.get(p.stem, p.stem)}", "", f"![{p.stem}]({rel})", ""]
    lines += ["## All paper numbers", ""]
    datasets = ["mnist", "fashion-mnist", "cifar10", "cifar100", "svhn", "imagenette"]
    rows = []
    for method, entries in PAPER_RESULTS.items():
        if method == "df":
            continue
        for e in entries:
            rows.append([method, e["setting"], e["source"]] + [e["accuracy"].get(ds) for ds in datasets])
    lines.append(format_table(["method", "setting", "source"] + datasets, rows, markdown=True))
    try:
        out.write_text("\n".join(lines) + "\n")
    except OSError as e:
        raise FFLearnError(f"cannot write {out}: {e.strerror or e}") from None
    return out


def cmd_report(args: argparse.Namespace) -> int:
    out = build_report(args.run_dirs, args.out)
    print(out)
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("report", help="one markdown report of runs, with plots and the papers' numbers")
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    p.add_argument("--out", default="report.md", metavar="FILE.md", help="report file (default: report.md)")
    p.set_defaults(func=cmd_report)
