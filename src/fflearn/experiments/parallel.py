"""``fflearn experiment parallel``: epoch time of one process vs a layer-parallel pipeline (DF Fig. 4B).

Both runs get the same CPU threads in total: the sequential run is one process with T threads,
the pipeline R processes with T/R threads each (``fflearn train --pipeline R``). Local learning
needs no backward traffic between layer groups, so the pipeline's stages overlap on consecutive
batches; the measured speedup is sequential epoch time / pipeline epoch time (training only,
evaluation excluded). The pipeline computes the same updates as the sequential run (the same
batches, augmentations and negatives reach every layer), so both accuracies should agree up to
float rounding. Idle fraction of a rank: its time blocked on the links / the epoch.

Each run is a fresh ``python -m fflearn train`` process, so both pay the same start-up and run
under the same conditions. Timings on a shared machine are noisy: repeat and look at the spread.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from ..cliargs import add_bool, add_list, list_value
from ..console import format_table, pct
from ..errors import ConfigError, FFLearnError
from ..runfolder import write_json


def _train_argv(args: argparse.Namespace) -> list[str]:
    argv = ["train", "--method", args.method, "--model", args.model, "--dataset", args.dataset,
            "--epochs", str(args.epochs), "--batch-size", str(args.batch_size), "--seed", str(args.seed),
            "--device", "cpu", "--progress", "false", "--overwrite", "--eval-every", str(args.epochs),
            "--dist-timeout", str(args.dist_timeout)]
    if args.hidden:
        argv += ["--hidden", *args.hidden]
    for flag in ("width", "block_size", "limit_train", "limit_test", "data_dir"):
        v = getattr(args, flag)
        if v is not None:
            argv += ["--" + flag.replace("_", "-"), str(v)]
    return argv


def _check(args: argparse.Namespace) -> None:
    """Refuse what cannot run before starting anything (one clear line)."""
    from ..methods import make_config
    from ..parallel.pipeline import check_pipeline

    if args.ranks < 2:
        raise ConfigError(f"--ranks must be at least 2; got {args.ranks}")
    if args.threads < args.ranks:
        raise ConfigError(f"--threads ({args.threads}, the total of both runs) must give each of the "
                          f"{args.ranks} ranks at least one thread")
    if args.epochs < 1:
        raise ConfigError(f"--epochs must be at least 1; got {args.epochs}")
    fields = {"method": args.method, "model": args.model, "dataset": args.dataset, "hidden": args.hidden,
              "width": args.width, "block_size": args.block_size, "batch_size": args.batch_size}
    check_pipeline(make_config(**{k: v for k, v in fields.items() if v is not None}), args.ranks)


def _run(name: str, argv: list[str], threads: int, out: Path) -> dict[str, Any]:
    """One training run in a fresh process; its per-epoch records."""
    from ..parallel.launch import run_fflearn

    print(f"{name}: fflearn {' '.join(argv)}", flush=True)
    run_fflearn(argv, threads, f"the {name} run")
    try:
        records = [json.loads(ln) for ln in (out / "metrics.jsonl").read_text().splitlines() if ln.strip()]
    except (OSError, ValueError) as e:
        raise FFLearnError(f"the {name} run left no readable {out / 'metrics.jsonl'}: {e}") from None
    seconds = [r["seconds"] for r in records]
    res: dict[str, Any] = {"epoch_seconds": sum(seconds) / len(seconds), "accuracy": records[-1].get("test_accuracy"),
                           "per_layer_accuracy": records[-1].get("per_layer_test_accuracy"), "run_dir": str(out)}
    if "idle_fraction" in records[-1]:
        # time-weighted over the epochs: total idle time / total time, per rank
        idle = [[f * s for f, s in zip(r["idle_fraction"], r["rank_seconds"], strict=True)] for r in records]
        total = [sum(col) for col in zip(*(r["rank_seconds"] for r in records), strict=True)]
        res["idle_fraction"] = [sum(col) / t if t else None for col, t in zip(zip(*idle, strict=True), total, strict=True)]
        res["layers_per_rank"] = records[-1]["layers_per_rank"]
        res["bytes_sent_per_step"] = records[-1].get("bytes_sent_per_step")
        res["stage_share"] = records[-1].get("stage_share")
    return res


def plot_speed(bars: list[tuple[str, float]], title: str, out: Path) -> list[Path]:
    """Epoch time of each configuration, the speed-up over the first on top (DF Fig. 4B); PNG and PDF."""
    from .figures import PALETTE, pyplot, save

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(max(5.0, 1.6 * len(bars) + 2), 4.0))
    names, secs = [b[0] for b in bars], [b[1] for b in bars]
    ax.bar(names, secs, color=[PALETTE[i % len(PALETTE)] for i in range(len(bars))])
    for i, s in enumerate(secs):
        ax.text(i, s, f"{s:.1f} s\n{secs[0] / s:.2f}x", ha="center", va="bottom", fontsize=8)
    ax.set_ylabel("seconds per epoch")
    ax.set_title(title, fontsize=10)
    ax.margins(y=0.2)
    ax.grid(alpha=0.3, axis="y")
    return save(fig, out, "parallel-speed")


def cmd_parallel(args: argparse.Namespace) -> int:
    args.hidden = list_value(args.hidden) if args.hidden else None
    if args.model == "mlp" and not args.hidden:
        args.hidden = ["2000", "2000", "2000", "2000"]
    _check(args)
    root = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="fflearn-parallel-"))
    base = _train_argv(args)
    per_rank = args.threads // args.ranks
    seq = _run(f"sequential (1 process x {args.threads} threads)",
               [*base, "--threads", str(args.threads), "--out", str(root / "sequential")],
               args.threads, root / "sequential")
    pipe = _run(f"pipeline ({args.ranks} processes x {per_rank} thread{'s' if per_rank > 1 else ''})",
                [*base, "--threads", str(per_rank), "--pipeline", str(args.ranks), "--out", str(root / "pipeline")],
                per_rank, root / "pipeline")
    speedup = seq["epoch_seconds"] / pipe["epoch_seconds"]
    one = None
    if args.also_one_thread and args.threads > 1:  # the pipeline's per-device view: one core alone
        one = _run("sequential (1 process x 1 thread)", [*base, "--threads", "1", "--out", str(root / "sequential-1thread")],
                   1, root / "sequential-1thread")

    rows = [[f"sequential, 1 x {args.threads} threads", f"{seq['epoch_seconds']:.2f}", pct(seq["accuracy"], unit=""), "-", "1.00"],
            [f"pipeline, {args.ranks} x {per_rank} thread(s)", f"{pipe['epoch_seconds']:.2f}", pct(pipe["accuracy"], unit=""),
             " / ".join(pct(f, unit="") for f in pipe["idle_fraction"]), f"{speedup:.2f}"]]
    if one is not None:
        rows.insert(1, ["sequential, 1 x 1 thread", f"{one['epoch_seconds']:.2f}", pct(one["accuracy"], unit=""), "-",
                        f"{seq['epoch_seconds'] / one['epoch_seconds']:.2f}"])
    print()
    print(format_table(["run", "epoch s", "test acc %", "idle % per rank", "speedup"], rows))
    share = pipe.get("stage_share") or []
    # the pipeline's pace is its slowest stage, which runs on one rank's threads: at best its
    # epoch is (one process on those threads) x (that stage's share of the cost)
    bound = None if one is None or not share else seq["epoch_seconds"] / (one["epoch_seconds"] * max(share))
    layers = ", ".join(f"rank {r}: layers {a}-{b - 1}" for r, (a, b) in enumerate(pipe["layers_per_rank"]))
    print(f"\n{args.method} {args.model} on {args.dataset}; {layers}; "
          f"sent per microbatch: {pipe['bytes_sent_per_step']} bytes")
    if share:
        print("cost share per rank (rank 0's timing of each segment): "
              + " / ".join(pct(f, unit="%") for f in share))
    if bound is not None:
        print(f"speedup bound (1 x {args.threads} threads epoch / (1 x {per_rank} thread epoch x largest share)): "
              f"{bound:.2f}; measured {speedup:.2f}")
    print(f"run folders: {root}")
    if args.out:  # the figure beside the run folders, only where asked for
        bars = [(f"1 process\n{args.threads} threads", seq["epoch_seconds"])]
        if one is not None:
            bars.append(("1 process\n1 thread", one["epoch_seconds"]))
        bars.append((f"pipeline\n{args.ranks} x {per_rank}", pipe["epoch_seconds"]))
        for p in plot_speed(bars, f"{args.method} {args.model} on {args.dataset}: layer-parallel pipeline", root):
            print(p)
    if args.json:
        write_json({
            "speedup": speedup, "sequential_seconds": seq["epoch_seconds"], "pipeline_seconds": pipe["epoch_seconds"],
            "sequential_accuracy": seq["accuracy"], "pipeline_accuracy": pipe["accuracy"],
            "idle_fraction": pipe["idle_fraction"], "layers_per_rank": pipe["layers_per_rank"],
            "bytes_sent_per_step": pipe["bytes_sent_per_step"], "stage_share": share,
            "speedup_bound": bound,
            "sequential_per_layer_accuracy": seq["per_layer_accuracy"],
            "pipeline_per_layer_accuracy": pipe["per_layer_accuracy"],
            "method": args.method, "model": args.model, "hidden": args.hidden, "dataset": args.dataset,
            "limit_train": args.limit_train, "epochs": args.epochs, "batch_size": args.batch_size,
            "threads": args.threads, "ranks": args.ranks, "cpu_count": os.cpu_count(),
            "run_dirs": {"sequential": seq["run_dir"], "pipeline": pipe["run_dir"]},
            **({} if one is None else {"sequential_1thread_seconds": one["epoch_seconds"],
                                       "sequential_1thread_accuracy": one["accuracy"],
                                       "speedup_vs_1thread": one["epoch_seconds"] / pipe["epoch_seconds"]}),
        }, args.json)
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("parallel", help="epoch time: one process vs a layer-parallel pipeline (DF Fig. 4B)")
    p.add_argument("--method", default="df-o", help="a local method with a static scheme (default df-o)")
    p.add_argument("--model", default="mlp", help="mlp | small | large (default mlp)")
    add_list(p, "--hidden", "MLP widths (default 2000 2000 2000 2000 for mlp)")
    p.add_argument("--width", type=float, help="channel scale of the conv nets")
    p.add_argument("--block-size", type=int, help="layers per DF-O block (default: the method's)")
    p.add_argument("--dataset", default="mnist")
    p.add_argument("--data-dir")
    p.add_argument("--limit-train", type=int, help="train on the first N images only")
    p.add_argument("--limit-test", type=int, help="test on the first N images only")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--ranks", type=int, default=2, help="pipeline processes (default 2)")
    p.add_argument("--threads", type=int, default=2, help="CPU threads of each run in total (default 2)")
    add_bool(p, "--also-one-thread", "also time one process with one thread (what one pipeline stage has)")
    p.add_argument("--dist-timeout", type=float, default=300.0, help="seconds a rank may wait on another")
    p.add_argument("--out", metavar="DIR", help="folder of the two run folders (default: a temporary folder)")
    p.add_argument("--json", metavar="FILE", help="write the figures as JSON")
    p.set_defaults(func=cmd_parallel)

