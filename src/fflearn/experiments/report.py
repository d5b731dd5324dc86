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
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..console import format_table, pct
from ..errors import FFLearnError
from ..runfolder import write_json
from .figures import out_dir

# --- the seed papers' numbers (test accuracy, %) -------------------------------------------
DF_PAPER = "DF paper (Wu et al. 2024, arXiv 2408.14925)"
TRIFECTA_SLIDES = "Trifecta slides (Dooms et al. 2023)"

# method -> list of {source, setting, family, accuracy: {dataset: %}}; datasets use fflearn's names;
# family is the kind of network the figure is for ("conv": the Trifecta's nets or DF's, "mlp"), so a
# figure stands only beside runs of its own kind. The slides' "FF(100)" row is the Trifecta (their
# FF with all three fixes) after 100 epochs.
PAPER_RESULTS: dict[str, list[dict[str, Any]]] = {
    "df-o": [{"source": DF_PAPER, "setting": "DF (best reported)", "family": "conv",
              "accuracy": {"mnist": 99.7, "fashion-mnist": 93.89, "cifar10": 88.2, "cifar100": 59.0,
                           "svhn": 95.9, "imagenette": 82.5}}],
    "ff": [{"source": TRIFECTA_SLIDES, "family": "conv", "setting": "vanilla FF, recreated, 100 epochs",
            "accuracy": {"cifar10": 34.3}}],
    "symba": [{"source": TRIFECTA_SLIDES, "family": "conv", "setting": "SymBa, 100 epochs", "accuracy": {"cifar10": 55.7}}],
    "symba+apl": [{"source": TRIFECTA_SLIDES, "family": "conv", "setting": "SymBa+APL, 100 epochs", "accuracy": {"cifar10": 61.4}}],
    "symba+bn": [{"source": TRIFECTA_SLIDES, "family": "conv", "setting": "SymBa+BN, 100 epochs", "accuracy": {"cifar10": 64.7}}],
    "trifecta": [{"source": TRIFECTA_SLIDES, "family": "conv", "setting": "Trifecta = FF(100 epochs)",
                  "accuracy": {"mnist": 98.3, "fashion-mnist": 85.0, "svhn": 91.8, "cifar10": 74.0}}],
    "bp": [{"source": TRIFECTA_SLIDES, "family": "conv", "setting": "BP, same conv net, 100 epochs",
            "accuracy": {"mnist": 99.1, "fashion-mnist": 93.6, "svhn": 94.1, "cifar10": 88.9}}],
}
PAPER_RESULTS["ff"].append({"source": "Hinton 2022", "family": "mlp", "setting": "FF, 4x2000 MLP, 60 epochs",
                            "accuracy": {"mnist": 98.64}})
PAPER_RESULTS["df"] = PAPER_RESULTS["df-o"]  # fflearn's df is DF-O


def family(model: str) -> str:
    return "mlp" if model == "mlp" else "conv"


def paper_numbers(method: str, dataset: str, model: str | None = None) -> list[tuple[str, float]]:
    """The papers' (setting, accuracy %) for a method on a dataset, and on networks of ``model``'s
    kind when given (an MLP run is not set beside a conv net's figure); [] when none is reported."""
    from ..data import canonical_name

    ds = canonical_name(dataset)
    return [(f"{e['setting']} [{e['source']}]", e["accuracy"][ds])
            for e in PAPER_RESULTS.get(method, []) if ds in e["accuracy"]
            and (model is None or e.get("family") == family(model))]


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
        "val_accuracy": s.get("val_accuracy"),
        "per_layer_test_accuracy": s.get("per_layer_test_accuracy", last.get("per_layer_test_accuracy")) or [],
        "train_seconds": s.get("train_seconds", sum(m.get("seconds", 0.0) for m in metrics)),
        "limit_train": cfg.get("limit_train"),
        "seed": cfg.get("seed", s.get("seed")),
        "config": {**{k: v for k, v in cfg.items() if k != "params"}, **(cfg.get("params") or {})},
        # what makes two runs comparable: the same data, network and budget
        "group": (s.get("dataset", cfg.get("dataset", "?")), s.get("model", cfg.get("model", "?")),
                  cfg.get("width"), tuple(cfg.get("hidden") or ()) if cfg.get("model") == "mlp" else None,
                  cfg.get("epochs"), cfg.get("time_budget"), cfg.get("limit_train"), cfg.get("val_split")),
    }


