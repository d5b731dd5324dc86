"""``fflearn experiment noise``: test accuracy of trained runs under hardware noise (DF Fig. 4C-E).

Three kinds of noise, each at five levels L1-L5 plus level 0 (no noise), on a deep copy of the
trained network (the loaded weights are never touched):

* ``weight`` (device variation): every weight array w (parameters with 2+ dimensions: layer
  weights, conv kernels, heads, DF anchors, the Trifecta's label embedding) becomes
  w * (1 + sigma * eps), eps ~ N(0, 1) per element; biases and normalisation parameters stay exact
  (they would live in digital periphery);
* ``quant`` (limited precision): the same weight arrays are quantised symmetrically, per tensor, to
  k bits: q = 2^(k-1) - 1 levels each side of 0, step = max|w| / q, w -> round(w / step) * step;
* ``activation`` (read noise): the output of every layer gets additive Gaussian noise of std
  sigma * std(that output), through forward hooks.

Weight and activation noise are random: mean and standard deviation over ``draws`` draws (draw d
uses the same random numbers at every level, so the curves are smooth). Quantisation is
deterministic: one evaluation, std 0.
"""

from __future__ import annotations

import argparse
import copy
import statistics
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..cliargs import add_bool
from ..console import format_table
from ..errors import ConfigError
from ..runfolder import write_json
from .report import out_dir

LEVELS: dict[str, list[float]] = {
    "weight": [0.05, 0.1, 0.2, 0.3, 0.5],  # sigma of the multiplicative weight noise
    "quant": [8, 6, 4, 3, 2],  # bits
    "activation": [0.05, 0.1, 0.2, 0.3, 0.5],  # sigma, relative to each activation's std
}
KINDS = tuple(LEVELS)


def weight_arrays(net: nn.Module, heads: bool = True) -> list[nn.Parameter]:
    """The parameters noise applies to: those with two or more dimensions (matrices, kernels);
    ``heads=False`` spares the heads (anchors, classifiers) and the label embedding, so only the
    layers' arrays are noisy."""
    src = net.parameters() if heads else net.layers.parameters()  # type: ignore[union-attr,operator]
    return [p for p in src if p.dim() >= 2]


@torch.no_grad()
def add_weight_noise(net: nn.Module, sigma: float, generator: torch.Generator, heads: bool = True) -> None:
    """w <- w * (1 + sigma * eps) for every weight array, in place (use on a copy)."""
    for p in weight_arrays(net, heads):
        eps = torch.randn(p.shape, generator=generator, device=p.device, dtype=p.dtype)
        p.mul_(1 + sigma * eps)


@torch.no_grad()
def quantize_(t: torch.Tensor, bits: int) -> torch.Tensor:
    """Symmetric uniform per-tensor quantisation to ``bits`` bits, in place: at most 2^bits - 1 values."""
    if bits < 2:
        raise ConfigError(f"quantisation needs at least 2 bits; got {bits}")
    q = 2 ** (bits - 1) - 1
    step = t.abs().max() / q
    if step > 0:
        t.copy_(torch.round(t / step).clamp_(-q, q) * step)
    return t


def quantize_weights(net: nn.Module, bits: int, heads: bool = True) -> None:
    for p in weight_arrays(net, heads):
        quantize_(p.data, bits)


def add_activation_noise(net: nn.Module, sigma: float, generator: torch.Generator) -> list[Any]:
    """Forward hooks adding N(0, (sigma * std(out))^2) to every layer's output; returns the handles."""

    def hook(_: nn.Module, __: Any, out: torch.Tensor) -> torch.Tensor:
        eps = torch.randn(out.shape, generator=generator, device=out.device, dtype=out.dtype)
        return out + sigma * out.detach().float().std().to(out.dtype) * eps

    return [layer.register_forward_hook(hook) for layer in net.layers]  # type: ignore[union-attr]


