"""``fflearn ablate trifecta``: the five rows of the Trifecta slides' ablation table (``fflearn
ablate df``, DF's ingredients, is :mod:`fflearn.ablate_df`).

Trains vanilla FF, SymBa, SymBa+APL, SymBa+BN and the Trifecta on the same net, data, seed and
budget, and writes ``ablation.md``, ``ablation.csv``, ``ablation.json`` and ``ablation.png`` with
the slides' CIFAR-10 numbers (100 epochs) beside ours.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path
from typing import Any

from .cliargs import add_bool, add_list, add_overrides
from .errors import ConfigError

# The Trifecta slides (Dooms 2023), CIFAR-10, 100 epochs, small net; vanilla as recreated there
SLIDES_CIFAR10 = {"ff": 34.3, "symba": 55.7, "symba+apl": 61.4, "symba+bn": 64.7, "trifecta": 74.0}
ROWS = ["ff", "symba", "symba+apl", "symba+bn", "trifecta"]


def run_ablation(dataset: str, epochs: int, model: str = "small", out: str | Path = "runs/ablation",
                 rows: list[str] | None = None, **overrides: Any) -> list[dict[str, Any]]:
    """Train each row with identical settings; returns one result dict per row."""
    from .methods import make_config
    from .trainer import train

    out = Path(out)
    results = []
    for method in rows or ROWS:
        cfg = make_config(method=method, dataset=dataset, model=model, epochs=epochs,
                          out=str(out / method), **overrides)
        s = train(cfg, overwrite=True)
        results.append({
            "method": method, "test_accuracy": s["test_accuracy"],
            "per_layer_test_accuracy": s["per_layer_test_accuracy"], "train_seconds": s["train_seconds"],
            "dataset_label": s["dataset_label"],
            "slides_cifar10_100ep": SLIDES_CIFAR10.get(method),
        })
    return results


# the slides' ordering: each pair (better, worse)
SLIDES_ORDER = [("trifecta", "symba+bn"), ("trifecta", "symba+apl"), ("symba+bn", "symba"),
                ("symba+apl", "symba"), ("symba", "ff")]


def ordering_violations(results: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """Pairs of the slides' ordering that the results reverse (rows not run are skipped)."""
    acc = {r["method"]: r["test_accuracy"] for r in results}
    return [(a, b) for a, b in SLIDES_ORDER if a in acc and b in acc and not acc[a] > acc[b]]


