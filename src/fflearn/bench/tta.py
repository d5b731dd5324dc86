"""``fflearn bench tta``: training time to a target test accuracy, per method and dataset.

Training runs as ``fflearn train`` would (same config, same steps), and every
``--eval-every-steps`` steps the clock stops (after a device synchronise), the test set is
evaluated with the run's own prediction rule, and the clock starts again: evaluation time is not
training time. The run stops at the first evaluation at or above the target, or when the
training time passes ``--max-seconds``. The resolution of the answer is one evaluation interval:
a run reported at step s reached the target somewhere in the interval that ended at s.

``--pipeline N`` trains each local method with a static scheme as ``fflearn train --pipeline N``
(N processes, ``--threads``/N threads each: the same cores in total), and the methods that cannot
be split (bp: one segment) in one process as above, the reference. A pipeline run evaluates at
every epoch end (the test set; ``seconds`` of the epoch records are training time only), so its
resolution is one epoch: its time is when the epoch that reached the target ended, an upper
bound of the time it took.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from ..console import pct
from ..errors import ConfigError
from ..runfolder import write_json
from . import common as c

DEFAULT_TARGETS = {"mnist": 0.98, "fashion-mnist": 0.90}


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("tta", help="training time to a target test accuracy",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    c.add_common_args(p, methods="df,bp", models="mlp", dataset="mnist,fashion-mnist")
    p.add_argument("--target", type=float, default=None,
                   help="target test accuracy in (0, 1] (default: mnist 0.98, fashion-mnist 0.90)")
    p.add_argument("--eval-every-steps", type=int, default=100, help="evaluate the test set every N steps (default 100)")
    p.add_argument("--max-seconds", type=float, default=120.0, help="training-time budget per run (default 120)")
    p.add_argument("--limit-test", type=int, default=None, help="evaluate on the first N test images only")
    p.add_argument("--pipeline", type=int, default=1,
                   help="train local methods as a layer pipeline of N processes sharing --threads (default 1: "
                        "one process); methods that cannot be split run in one process")
    p.set_defaults(func=run)


def time_to_target(trainer: Any, target: float, eval_every: int, max_seconds: float) -> dict[str, Any]:
    """Train ``trainer`` until its test accuracy reaches ``target`` or the budget runs out."""
    runner = c.StepRunner(trainer)
    data = trainer.data
    train_s = eval_s = 0.0
    steps = 0
    curve: list[tuple[int, float, float]] = []  # (step, train seconds, test accuracy)
    reached = False
    while train_s < max_seconds:
        train_s += runner.timed(eval_every)
        steps += eval_every
        t0 = time.perf_counter()
        acc = float(trainer.evaluate(data.test_x, data.test_y)["accuracy"])
        eval_s += time.perf_counter() - t0
        curve.append((steps, train_s, acc))
        if acc >= target:
            reached = True
            break
    return {
        "reached": reached,
        "seconds": train_s if reached else None,
        "steps": steps if reached else None,
        "epochs": steps / runner.spe if reached else None,
        "best_accuracy": max(a for _, _, a in curve),
        "final_accuracy": curve[-1][2],
        "train_seconds_run": train_s,
        "steps_run": steps,
        "eval_seconds": eval_s,
        "curve": curve,
    }


def pipeline_time_to_target(cfg: Any, ranks: int, threads: int, target: float, max_seconds: float) -> dict[str, Any]:
    """Train ``cfg`` as ``fflearn train --pipeline ranks`` for ``max_seconds`` of training, scoring
    the test set at every epoch end; the first epoch at or above ``target`` is the answer."""
    from ..config import dump_yaml
    from ..parallel.launch import run_fflearn

    with tempfile.TemporaryDirectory(prefix="fflearn-tta-") as tmp:
        run_cfg = cfg.replace(epochs=10_000, time_budget=max_seconds, eval_every=1, eval_test=True,
                              val_split=0, progress=False, checkpoint_every=0, out=str(Path(tmp) / "run"))
        dump_yaml(run_cfg, Path(tmp) / "config.yaml")
        per_rank = max(1, threads // ranks)
        run_fflearn(["train", "--config", str(Path(tmp) / "config.yaml"), "--pipeline", str(ranks),
                     "--threads", str(per_rank), "--overwrite"], per_rank, f"the pipeline run of {cfg.method}")
        records = [json.loads(ln) for ln in (Path(tmp) / "run" / "metrics.jsonl").read_text().splitlines() if ln]
    curve, train_s = [], 0.0  # (step, train seconds, test accuracy) at each epoch end
    for r in records:
        train_s += r["seconds"]
        curve.append((int(r["step"]), train_s, float(r["test_accuracy"])))
    hit = next((i for i, c in enumerate(curve) if c[2] >= target), None)
    return {
        "reached": hit is not None,
        "seconds": None if hit is None else curve[hit][1],
        "steps": None if hit is None else curve[hit][0],
        "epochs": None if hit is None else hit + 1,
        "best_accuracy": max(a for _, _, a in curve),
        "final_accuracy": curve[-1][2],
        "train_seconds_run": train_s,
        "steps_run": curve[-1][0],
        "eval_seconds": None,
        "curve": curve,
        "resolution": "epoch",
        "stage_share": records[-1].get("stage_share"),
    }


def target_for(dataset: str, target: float | None) -> float:
    from ..data import canonical_name

    if target is not None:
        if not 0 < target <= 1:
            raise ConfigError(f"--target must be a test accuracy in (0, 1]; got {target}")
        return target
    name = canonical_name(dataset)
    if name not in DEFAULT_TARGETS:
        raise ConfigError(f"no default target for dataset {dataset!r}: give --target (e.g. --target 0.7)")
    return DEFAULT_TARGETS[name]


def measure(args: argparse.Namespace) -> dict[str, Any]:
    c.setup_threads(args.threads)
    device = c.resolve(args.device)
    c.check_positive("eval-every-steps", args.eval_every_steps)
    c.check_positive("max-seconds", args.max_seconds)
    methods = c.split_list(args.methods, "methods")
    models = c.split_list(args.models, "models")
    datasets = c.split_list(args.dataset, "dataset")
    plan = []
    for ds in datasets:
        target = target_for(ds, args.target)
        for net in models:
            for m in methods:
                plan.append((m, net, ds, target, c.bench_config(args, m, net, dataset=ds, limit_test=args.limit_test)))
    if args.pipeline < 1:
        raise ConfigError(f"--pipeline takes a number of processes >= 1; got {args.pipeline}")
    if args.pipeline > 1 and args.threads < args.pipeline:
        raise ConfigError(f"--pipeline {args.pipeline} shares --threads between its processes: give --threads "
                          f">= {args.pipeline} (e.g. --threads {args.pipeline})")
    results = []
    for method, net, ds, target, cfg in plan:
        ranks = args.pipeline if args.pipeline > 1 and splittable(cfg, args.pipeline) else 1
        if ranks > 1:
            r = pipeline_time_to_target(cfg, ranks, args.threads, target, args.max_seconds)
            extra = {"eval_every_steps": None, "pipeline": ranks}
        else:
            trainer = c.make_trainer(cfg)
            r = time_to_target(trainer, target, args.eval_every_steps, args.max_seconds)
            r["resolution"] = f"{args.eval_every_steps} steps"
            extra = {"eval_every_steps": args.eval_every_steps, "pipeline": 1,
                     "train_images": len(trainer.data.train_y), "test_images": len(trainer.data.test_y)}
        results.append({"method": method, "model": net, "dataset": ds, "target": target,
                        "max_seconds": args.max_seconds, "batch_size": cfg.batch_size, **extra, **r})
    bp = {(r["model"], r["dataset"]): r for r in results if r["method"] == "bp"}
    for r in results:  # time to target as a ratio to BP's on the same net and data, in this run
        ref = bp.get((r["model"], r["dataset"]))
        r["ratio_to_bp"] = r["seconds"] / ref["seconds"] if ref and r["reached"] and ref["reached"] else None
    return {"results": results, **c.machine_info(device)}


def splittable(cfg: Any, ranks: int) -> bool:
    """Whether ``cfg`` trains as a pipeline of ``ranks`` (a local method with a static scheme and
    enough segments); BP and the alternating schemes do not."""
    from ..parallel.pipeline import check_pipeline

    try:
        check_pipeline(cfg, ranks)
    except ConfigError:
        return False
    return True


def _when(r: dict[str, Any]) -> str:
    return f"{r['seconds']:.1f} s" if r["reached"] else f"not reached ({r['train_seconds_run']:.0f} s)"


def run(args: argparse.Namespace) -> int:
    payload = measure(args)
    print(f"time to target accuracy on {payload['device']}, {payload['threads']} threads, torch {payload['torch']} "
          "(training time only; test evaluations excluded)")
    rows = [{**r, "when": _when(r)} for r in payload["results"]]
    c.print_table(rows, [
        ("method", "method", str), ("model", "model", str), ("dataset", "dataset", str),
        ("target", "target", pct), ("pipeline", "processes", str), ("when", "time to target", str),
        ("ratio_to_bp", "x BP", lambda v: "-" if v is None else f"{v:.2f}"), ("steps", "steps", str),
        ("epochs", "epochs", c.f2), ("best_accuracy", "best acc", pct), ("eval_seconds", "eval s", lambda v: "-" if v is None else c.f2(v)),
    ])
    write_json(payload, args.json)
    return 0
