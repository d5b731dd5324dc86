"""``fflearn experiment online``: accuracy against batch size at an equal number of samples seen.

On-chip (online) learning sees one sample, or a few, at a time. For each method and batch size b
a fresh network trains for one pass over the first N training images (``limit_train=N``,
``epochs=1``, so every run sees the same N // b * b samples) and is tested on the test set.

Learning rate: Adam's square-root scaling rule, lr(b) = base_lr * sqrt(b / 128), where base_lr
is the method's learning rate at its reference batch of 128 (``--lr``, default the method's
recipe / config default 1e-3). Smaller batches take more, smaller steps; with Adam the square
root keeps the noise of the update comparable (Malladi et al. 2022, "On the SDEs and scaling rules
for adaptive gradient algorithms").

Batch norm cannot train on one sample (its batch statistics are undefined): a method whose
normalisation is ``bn`` is refused at batch size 1 with a clear message, before any training.
The MLP recipes use unit-length normalisation, so every method runs at batch size 1 on the MLP.
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path
from typing import Any

from ..console import format_table
from ..errors import ConfigError
from ..runfolder import write_json
from .figures import out_dir

REFERENCE_BATCH = 128


def scaled_lr(base_lr: float, batch_size: int) -> float:
    """lr(b) = base_lr * sqrt(b / 128): the square-root rule for Adam."""
    return base_lr * math.sqrt(batch_size / REFERENCE_BATCH)


def online_configs(methods: list[str], batch_sizes: list[int], samples: int, **fields: Any) -> list[Any]:
    """One config per (method, batch size), validated before any training."""
    from ..config import coerce, validate
    from ..methods import make_config
    from ..registry import METHODS

    if samples < 1:
        raise ConfigError(f"--samples must be at least 1; got {samples}")
    for b in batch_sizes:
        if b < 1:
            raise ConfigError(f"batch sizes must be at least 1; got {b}")
        if b > samples:
            raise ConfigError(f"batch size {b} is larger than the number of training samples {samples}: "
                              "raise --samples or drop that batch size")
    base_lr = fields.pop("lr", None)
    cfgs = []
    for m in methods:
        METHODS.get(m)
        for b in batch_sizes:
            cfg = make_config(method=m, batch_size=b, limit_train=samples, epochs=1, progress=False, **fields)
            lr0 = cfg.lr if base_lr is None else coerce("lr", base_lr)
            cfg = validate(cfg.replace(lr=scaled_lr(lr0, b)))
            if b == 1 and cfg.norm == "bn":
                raise ConfigError(
                    f"method {m!r} uses batch norm on model {cfg.model!r}, which cannot train on batches of 1: "
                    "drop batch size 1, or pass --norm ln (or unit) to change its normalisation"
                )
            cfgs.append(cfg)
    return cfgs


def run_online(methods: list[str], batch_sizes: list[int], samples: int = 60000, dataset: str = "fashion-mnist",
               out: str | Path | None = None, **fields: Any) -> list[dict[str, Any]]:
    """Train one network per (method, batch size) for one pass over ``samples`` images; test each."""
    from ..data import load_dataset
    from ..trainer import Trainer

    cfgs = online_configs(methods, batch_sizes, samples, dataset=dataset, **fields)
    data = load_dataset(dataset, fields.get("data_dir"))
    if samples > len(data.train_y):
        raise ConfigError(f"--samples {samples} is more than the {len(data.train_y)} training images of {data.label}")
    tmp = None
    if out is None:
        tmp = tempfile.TemporaryDirectory(prefix="fflearn-online-")
        out = tmp.name
    results = []
    try:
        for cfg in cfgs:
            run_dir = Path(out) / f"{cfg.method}-b{cfg.batch_size}"
            t0 = time.perf_counter()
            trainer = Trainer(cfg.replace(out=str(run_dir)), overwrite=True, dataset=data, verbose=False)
            summary = trainer.run()
            results.append({
                "method": cfg.method, "batch_size": cfg.batch_size, "lr": cfg.lr,
                "test_accuracy": summary["test_accuracy"],
                "per_layer_test_accuracy": summary["per_layer_test_accuracy"],
                "samples": trainer.steps_per_epoch() * cfg.batch_size,
                "steps": trainer.steps_per_epoch(),
                "seconds": summary["train_seconds"],
                "wall_seconds": time.perf_counter() - t0,
                "dataset": dataset, "model": cfg.model, "norm": cfg.norm,
            })
    finally:
        if tmp is not None:
            tmp.cleanup()
    return results


def plot_online(results: list[dict[str, Any]], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for m in dict.fromkeys(r["method"] for r in results):
        rr = sorted((r for r in results if r["method"] == m), key=lambda r: r["batch_size"])
        ax.plot([r["batch_size"] for r in rr], [100 * r["test_accuracy"] for r in rr], marker="o", label=m)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("batch size (equal number of samples seen)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(f"Online learning: {results[0]['dataset']}, up to {max(r['samples'] for r in results)} "
                 "samples, one pass")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _ints(text: str, flag: str) -> list[int]:
    try:
        vals = [int(v) for v in text.replace(",", " ").split()]
    except ValueError:
        raise ConfigError(f"{flag} must be comma-separated integers; got {text!r}") from None
    if not vals:
        raise ConfigError(f"{flag} needs at least one value")
    return vals


def cmd_online(args: argparse.Namespace) -> int:
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    batch_sizes = _ints(args.batch_sizes, "--batch-sizes")
    samples = _ints(args.samples, "--samples")[0]
    fields = {k: v for k, v in {"model": args.model, "norm": args.norm, "lr": args.lr, "device": args.device,
                                "data_dir": args.data_dir, "limit_test": args.limit_test, "seed": args.seed,
                                "threads": args.threads}.items() if v is not None}
    results = run_online(methods, batch_sizes, samples, args.dataset, out=Path(args.out) / "online-runs", **fields)
    runs = out_dir(args.out)  # after validation: a refused command leaves no folder behind
    print(f"online learning on {args.dataset}: one pass over {samples} training images, "
          f"lr = base_lr * sqrt(b/{REFERENCE_BATCH})")
    print(format_table(["method", "batch", "lr", "samples", "steps", "test acc %", "train s"],
                       [[r["method"], r["batch_size"], f"{r['lr']:.2e}", r["samples"], r["steps"],
                         f"{100 * r['test_accuracy']:.2f}", f"{r['seconds']:.1f}"] for r in results]))
    print(plot_online(results, runs / "online.png"))
    if args.json:
        write_json({"results": results, "dataset": args.dataset, "samples": samples,
                    "lr_rule": f"base_lr * sqrt(batch_size / {REFERENCE_BATCH})"}, args.json)
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("online", help="accuracy against batch size at an equal number of samples seen")
    p.add_argument("--dataset", default="fashion-mnist")
    p.add_argument("--batch-sizes", default="1,8,64,512", help="comma-separated (default 1,8,64,512)")
    p.add_argument("--samples", default="60000", help="training samples seen by every run (default 60000)")
    p.add_argument("--methods", default="df-o", help="comma-separated methods (default df-o)")
    p.add_argument("--model", help="model (default mlp)")
    p.add_argument("--norm", help="override the methods' normalisation (e.g. ln to allow batch 1 on conv nets)")
    p.add_argument("--lr", help=f"base learning rate at batch {REFERENCE_BATCH} (default: the method's)")
    p.add_argument("--limit-test", help="test on the first N test images only")
    p.add_argument("--seed", help="seed (default 0)")
    p.add_argument("--threads", help="torch CPU threads")
    p.add_argument("--device")
    p.add_argument("--data-dir")
    p.add_argument("--json", metavar="FILE", help="write the figures as JSON")
    p.add_argument("--out", default="runs/experiments", metavar="DIR", help="folder of the plot and the runs")
    p.set_defaults(func=cmd_online)