def write_outputs(results: list[dict[str, Any]], out: Path, dataset: str, epochs: int, model: str,
                  width: float = 1.0) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    label = results[0]["dataset_label"] if results else dataset
    net = f"`{model}` net" + ("" if width == 1.0 else f" at width {width:g}")
    ep = f"{epochs} epoch" + ("" if epochs == 1 else "s")
    lines = [f"# Trifecta ablation: {label}, {net}, {ep}, same seed and budget", "",
             "| method | test accuracy (%) | best layer (%) | train s | slides, CIFAR-10 100 ep (%) |",
             "|---|---|---|---|---|"]
    for r in results:
        best = max(a for a in r["per_layer_test_accuracy"] if a is not None)
        slides = "-" if r["slides_cifar10_100ep"] is None else f"{r['slides_cifar10_100ep']:.1f}"
        lines.append(f"| {r['method']} | {100 * r['test_accuracy']:.2f} | {100 * best:.2f} | "
                     f"{r['train_seconds']:.0f} | {slides} |")
    bad = ordering_violations(results)
    lines += ["", "The slides' ordering (trifecta > symba+bn, symba+apl > symba > ff): " +
              ("holds." if not bad else "reversed for " + ", ".join(f"{a} vs {b}" for a, b in bad) + ".")]
    (out / "ablation.md").write_text("\n".join(lines) + "\n")
    with open(out / "ablation.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["method", "test_accuracy", "train_seconds", "slides_cifar10_100ep"])
        for r in results:
            w.writerow([r["method"], r["test_accuracy"], r["train_seconds"], r["slides_cifar10_100ep"]])
    (out / "ablation.json").write_text(json.dumps({"dataset": dataset, "epochs": epochs, "model": model,
                                                   "width": width, "results": results,
                                                   "ordering_violations": bad}, indent=2))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    xs = range(len(results))
    ax.bar([x - 0.2 for x in xs], [100 * r["test_accuracy"] for r in results], 0.4, label=f"fflearn ({label}, {epochs} ep)")
    ax.bar([x + 0.2 for x in xs], [r["slides_cifar10_100ep"] or 0 for r in results], 0.4,
           label="slides (CIFAR-10, 100 ep)")
    ax.set_xticks(list(xs), [r["method"] for r in results])
    ax.set_ylabel("test accuracy (%)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "ablation.png", dpi=120)
    plt.close(fig)
    return [out / n for n in ("ablation.md", "ablation.csv", "ablation.json", "ablation.png")]


def cmd_ablate(args: argparse.Namespace) -> int:
    overrides: dict[str, Any] = {"seed": args.seed, "width": args.width, "progress": args.progress}
    for k in ("limit_train", "limit_test", "batch_size", "lr", "device", "data_dir", "threads"):
        if getattr(args, k) is not None:
            overrides[k] = getattr(args, k)
    if args.bf16:
        overrides["bf16"] = True
    rows = args.rows.split(",") if args.rows else None
    results = run_ablation(args.dataset, args.epochs, args.model, args.out, rows, **overrides)
    paths = write_outputs(results, Path(args.out), args.dataset, args.epochs, args.model, args.width)
    print(Path(paths[0]).read_text())
    if args.json:
        Path(args.json).write_text(json.dumps({"results": results,
                                               "ordering_violations": ordering_violations(results)}, indent=2))
    print("wrote " + ", ".join(str(p) for p in paths))
    return 0


def df_base(args: argparse.Namespace) -> Any:
    """The base config of ``ablate df``: the config file (or the df-o recipe), then the flags
    given, then ``--set FIELD=VALUE``; a flag not given leaves the config's value (bf16 too), and
    with neither the validation split is 5000 images."""
    from .cliargs import list_value
    from .config import parse_overrides
    from .methods import make_config

    fields = {k: getattr(args, k) for k in ("dataset", "model", "width", "epochs", "time_budget", "val_split", "lr",
                                            "batch_size", "data_dir", "limit_train", "limit_test", "device",
                                            "threads", "eval_every", "bf16", "channels_last")}
    if args.hidden:
        fields["hidden"] = list_value(args.hidden)
    fields.update(parse_overrides(args.overrides))
    base = make_config(args.config, method="df-o", **{k: v for k, v in fields.items() if v is not None})
    return base if base.val_split or args.val_split is not None else base.replace(val_split=5000)


def cmd_ablate_df(args: argparse.Namespace) -> int:
    from . import ablate_df
    from .cliargs import list_value

    base = df_base(args)
    rows = list_value(args.rows) if args.rows else ablate_df.ROW_NAMES
    if not args.seeds >= 1 or not args.jobs >= 1:
        raise ConfigError("--seeds and --jobs must be at least 1")
    ablate_df.run(base, rows, args.seeds, args.jobs, Path(args.out), args.json)
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    from . import ablate_df

    ROW_NAMES = ablate_df.ROW_NAMES
    p = sub.add_parser("ablate", help="ablation tables: the Trifecta slides' rows, and DF's ingredients")
    studies = p.add_subparsers(dest="study", required=True)
    t = studies.add_parser("trifecta", help="the five rows of the Trifecta slides (ff, symba, +apl, +bn, trifecta)")
    t.add_argument("--dataset", default="cifar10")
    t.add_argument("--epochs", type=int, default=1)
    t.add_argument("--model", default="small")
    t.add_argument("--width", type=float, default=1.0)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--rows", help="comma-separated subset of " + ",".join(ROWS))
    t.add_argument("--out", default="runs/ablation")
    t.add_argument("--json", metavar="FILE")
    add_bool(t, "--progress", "progress bar or lines", default=True)
    for k in ("limit-train", "limit-test", "batch-size", "lr", "device", "data-dir", "threads"):
        t.add_argument("--" + k, default=None)
    add_bool(t, "--bf16", "bf16 autocast")
    t.set_defaults(func=cmd_ablate)

    d = studies.add_parser("df", help="what each DF ingredient adds (LCP, prototypes, margin, lambda, pairs, FF-style, "
                           "greedy, DF-R), mean and sd over seeds, chosen on validation",
                           description=ablate_df.__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    d.add_argument("--config", metavar="FILE.yaml", help="the base config (flags override it; default: the df-o recipe)")
    d.add_argument("--dataset", help="dataset (default: the config's)")
    d.add_argument("--model", help="mlp | small | large")
    d.add_argument("--width", help="channel scale of the conv nets")
    add_list(d, "--hidden", "MLP widths")
    budget = d.add_mutually_exclusive_group()
    budget.add_argument("--epochs", help="epochs per run")
    budget.add_argument("--time-budget", help="seconds of training per run")
    d.add_argument("--seeds", type=int, default=3, help="seeds per row (default 3)")
    d.add_argument("--rows", help="comma-separated subset of " + ",".join(ROW_NAMES) + " (default: all), or also "
                   + ",".join(ablate_df.EXTRA_ROWS))
    d.add_argument("--val-split", default=None,
                   help="training images held out for validation (default: the config's, else 5000)")
    d.add_argument("--jobs", type=int, default=1, help="runs at a time (each with --threads threads; default 1)")
    for k in ("lr", "batch-size", "data-dir", "limit-train", "limit-test", "device", "threads", "eval-every"):
        d.add_argument("--" + k, default=None)
    add_bool(d, "--bf16", "bf16 autocast", default=None)
    add_bool(d, "--channels-last", "channels_last memory format (conv nets)", default=None)
    add_overrides(d, "any other field of the base config, e.g. --set block_size=3")
    d.add_argument("--out", default="runs/ablate-df", help="folder of the runs and ablation.md (default runs/ablate-df)")
    d.add_argument("--json", metavar="FILE", help="the table as JSON (default OUT/ablation.json)")
    d.set_defaults(func=cmd_ablate_df)
