"""``fflearn bench mfu``: model FLOPs utilisation of training, against a peak measured here.

* step FLOPs: ``torch.utils.flop_counter.FlopCounterMode`` over one real ``Learner.step`` (the
  forward and backward of every segment, every head, on a real augmented batch). It counts the
  matmuls and convolutions at the aten level, which is what the peak below measures; elementwise
  work (ReLU, norms, Adam) is not counted, as is usual for MFU.
* step time: the median of timed windows of real steps after a warm-up (as ``bench speed``),
  including the batch's augmentation and normalisation.
* peak: the best of timed square matmuls (``--peak-size``, 4096 by default) in fp32 and in bf16,
  on the same device and threads, in the same process. A bf16 run is divided by the bf16 peak,
  an fp32 run by the fp32 peak.

mfu = (step FLOPs / step time) / peak.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from ..console import pct
from ..runfolder import write_json
from . import common as c


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("mfu", help="training FLOPs per second over the measured matmul peak",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    c.add_common_args(p, methods="bp,df-o,trifecta,lcp", models="small", dataset="cifar10")
    p.add_argument("--steps", type=int, default=10, help="timed steps per window (default 10)")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first (default 3)")
    p.add_argument("--repeats", type=int, default=3, help="timed windows; the median counts (default 3)")
    p.add_argument("--peak-size", type=int, default=4096, help="side of the square matmuls timed for the peak")
    p.add_argument("--peak-repeats", type=int, default=3, help="timed matmul windows; the best counts")
    p.set_defaults(func=run)


def count_flops(fn: Callable[[], Any]) -> tuple[int, dict[str, int]]:
    """FLOPs of the matmuls and convolutions ``fn`` runs (forward and backward), and per op."""
    from torch.utils.flop_counter import FlopCounterMode  # imported here: it slows every CLI start

    with FlopCounterMode(display=False) as counter:
        fn()
    per_op = {getattr(op, "__name__", str(op)): int(n) for op, n in counter.get_flop_counts().get("Global", {}).items()}
    return int(counter.get_total_flops()), per_op


def _mm_seconds(a: torch.Tensor, b: torch.Tensor, layout: str, reps: int, device: torch.device) -> float:
    c.sync(device)
    t0 = time.perf_counter()
    for _ in range(reps):
        if layout == "nn":
            torch.mm(a, b)
        else:
            F.linear(a, b)  # a @ b.T, what nn.Linear runs
    c.sync(device)
    return time.perf_counter() - t0


def matmul_peak(device: torch.device, dtype: torch.dtype, n: int, repeats: int,
                budget: float = 10.0) -> dict[str, Any]:
    """Best FLOP/s of square matmuls in ``dtype``, over both operand layouts (a @ b, a @ b.T).

    A CPU without native bf16 runs bf16 matmuls orders of magnitude slower than fp32, so the size
    grows from 256 by doublings up to ``n`` only while one matmul is predicted to take at most
    ``budget`` seconds (the size used is reported). A timed window holds enough matmuls to last about a tenth of a
    second, so that kernel-launch overheads on a GPU do not count.
    """
    g = torch.Generator(device="cpu").manual_seed(0)

    def pair(m: int) -> tuple[torch.Tensor, torch.Tensor]:
        return (torch.randn(m, m, generator=g).to(device=device, dtype=dtype),
                torch.randn(m, m, generator=g).to(device=device, dtype=dtype))

    m = min(n, 256)
    a, b = pair(m)
    for lay in ("nn", "nt"):
        _mm_seconds(a, b, lay, 1, device)  # library initialisation
    rates = {lay: 2.0 * m**3 / max(_mm_seconds(a, b, lay, 1, device), 1e-9) for lay in ("nn", "nt")}
    # grow the size while one matmul stays within budget; a CPU's rate rises with the size, so
    # the rate is measured again at every size rather than extrapolated from a small one
    while m < n and 2.0 * min(n, 2 * m) ** 3 / max(rates.values()) <= budget:
        m = min(n, 2 * m)
        a, b = pair(m)
        rates = {lay: 2.0 * m**3 / max(_mm_seconds(a, b, lay, 1, device), 1e-9)
                 if 2.0 * m**3 / r <= budget else r for lay, r in rates.items()}
    n = m
    a, b = pair(n)
    flops = 2.0 * n**3
    best: dict[str, float | None] = {}
    fastest = max(rates, key=lambda lay: rates[lay])
    for layout, rate in rates.items():
        if layout != fastest and flops / rate > budget:  # far slower than the other: not the peak
            best[layout] = None
            continue
        per = max(_mm_seconds(a, b, layout, 1, device), 1e-9)  # warm-up at this size; sets the window
        reps = max(1, min(1000, int(0.1 / per)))
        best[layout] = max(reps * flops / _mm_seconds(a, b, layout, reps, device) for _ in range(repeats))
    return {"flops": max(v for v in best.values() if v is not None), "size": n, "by_layout": best}


def measure(args: argparse.Namespace) -> dict[str, Any]:
    c.setup_threads(args.threads)
    device = c.resolve(args.device)
    c.check_positive("steps", args.steps)
    c.check_positive("warmup", args.warmup, allow_zero=True)
    c.check_positive("repeats", args.repeats)
    c.check_positive("peak-size", args.peak_size)
    c.check_positive("peak-repeats", args.peak_repeats)
    methods = c.split_list(args.methods, "methods")
    models = c.split_list(args.models, "models")
    cfgs = {(m, net): c.bench_config(args, m, net) for net in models for m in methods}
    peak_runs = {"fp32": matmul_peak(device, torch.float32, args.peak_size, args.peak_repeats),
                 "bf16": matmul_peak(device, torch.bfloat16, args.peak_size, args.peak_repeats)}
    peaks = {k: v["flops"] for k, v in peak_runs.items()}
    results: list[dict[str, Any]] = []
    for (method, net), cfg in cfgs.items():
        runner = c.StepRunner(c.make_trainer(cfg))
        # count on an eager twin when compiled: the counter sees aten ops, not fused kernels
        counting = runner if not cfg.compile else c.StepRunner(c.make_trainer(cfg.replace(compile=False)))
        for _ in range(args.warmup):
            runner.step()
        step_flops, per_op = count_flops(counting.step)
        windows = [runner.timed(args.steps) / args.steps for _ in range(args.repeats)]
        step_s = statistics.median(windows)
        dtype = "bf16" if cfg.bf16 else "fp32"
        fps = step_flops / step_s
        results.append({
            "method": method, "model": net, "dataset": cfg.dataset, "batch_size": cfg.batch_size,
            "step_flops": step_flops, "flops_per_image": step_flops / cfg.batch_size,
            "step_seconds": step_s, "flops_per_second": fps,
            "peak_flops": peaks[dtype], "peak_dtype": dtype, "mfu": fps / peaks[dtype],
            "images_per_second": cfg.batch_size / step_s, "flops_by_op": per_op,
            "width": cfg.width if net != "mlp" else None, "bf16": cfg.bf16,
            "channels_last": cfg.channels_last, "compile": cfg.compile,
        })
        del runner, counting
    return {"results": results, "peak_flops": peaks, "peak_size": {k: v["size"] for k, v in peak_runs.items()},
            "peak_by_layout": {k: v["by_layout"] for k, v in peak_runs.items()}, **c.machine_info(device)}


def run(args: argparse.Namespace) -> int:
    payload = measure(args)
    pk, n = payload["peak_flops"], payload["peak_size"]
    print(f"MFU on {payload['device']}, {payload['threads']} threads, torch {payload['torch']}; "
          f"measured matmul peak: fp32 {c.si(pk['fp32'])}FLOP/s (n={n['fp32']}), bf16 {c.si(pk['bf16'])}FLOP/s (n={n['bf16']})")
    c.print_table(payload["results"], [
        ("method", "method", str), ("model", "model", str), ("step_flops", "FLOP/step", c.si),
        ("step_seconds", "s/step", c.f3), ("flops_per_second", "FLOP/s", c.si),
        ("peak_dtype", "peak", str), ("peak_flops", "peak FLOP/s", c.si), ("mfu", "MFU", pct),
    ])
    write_json(payload, args.json)
    return 0