def group_title(g: tuple[Any, ...]) -> str:
    dataset, model, width, hidden, epochs, budget, limit_train, val = g
    net = f"{model}" + (f" {'x'.join(map(str, hidden))}" if hidden else "") + \
        (f" width {width:g}" if model != "mlp" and width not in (None, 1.0) else "")
    limits = [f"{epochs} epochs"] + ([f"{budget:g} s budget"] if budget else []) + \
        ([f"first {limit_train} training images"] if limit_train else []) + ([f"{val} held out"] if val else [])
    return f"{dataset}, {net}, {', '.join(limits)}"


def mean_sd(values: list[float]) -> tuple[float, float | None]:
    import statistics

    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else None


# config fields that say where or how a run ran, not what it learned: runs differing only in these
# (and the seed) are seeds of one setting
NOT_A_SETTING = {"seed", "out", "data_dir", "device", "threads", "progress", "log_every", "tensorboard",
                 "checkpoint_every", "eval_every", "eval_test", "callbacks", "plugins"}


def variants(runs: list[dict[str, Any]]) -> list[str]:
    """Per run, the settings in which it differs from other runs of its group and method ("" when
    none): e.g. ``label_mode icp, icp_scale 0.3``. Without it, runs of one method with different
    settings would be averaged into one row as if they were seeds."""
    by_key: dict[tuple[Any, ...], list[int]] = {}
    for i, r in enumerate(runs):
        by_key.setdefault((r["group"], r["method"]), []).append(i)
    out = [""] * len(runs)
    for idx in by_key.values():
        cfgs = [runs[i].get("config") or {} for i in idx]
        keys = sorted({k for c in cfgs for k in c} - NOT_A_SETTING)
        differ = [k for k in keys if len({json.dumps(c.get(k), sort_keys=True, default=str) for c in cfgs}) > 1]
        for i, c in zip(idx, cfgs, strict=True):
            out[i] = ", ".join(f"{k} {c.get(k)}" for k in differ)
    return out


