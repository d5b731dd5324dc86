"""``fflearn ablate df``: what each ingredient of Distance-Forward adds, on one net, data and budget.

Every row trains the same network on the same data for the same budget and seeds, with a
validation split held out of the training set (choices are read off validation accuracy; the
test set is scored once, at the end). The base is the ``df-o`` recipe with the flags given; each
row changes what its name says, and the optimisation (lr, schedule, batch size, augmentation)
stays the base's, so rows differ in one ingredient only:

| row | what it is |
|---|---|
| ``lcp`` | LCP as fflearn ships it: a linear head with bias per layer on globally averaged features, cross-entropy, greedy layers |
| ``lcp-pool`` | LCP on the same pooled features as DF's anchors (``head_pool`` of the base) |
| ``lcp-nobias`` | LCP with a bias-free projection head (Mono-Forward), on DF's pooling |
| ``dfhead`` | LCP with DF's head: cosine prototypes, same pooling and blocks, no margin (normalised softmax) |
| ``df-o`` | DF-O as shipped: the same plus the margin m (additive-margin softmax, CosFace) |
| ``df-o+lambda`` | plus the absolute-distance regulariser, lambda times the largest negative goodness (bounded: cosine) |
| ``df-o+pairs`` | plus sample-level N-pair mining: the closest other-class samples of the batch as extra negatives |
| ``df-ff`` | the FF-style reading of Fig. 1A: the label enters at the input, the goodness is the distance of the layer's projection to that label's anchor, K passes to predict |
| ``greedy`` | DF-O in blocks of one layer |
| ``df-r`` | DF-R: each layer of a block learns from the block's error through a fixed random matrix (direct) |
| ``df-r-fa`` | DF-R as feedback alignment, layer by layer (fflearn's DF-R before 2026-12-01) |
| ``bp`` | end-to-end backprop on the same net and optimisation, for reference |
| ``trifecta`` | the Trifecta (SymBa loss, alternating pairs, batch norm) on the same net and optimisation, for reference; only when asked for (``--rows``), not one of DF's ingredients |

Runs are independent processes (``fflearn train``), ``--jobs`` at a time; an interrupted
ablation continues where it stopped (finished runs are kept, checkpointed ones resumed).
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from .config import Config, validate
from .console import format_table
from .errors import ConfigError, FFLearnError
from .methods import make_config
from .runfolder import CHECKPOINT, write_json

PAIRS = 9  # sample negatives per sample in df-o+pairs: as many as the class anchors of a ten-class task
OPTIM = ("lr", "schedule", "batch_size", "weight_decay", "crop", "rotation", "flip", "epochs", "time_budget",
         "milestones", "gamma", "train_weight_noise")


def _rows(base: Config) -> dict[str, tuple[str, dict[str, Any]]]:
    """Row name -> (method, fields it changes); the base's optimisation is applied to every row."""
    label_mode = "overlay" if base.model == "mlp" else "channel"
    pool = base.head_pool
    return {
        "lcp": ("lcp", {"head_pool": "avg"}),
        "lcp-pool": ("lcp", {"head_pool": pool}),
        "lcp-nobias": ("lcp", {"head_pool": pool, "head_bias": False}),
        "dfhead": ("df-o", {"margin": 0.0}),
        "df-o": ("df-o", {}),
        "df-o+lambda": ("df-o", {"lam": 0.1}),
        "df-o+pairs": ("df-o", {"pair_negatives": PAIRS}),
        "df-ff": ("df-o", {"label_mode": label_mode, "head": "label-anchors"}),
        "greedy": ("df-o", {"block_size": 1}),
        "df-r": ("df-r", {}),
        "df-r-fa": ("df-r", {"feedback": "random"}),
        "bp": ("bp", {}),
        "trifecta": ("trifecta", {}),
    }


ROW_NAMES = ["lcp", "lcp-pool", "lcp-nobias", "dfhead", "df-o", "df-o+lambda", "df-o+pairs", "df-ff", "greedy",
             "df-r", "df-r-fa", "bp"]
EXTRA_ROWS = ["trifecta"]  # references one may ask for with --rows; not in the default table


def row_configs(base: Config, rows: list[str], seeds: int, out: Path) -> list[tuple[str, int, Config]]:
    """(row, seed, config) of every run, validated before any training."""
    table = _rows(base)
    unknown = [r for r in rows if r not in table]
    if unknown:
        raise ConfigError(f"unknown ablation row(s) {', '.join(unknown)}; choose from {', '.join(ROW_NAMES + EXTRA_ROWS)}")
    shared = {k: getattr(base, k) for k in OPTIM}
    machine = {k: getattr(base, k) for k in ("dataset", "data_dir", "limit_train", "limit_test", "val_split",
                                             "model", "width", "hidden", "device", "threads", "bf16",
                                             "channels_last", "eval_every", "plugins")}
    plan = []
    for row in rows:
        method, fields = table[row]
        for seed in range(seeds):
            cfg = make_config(method=method, **{**machine, **shared, **fields}, seed=seed, progress=False,
                              out=str(out / row / f"seed{seed}"))
            plan.append((row, seed, validate(cfg)))
    return plan