def evaluate_net(trainer: Any, net: nn.Module) -> float:
    """Test accuracy of ``net`` on the run's test set, exactly as the trainer evaluates its own net."""
    from ..predict import evaluate

    bs = 1000 if not net.conditions_input else max(100, 1000 // trainer.data.num_classes)  # type: ignore[operator]
    res = evaluate(net, trainer.data.test_x, trainer.data.test_y, trainer.norm, bs,  # type: ignore[arg-type]
                   trainer.cfg.predict, trainer.cfg.bf16)
    return float(res["accuracy"])  # type: ignore[arg-type]


def noisy_accuracy(trainer: Any, kind: str, value: float | None, seed: int = 0, heads: bool = True) -> float:
    """Accuracy of a deep copy of the trained net under one draw of noise (value None: no noise)."""
    if kind not in LEVELS:
        raise ConfigError(f"unknown noise kind {kind!r}; choose one of: {', '.join(KINDS)}")
    net = copy.deepcopy(trainer.net)
    g = torch.Generator(device=trainer.device).manual_seed(seed)
    if value is not None:
        if kind == "weight":
            add_weight_noise(net, float(value), g, heads)
        elif kind == "quant":
            quantize_weights(net, int(value), heads)
        else:
            add_activation_noise(net, float(value), g)
    return evaluate_net(trainer, net)


def noise_curve(trainer: Any, kind: str, levels: int = 5, draws: int = 3, seed: int = 0,
                heads: bool = True) -> list[dict[str, Any]]:
    """Rows (level, value, mean, std, accuracies) for level 0..``levels`` of one kind."""
    clean = noisy_accuracy(trainer, kind, None)
    rows = [{"kind": kind, "level": 0, "value": None, "mean_accuracy": clean, "std_accuracy": 0.0,
             "draws": 1, "accuracies": [clean]}]
    for lv in range(1, levels + 1):
        value = LEVELS[kind][lv - 1]
        n = 1 if kind == "quant" else draws  # quantisation is deterministic
        accs = [noisy_accuracy(trainer, kind, value, seed=seed * 1000 + d, heads=heads) for d in range(n)]
        rows.append({"kind": kind, "level": lv, "value": value, "mean_accuracy": statistics.fmean(accs),
                     "std_accuracy": statistics.stdev(accs) if n > 1 else 0.0, "draws": n, "accuracies": accs})
    return rows


def run_noise(run_dirs: list[str | Path], kinds: list[str], levels: int = 5, draws: int = 3, seed: int = 0,
              heads: bool = True, **overrides: Any) -> list[dict[str, Any]]:
    """Noise curves of every run and kind; ``overrides`` go to load_run (limit_test, device, data_dir)."""
    from ..runs import load_run

    for k in kinds:
        if k not in LEVELS:
            raise ConfigError(f"unknown noise kind {k!r}; choose from: {', '.join(KINDS)}")
    if not 1 <= levels <= 5:
        raise ConfigError(f"--levels must be between 1 and 5; got {levels}")
    if draws < 1:
        raise ConfigError(f"--draws must be at least 1; got {draws}")
    results = []
    for d in run_dirs:
        t = load_run(d, compile=False, **{k: v for k, v in overrides.items() if v is not None})
        name = Path(d).resolve().name
        for k in kinds:
            for row in noise_curve(t, k, levels, draws, seed, heads):
                results.append({"run": name, "method": t.cfg.method, **row})
    return results


def plot_noise(results: list[dict[str, Any]], out: Path) -> list[Path]:
    """One figure per kind (DF paper Fig. 4C-E): mean accuracy (+- sd) against level, every run
    overlaid; PNG and PDF."""
    from .figures import pyplot, save, style

    plt = pyplot()
    paths: list[Path] = []
    unit = {"weight": "sigma", "quant": "bits", "activation": "sigma"}
    title = {"weight": "Device variation: w(1 + sigma eps)", "quant": "Limited precision: k-bit weights",
             "activation": "Read noise on layer outputs: + sigma std(a) eps"}
    for kind in dict.fromkeys(r["kind"] for r in results):
        fig, ax = plt.subplots(figsize=(6.5, 4.2))
        rows = [r for r in results if r["kind"] == kind]
        for i, run in enumerate(dict.fromkeys(r["run"] for r in rows)):
            rr = sorted((r for r in rows if r["run"] == run), key=lambda r: r["level"])
            label = run if rr[0]["method"] in run else f"{run} ({rr[0]['method']})"
            ax.errorbar([r["level"] for r in rr], [100 * r["mean_accuracy"] for r in rr],
                        yerr=[100 * r["std_accuracy"] for r in rr], capsize=3, label=label, **style(i))
        lv = sorted({(r["level"], r["value"]) for r in rows}, key=lambda t: t[0])
        ax.set_xticks([v[0] for v in lv])
        ax.set_xticklabels(["0\nclean" if v is None else f"L{n}\n{unit[kind]} {v:g}" for n, v in lv], fontsize=8)
        ax.set_ylabel("test accuracy (%)")
        ax.set_title(title[kind])
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        paths += save(fig, out, f"noise-{kind}")
    return paths


def cmd_noise(args: argparse.Namespace) -> int:
    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    try:
        levels, draws = int(args.levels), int(args.draws)
        limit = None if args.limit_test is None else int(args.limit_test)
    except ValueError:
        raise ConfigError("--levels, --draws and --limit-test must be integers") from None
    results = run_noise(args.run_dirs, kinds, levels, draws, args.seed, heads=not args.spare_heads, limit_test=limit,
                        device=args.device, data_dir=args.data_dir)
    headers = ["run", "method", "kind"] + [f"L{i}" for i in range(levels + 1)]
    table = []
    for run in dict.fromkeys(r["run"] for r in results):
        for k in kinds:
            rr = sorted((r for r in results if r["run"] == run and r["kind"] == k), key=lambda r: r["level"])
            table.append([run, rr[0]["method"], k] + [
                f"{100 * r['mean_accuracy']:.2f}" + (f"±{100 * r['std_accuracy']:.2f}" if r["draws"] > 1 else "")
                for r in rr])
    print("test accuracy (%) under noise, mean±std over draws; levels: "
          + "; ".join(f"{k} {', '.join(f'{v:g}' for v in LEVELS[k][:levels])}" for k in kinds))
    print(format_table(headers, table))
    if args.out:  # figures only where asked for
        for p in plot_noise(results, out_dir(args.out)):
            print(p)
    if args.json:
        write_json({"results": results, "levels": {k: LEVELS[k][:levels] for k in kinds}, "draws": draws,
                    "spare_heads": bool(args.spare_heads)}, args.json)
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("noise", help="accuracy of trained runs under weight, precision and read noise (DF Fig. 4C-E)")
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    p.add_argument("--kinds", default="weight,quant,activation", help="comma-separated: weight, quant, activation")
    p.add_argument("--levels", default="5", help="number of noise levels L1..Ln, 1-5 (default 5)")
    p.add_argument("--draws", default="3", help="random draws per level (default 3)")
    p.add_argument("--seed", type=int, default=0, help="seed of the noise draws")
    add_bool(p, "--spare-heads", "weight and quant noise on the layers only; heads, anchors and label maps stay exact")
    p.add_argument("--limit-test", help="evaluate on the first N test images only (quicker)")
    p.add_argument("--device", help="device to evaluate on (default: the run's)")
    p.add_argument("--data-dir", help="data root (default: the run's)")
    p.add_argument("--json", metavar="FILE", help="write the figures as JSON")
    p.add_argument("--out", metavar="DIR", help="write the noise curves (PNG and PDF) into DIR (default: no figures)")
    p.set_defaults(func=cmd_noise)