def aggregate(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (group, method, variant): the mean and sd of the test accuracy over its seeds."""
    rows: dict[tuple[Any, ...], dict[str, Any]] = {}
    for r, variant in zip(runs, variants(runs), strict=True):
        row = rows.setdefault((r["group"], r["method"], variant),
                              {"group": r["group"], "method": r["method"], "variant": variant, "runs": [],
                               "dataset": r["dataset"], "model": r["model"], "dataset_label": r["dataset_label"]})
        row["runs"].append(r)
    for row in rows.values():
        accs = [r["test_accuracy"] for r in row["runs"] if r["test_accuracy"] is not None]
        vals = [r["val_accuracy"] for r in row["runs"] if r.get("val_accuracy") is not None]
        row["seeds"] = sorted({r["seed"] for r in row["runs"]}, key=str)
        row["mean"], row["sd"] = mean_sd(accs) if accs else (None, None)
        row["val_mean"], row["val_sd"] = mean_sd(vals) if vals else (None, None)
        row["train_seconds_mean"] = mean_sd([r["train_seconds"] for r in row["runs"]])[0]
    return list(rows.values())


def json_rows(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What ``fflearn report --json`` writes: a row per (group, method, variant) with its seed means."""
    return [{"group": group_title(row["group"]), "method": row["method"], "variant": row["variant"],
             "seeds": len(row["runs"]),
             "test_accuracy_mean": row["mean"], "test_accuracy_sd": row["sd"],
             "val_accuracy_mean": row["val_mean"], "val_accuracy_sd": row["val_sd"],
             "train_seconds_mean": row["train_seconds_mean"], "runs": [r["run"] for r in row["runs"]]}
            for row in aggregate(runs)]


def build_report(run_dirs: Sequence[str | Path], out: str | Path,
                 runs: list[dict[str, Any]] | None = None) -> Path:
    """Write the markdown report to ``out`` and its plots to ``<out stem>_plots/`` beside it
    (``runs``: the folders' :func:`run_summary`, where the caller has read them already)."""
    from .plot import plot_runs

    if not run_dirs:
        raise FFLearnError("give at least one run folder")
    out = Path(out)
    out_dir(out.parent if str(out.parent) else ".")
    runs = runs if runs is not None else [run_summary(d) for d in run_dirs]
    plot_dir = out.parent / f"{out.stem}_plots"
    plots = plot_runs(list(run_dirs), plot_dir)

    lines = ["# fflearn report", "", f"Generated {time.strftime('%Y-%m-%d %H:%M')} from {len(runs)} run(s).", ""]
    groups = list(dict.fromkeys(r["group"] for r in runs))
    if len(groups) > 1:
        warn = (f"the runs differ in data, network or budget ({len(groups)} groups: "
                + "; ".join(group_title(g) for g in groups) + "): they are compared within a group only")
        lines += [f"> **Warning:** {warn}.", ""]
        print(f"fflearn report: warning: {warn}", file=sys.stderr)
    lines += ["## Runs", ""]
    for g in groups:
        lines += [f"### {group_title(g)}", ""]
        rows = []
        for r in (r for r in runs if r["group"] == g):
            per = " / ".join(pct(a, 1, "") for a in r["per_layer_test_accuracy"])
            rows.append([r["run"], r["method"], r["dataset_label"], r["model"], r["seed"], r["epochs"],
                         pct(r["test_accuracy"], unit=""), per, f"{r['train_seconds']:.1f}"])
        lines.append(format_table(["run", "method", "dataset", "model", "seed", "epochs", "test acc %",
                                   "per-layer test acc %", "train s"], rows, markdown=True))
        lines.append("")
    lines += ["## Ours beside the papers", "",
              "Mean and sd over the seeds that ran, per method and group; a paper figure stands only beside "
              "runs of the same dataset and kind of network (conv or MLP). Paper numbers are final test "
              "accuracies of their full training budgets (often 100+ epochs on the full training set): a "
              "short run is not expected to match them.", ""]
    rows = []
    for row in aggregate(runs):
        ours = "-" if row["mean"] is None else f"{100 * row['mean']:.2f}" + (
            f" ± {100 * row['sd']:.2f}" if row["sd"] is not None else "")
        papers: list[tuple[str, float | None]] = [*paper_numbers(str(row["method"]), str(row["dataset"]),
                                                                 str(row["model"]))]
        for setting, acc in papers or [("(no paper number for this dataset and network)", None)]:
            rows.append([group_title(row["group"]), row["method"], row["variant"] or "-", len(row["runs"]), ours,
                         setting, None if acc is None else f"{acc:.2f}"])
    lines.append(format_table(["group", "method", "settings that differ", "seeds", "ours % (mean ± sd)",
                               "paper setting [source]", "paper %"], rows, markdown=True))
    lines += ["", "## Curves", ""]
    titles = {"curves": "Accuracy and goodness separation per layer (DF paper Fig. 3 layout)",
              "layers": "Accuracy of each layer", "loss": "Training loss"}
    for p in (p for p in plots if p.suffix == ".png"):
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
    runs = [run_summary(d) for d in args.run_dirs]
    out = build_report(args.run_dirs, args.out, runs)
    rows = json_rows(runs)
    print(format_table(["group", "method", "settings that differ", "seeds", "test % (mean ± sd)", "val % (mean ± sd)"],
                       [[r["group"], r["method"], r["variant"] or "-", r["seeds"],
                         pct_mean_sd(r["test_accuracy_mean"], r["test_accuracy_sd"]),
                         pct_mean_sd(r["val_accuracy_mean"], r["val_accuracy_sd"])] for r in rows]))
    print(out)
    if args.json:
        write_json({"rows": rows, "run_dirs": [str(d) for d in args.run_dirs]}, args.json)
    return 0


def pct_mean_sd(mean: float | None, sd: float | None) -> str:
    """An accuracy's "mean ± sd" in percent, 2 decimals ("-" without a mean; no sd for one run)."""
    return "-" if mean is None else f"{100 * mean:.2f}" + ("" if sd is None else f" ± {100 * sd:.2f}")


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("report", help="one markdown report of runs, with plots and the papers' numbers")
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    p.add_argument("--out", default="report.md", metavar="FILE.md", help="report file (default: report.md)")
    p.add_argument("--json", metavar="FILE", help="also write the seed means per group and method as JSON")
    p.set_defaults(func=cmd_report)