def _command(cfg: Config, folder: Path) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    if (folder / CHECKPOINT).exists() and not (folder / "summary.json").exists():
        return [sys.executable, "-m", "fflearn", "train", "--resume", str(folder), "--progress", "false"]
    path = folder.parent / f"{folder.name}.yaml"
    path.write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    return [sys.executable, "-m", "fflearn", "train", "--config", str(path), "--overwrite", "--progress", "false"]


def run_all(plan: list[tuple[str, int, Config]], jobs: int, log: Callable[[str], None] = print) -> None:
    """Train every run of ``plan`` not finished yet, ``jobs`` processes at a time."""
    todo = [(r, s, c) for r, s, c in plan if not (Path(str(c.out)) / "summary.json").exists()]
    running: list[tuple[str, int, subprocess.Popen[bytes], Any, Path]] = []
    try:
        while todo or running:
            while todo and len(running) < jobs:
                row, seed, cfg = todo.pop(0)
                folder = Path(str(cfg.out))
                cmd = _command(cfg, folder)
                log_path = folder.parent / f"{folder.name}.log"
                logf = open(log_path, "ab")
                running.append((row, seed, subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT), logf,
                                log_path))
                log(f"ablate df: started {row} seed {seed}")
            time.sleep(1.0)
            for item in list(running):
                row, seed, proc, logf, log_path = item
                if proc.poll() is None:
                    continue
                running.remove(item)
                logf.close()
                if proc.returncode:
                    raise FFLearnError(f"ablate df: {row} seed {seed} failed (exit {proc.returncode}); see {log_path}")
                log(f"ablate df: finished {row} seed {seed}")
    finally:  # a failure or an interrupt stops the other runs; their checkpoints let a rerun continue
        for _, _, proc, logf, _ in running:
            proc.terminate()
            proc.wait()
            logf.close()


def _mean_sd(values: list[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else None


def summarise(plan: list[tuple[str, int, Config]], rows: list[str]) -> list[dict[str, Any]]:
    out = []
    for row in rows:
        summaries = [json.loads((Path(str(c.out)) / "summary.json").read_text()) for r, _, c in plan if r == row]
        val = [s["val_accuracy"] for s in summaries if s.get("val_accuracy") is not None]
        test = [s["test_accuracy"] for s in summaries if s.get("test_accuracy") is not None]
        vm, vs = _mean_sd(val)
        tm, ts = _mean_sd(test)
        cfg = next(c for r, _, c in plan if r == row)
        out.append({"name": row, "seeds": len(summaries), "method": cfg.method,
                    "val_accuracy_mean": vm, "val_accuracy_sd": vs, "test_accuracy_mean": tm, "test_accuracy_sd": ts,
                    "train_seconds_mean": statistics.fmean(s["train_seconds"] for s in summaries),
                    "epochs_mean": statistics.fmean(s["epochs"] for s in summaries),
                    "val_accuracy": val, "test_accuracy": test,
                    "config": {k: v for k, v in cfg.to_dict().items() if k not in ("out", "seed")}})
    return out


def _pm(m: float | None, s: float | None) -> str:
    return "-" if m is None else f"{100 * m:.2f}" + ("" if s is None else f" ± {100 * s:.2f}")


def write_table(results: list[dict[str, Any]], base: Config, out: Path) -> Path:
    budget = f"{base.time_budget:g} s" if base.time_budget else f"{base.epochs} epochs"
    net = base.model + ("" if base.model == "mlp" else f" at width {base.width:g}")
    lines = [f"# DF ablation: {base.dataset}, {net}, {budget}, {results[0]['seeds'] if results else 0} seeds", "",
             f"Validation: {base.val_split} training images held out; test scored once at the end. Mean ± sd "
             "over seeds.", "",
             format_table(["row", "method", "val acc %", "test acc %", "epochs", "train s"],
                          [[r["name"], r["method"], _pm(r["val_accuracy_mean"], r["val_accuracy_sd"]),
                            _pm(r["test_accuracy_mean"], r["test_accuracy_sd"]), f"{r['epochs_mean']:.1f}",
                            f"{r['train_seconds_mean']:.0f}"] for r in results], markdown=True), ""]
    path = out / "ablation.md"
    path.write_text("\n".join(lines))
    return path


def run(base: Config, rows: list[str], seeds: int, jobs: int, out: Path, json_path: str | None) -> list[dict[str, Any]]:
    if base.val_split < 1:
        raise ConfigError("ablate df chooses on validation accuracy: give --val-split N (e.g. 5000)")
    plan = row_configs(base, rows, seeds, out)
    run_all(plan, jobs)
    results = summarise(plan, rows)
    md = write_table(results, base, out)
    print(md.read_text())
    write_json({"study": "df", "dataset": base.dataset, "model": base.model, "width": base.width,
                "epochs": base.epochs, "time_budget": base.time_budget, "val_split": base.val_split, "seeds": seeds,
                "rows": results}, json_path or out / "ablation.json")
    return results
