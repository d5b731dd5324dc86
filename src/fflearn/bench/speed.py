"""``fflearn bench speed``: training images per second per method and model, and the ratio to BP.

Every (method, model) pair gets its own Trainer, built from the same flags as ``fflearn train``.
Each takes ``--warmup`` untimed steps (first-call allocations, oneDNN/cuDNN algorithm choice,
``torch.compile``), then ``--repeats`` timed windows of ``--steps`` steps. The windows are taken
round-robin over all pairs, so a burst of load from another process on a shared machine hits
every method alike rather than one method's whole measurement; the figure is the median window.
``ratio_to_bp`` divides by BP's figure on the same model, measured in the same process.

``--variants`` adds rows that switch off one of the GPU step's two launch savings, to measure
what each is worth in the same process: ``foreach-adam`` steps with the multi-tensor (foreach)
Adam instead of the fused kernel, ``nan-check-every-step`` reads the losses on the host after
every segment instead of once every 32 (each read waits for the GPU to drain its queue).
``ratio_to_bp`` always divides by BP's ``default`` row on the same model.
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Callable
from typing import Any

from ..errors import ConfigError
from ..runfolder import write_json
from . import common as c


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("speed", help="training images per second per method and model (and ratio to BP)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    c.add_common_args(p, methods="bp,ff,symba,trifecta,df-o,df-r,lcp", models="mlp,small", dataset="mnist")
    p.add_argument("--steps", type=int, default=20,
                   help="timed steps per window (0: one whole epoch of the, possibly limited, training set)")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first (default 3)")
    p.add_argument("--repeats", type=int, default=3, help="timed windows per method; the median counts (default 3)")
    p.add_argument("--variants", default="default",
                   help="comma-separated step variants per method: " + ", ".join(VARIANTS)
                   + " (default: default)")
    p.set_defaults(func=run)


def _default(learner: Any) -> None:
    pass


def _foreach_adam(learner: Any) -> None:
    for opt in learner.optimizers.values():
        for g in opt.param_groups:  # Adam reads these per step, so switching after build is safe
            g["fused"], g["foreach"] = False, True
    learner.fused = False


def _check_every_step(learner: Any) -> None:
    learner.check_every = 1


# variant name -> what it does to a freshly built Learner
VARIANTS: dict[str, Callable[[Any], None]] = {
    "default": _default, "foreach-adam": _foreach_adam, "nan-check-every-step": _check_every_step,
}


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Run the benchmark the arguments describe; returns the JSON payload."""
    c.setup_threads(args.threads)
    device = c.resolve(args.device)
    for name in ("steps", "warmup"):
        c.check_positive(name, getattr(args, name), allow_zero=True)
    c.check_positive("repeats", args.repeats)
    methods = c.split_list(args.methods, "methods")
    if "bp" not in methods:
        methods = ["bp", *methods]  # ratio_to_bp needs BP on the same net, in the same process
    models = c.split_list(args.models, "models")
    variants = c.split_list(args.variants, "variants")
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise ConfigError(f"unknown --variants {', '.join(unknown)}; choose from {', '.join(VARIANTS)}")
    if "default" not in variants:
        variants = ["default", *variants]  # the ratio's denominator
    # every config first: a bad name or value fails before any minute is spent measuring
    cfgs = {(m, net): c.bench_config(args, m, net) for net in models for m in methods}
    runners: dict[tuple[str, str, str], c.StepRunner] = {}
    for (m, net), cfg in cfgs.items():
        for v in variants:
            r = c.StepRunner(c.make_trainer(cfg))
            VARIANTS[v](r.t.learner)
            runners[(m, net, v)] = r
    windows: dict[tuple[str, str, str], list[float]] = {k: [] for k in runners}
    for r in runners.values():
        for _ in range(args.warmup):
            r.step()
    ops = {key: c.count_ops(r.step) for key, r in runners.items()}  # one more (untimed) step each
    for _ in range(args.repeats):
        for key, r in runners.items():
            steps = args.steps or r.spe
            seconds = r.timed(steps)
            windows[key].append(steps * r.t.cfg.batch_size / seconds)
    results: list[dict[str, Any]] = []
    for (method, net, variant), r in runners.items():
        ips = statistics.median(windows[(method, net, variant)])
        cfg = r.t.cfg
        results.append({
            "method": method, "model": net, "variant": variant, "dataset": cfg.dataset,
            "images_per_second": ips,
            "ratio_to_bp": None,  # filled below
            "step_ms": 1000 * cfg.batch_size / ips,
            "ops_per_step": ops[(method, net, variant)],  # aten ops dispatched (kernel launches bound a GPU step)
            "windows_images_per_second": windows[(method, net, variant)],
            "steps": args.steps or r.spe, "warmup": args.warmup, "batch_size": cfg.batch_size,
            "width": cfg.width if net != "mlp" else None, "hidden": cfg.hidden if net == "mlp" else None,
            "parameters": sum(p.numel() for p in r.t.net.parameters()),
            "bf16": cfg.bf16, "channels_last": cfg.channels_last, "compile": cfg.compile,
            "scheme": cfg.scheme, "label_mode": cfg.label_mode,
        })
    bp = {r["model"]: r["images_per_second"] for r in results if r["method"] == "bp" and r["variant"] == "default"}
    for row in results:
        row["ratio_to_bp"] = row["images_per_second"] / bp[row["model"]]
    return {"results": results, **c.machine_info(device)}


def run(args: argparse.Namespace) -> int:
    payload = measure(args)
    print(f"training speed on {payload['device']}, {payload['threads']} threads, torch {payload['torch']}")
    c.print_table(payload["results"], [
        ("method", "method", str), ("model", "model", str), ("variant", "variant", str), ("batch_size", "batch", str),
        ("images_per_second", "img/s", c.f0), ("step_ms", "ms/step", c.f2), ("ratio_to_bp", "ratio to BP", c.f2), ("ops_per_step", "ops/step", c.f0),
        ("parameters", "params", c.f0),
    ])
    write_json(payload, args.json)
    return 0
