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
  sigma * std(that output), through forward hooks;
* ``stuck`` (stuck-at faults): a fraction p of the weight array elements is stuck, half at 0
  (an open device) and half at +-max|w| of their array (a saturated one);
* ``adc`` (activation / ADC quantisation): every layer's output is read through a k-bit
  converter: uniform levels between 0 and its largest value (outputs are non-negative, after ReLU);
* ``shot`` (input shot noise): each pixel's intensity in [0, 1] counts N photons at full scale
  and is read as Poisson(N x) / N: fewer photons, more noise;
* ``impulse`` (salt and pepper): a fraction p of the input pixels reads 0 or 1.

``recalibrate_bn`` (a remedy, applied to every method alike): after the noise is in place, every
batch-norm layer of the layer stack forgets its running statistics and measures them again on that
many clean training batches, seen through the noisy net (a chip would re-measure its own
statistics); nets without batch norm are evaluated unchanged. Label-conditioned nets (FF, the
Trifecta) see each image with its label and with a wrong one, as in training.

``weight_noise_gain`` (``--gain``) says where weight noise hurts before any accuracy is measured:
for each layer, how large the noise that w(1 + sigma eps) adds to its pre-activation is against
the pre-activation's own spread over the data, per unit of sigma. For unit c and input x the
added noise is sigma * sum_j eps_cj w_cj x_j, of variance sigma^2 sum_j w_cj^2 x_j^2, so the gain
of unit c is sqrt(E_x[sum_j w_cj^2 x_j^2] / Var_x(z_c)) (exact: the noise enters linearly). It is
large where a unit's inputs are few (a first conv on a grey image has 9) or its weights cancel
(an edge filter on a smooth patch: ``flatness``, (sum_j w_cj)^2 / (n sum_j w_cj^2), is 1 for a
constant filter and 0 for one summing to zero), and it does not change when w is rescaled.
``--trace SIGMA`` follows one such draw up the stack, and ``--probe SIGMA`` compares what the
layers above make of it with what they make of other perturbations of its size
(:mod:`fflearn.experiments.noise_trace`).

``layers`` restricts weight, quant, stuck, activation and adc noise to those layers (one at a
time shows where a method loses accuracy); input noise has no layer. Random kinds: mean and
standard deviation over ``draws`` draws (draw d uses the same random numbers at every level, so
the curves are smooth); the quantisations are deterministic: one evaluation, std 0.
"""

from __future__ import annotations

import argparse
import copy
import statistics
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..analog import add_weight_noise, weight_arrays
from ..batchnorm import recalibrate_bn
from ..cliargs import add_bool
from ..console import format_table
from ..errors import ConfigError
from ..runfolder import write_json
from .figures import out_dir
from .noise_trace import change_profile, mean_sd, pre_activations, probe_net, probe_table, trace_table

LEVELS: dict[str, list[float]] = {
    "weight": [0.05, 0.1, 0.2, 0.3, 0.5],  # sigma of the multiplicative weight noise
    "quant": [8, 6, 4, 3, 2],  # bits
    "activation": [0.05, 0.1, 0.2, 0.3, 0.5],  # sigma, relative to each activation's std
    "stuck": [0.01, 0.02, 0.05, 0.1, 0.2],  # fraction of weights stuck
    "adc": [8, 6, 4, 3, 2],  # bits of the read-out of each layer's output
    "shot": [300, 100, 30, 10, 3],  # photons at full scale
    "impulse": [0.01, 0.02, 0.05, 0.1, 0.2],  # fraction of pixels at 0 or 1
}
KINDS = tuple(LEVELS)
DETERMINISTIC = ("quant", "adc")
INPUT_KINDS = ("shot", "impulse")


@torch.no_grad()
def add_stuck_faults(net: nn.Module, frac: float, generator: torch.Generator, heads: bool = True,
                     layers: list[int] | None = None) -> None:
    """A fraction ``frac`` of every weight array's elements stuck: half at 0, half at +-max|w|."""
    for p in weight_arrays(net, heads, layers):
        u = torch.rand(p.shape, generator=generator, device=p.device)
        top = p.abs().max()
        sign = torch.where(torch.rand(p.shape, generator=generator, device=p.device) < 0.5, -1.0, 1.0).to(p.dtype)
        p.copy_(torch.where(u < frac / 2, torch.zeros_like(p), torch.where(u < frac, sign * top, p)))


def add_adc(net: nn.Module, bits: int, layers: list[int] | None = None) -> list[Any]:
    """Forward hooks reading every (or each listed) layer's output through a ``bits``-bit converter."""
    if bits < 1:
        raise ConfigError(f"an ADC needs at least 1 bit; got {bits}")
    levels = 2**bits - 1

    def hook(_: nn.Module, __: Any, out: torch.Tensor) -> torch.Tensor:
        top = out.detach().amax().clamp_min(1e-12)
        return torch.round(out / top * levels) / levels * top

    chosen = range(len(net.layers)) if layers is None else layers  # type: ignore[arg-type]
    return [net.layers[i].register_forward_hook(hook) for i in chosen]  # type: ignore[index,union-attr]


def input_noise(kind: str, value: float, generator: torch.Generator) -> Any:
    """A function of uint8 images (B, C, H, W) -> the same images with shot or impulse noise, as floats
    on the 0..255 scale (what the run's normaliser takes)."""

    def noisy(xb: torch.Tensor) -> torch.Tensor:
        x = xb.float() / 255
        if kind == "shot":
            x = torch.poisson(x * value, generator=generator) / value
        else:
            u = torch.rand(x.shape, generator=generator, device=x.device)
            x = torch.where(u < value / 2, torch.zeros_like(x), torch.where(u < value, torch.ones_like(x), x))
        return x.clamp(0, 1) * 255

    return noisy


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


def quantize_weights(net: nn.Module, bits: int, heads: bool = True, layers: list[int] | None = None) -> None:
    for p in weight_arrays(net, heads, layers):
        quantize_(p.data, bits)


def add_activation_noise(net: nn.Module, sigma: float, generator: torch.Generator,
                         layers: list[int] | None = None) -> list[Any]:
    """Forward hooks adding N(0, (sigma * std(out))^2) to every (or each listed) layer's output."""

    def hook(_: nn.Module, __: Any, out: torch.Tensor) -> torch.Tensor:
        eps = torch.randn(out.shape, generator=generator, device=out.device, dtype=out.dtype)
        return out + sigma * out.detach().float().std().to(out.dtype) * eps

    chosen = range(len(net.layers)) if layers is None else layers  # type: ignore[arg-type]
    return [net.layers[i].register_forward_hook(hook) for i in chosen]  # type: ignore[index,union-attr]


@torch.no_grad()
def weight_noise_gain(net: nn.Module, x: torch.Tensor, labels: torch.Tensor | None = None) -> list[dict[str, Any]]:
    """Per layer of ``net`` (eval mode, normalised images ``x``, ``labels`` for label-conditioned
    nets): the gain of weight noise on its pre-activation (module docstring), ``pooled`` =
    sqrt(sum_c noise_c / sum_c Var z_c) (dead units cannot dominate it) and ``median`` over units,
    with the layer's fan-in and the units' mean ``flatness``. Layers without a linear or conv ``op`` are left out."""
    was = net.training
    net.eval()
    rows = []
    try:
        h = net.prepare(x, labels) if net.conditions_input else net.prepare(x)  # type: ignore[operator]
        for i, layer in enumerate(net.layers):  # type: ignore[union-attr,arg-type]
            op = getattr(layer, "op", None)
            if isinstance(op, nn.Conv2d | nn.Linear):
                xi, w = layer.norm(h).float(), op.weight.float()
                dims: tuple[int, ...] = (0,)
                if isinstance(op, nn.Conv2d):
                    z, noise, dims = op._conv_forward(xi, w, None), op._conv_forward(xi**2, w**2, None), (0, 2, 3)
                else:
                    z, noise = xi @ w.T, (xi**2) @ (w**2).T
                var, nm = z.var(dim=dims), noise.mean(dim=dims)
                wf = w.flatten(1)
                flat = wf.sum(1) ** 2 / (wf.shape[1] * (wf**2).sum(1)).clamp_min(1e-12)
                rows.append({"layer": i, "fan_in": wf.shape[1], "pooled": float((nm.sum() / var.sum()).sqrt()),
                             "median": float((nm / var.clamp_min(1e-12)).sqrt().median()),
                             "flatness": float(flat.mean())})
            h = layer(h)
    finally:
        net.train(was)
    return rows


def run_gain(t: Any, images: int = 1024, seed: int = 0) -> list[dict[str, Any]]:
    """:func:`weight_noise_gain` of the loaded run ``t`` on a seeded draw of ``images`` of the
    images it trained on (never test)."""
    return weight_noise_gain(t.net, *train_images(t, images, seed))


def train_images(t: Any, images: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A seeded draw of ``images`` of the loaded run ``t``'s training images, normalised, with labels."""
    x, y = t.split("train")
    idx = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))[:images].to(x.device)
    return t.norm(x[idx]), y[idx]


def trace_run(t: Any, sigma: float, layers: list[int] | None, draws: int, seed: int = 0,
              heads: bool = True, images: int = 1024) -> list[dict[str, Any]]:
    """Rows (draw, accuracy, layer, change, shift, affine) for ``draws`` draws of weight noise of
    ``sigma`` on ``layers`` (None: all) of the loaded run ``t``, traced on a seeded draw of
    ``images`` of its training images; draw d uses the noise seed of the noise curves' draw d."""
    xb, yb = train_images(t, images, seed)
    clean = pre_activations(t.net, xb, yb)
    rows = []
    for draw in range(draws):
        net = copy.deepcopy(t.net)
        add_weight_noise(net, sigma, torch.Generator(device=t.device).manual_seed(seed * 1000 + draw), heads, layers)
        acc = evaluate_net(t, net)
        noisy = pre_activations(net, xb, yb)
        rows += [{"draw": draw, "accuracy": acc, "layer": i, **change_profile(c, noisy[i])} for i, c in clean.items()]
    return rows


def probe_run(t: Any, sigma: float, draws: int, seed: int = 0, images: int = 1024) -> list[dict[str, Any]]:
    """:func:`fflearn.experiments.noise_trace.probe_net` of the loaded run ``t`` on the trace's
    seeded draw of ``images`` of its training images."""
    try:
        return probe_net(t.net, *train_images(t, images, seed), sigma, draws, seed)
    except ValueError as e:
        raise ConfigError(f"{e} (run {t.cfg.method})") from None


def gain_table(rows: list[dict[str, Any]]) -> tuple[list[str], list[list[Any]]]:
    """A row per method (label): pooled gain mean±sd over its runs, per layer."""
    layers = sorted({r["layer"] for r in rows})
    table = []
    for label in dict.fromkeys(r["label"] for r in rows):
        mine = [r for r in rows if r["label"] == label]
        cells = []
        for lv in layers:
            g = [r["pooled"] for r in mine if r["layer"] == lv]
            cells.append("-" if not g else mean_sd(g))
        table.append([label, len({r["run"] for r in mine})] + cells)
    return ["method", "runs"] + [f"layer {lv}" for lv in layers], table


def evaluate_net(trainer: Any, net: nn.Module, corrupt: Any = None) -> float:
    """Test accuracy of ``net`` on the run's test set, exactly as the trainer evaluates its own net;
    ``corrupt``: a function applied to the uint8 images before normalisation (input noise)."""
    from ..predict import eval_batch_size, evaluate

    norm = trainer.norm if corrupt is None else (lambda xb: trainer.norm(corrupt(xb)))
    res = evaluate(net, trainer.data.test_x, trainer.data.test_y, norm, eval_batch_size(net),  # type: ignore[arg-type]
                   trainer.cfg.predict, trainer.cfg.bf16, trainer.cfg.test_aug)
    return float(res["accuracy"])  # type: ignore[arg-type]


def noisy_accuracy(trainer: Any, kind: str, value: float | None, seed: int = 0, heads: bool = True,
                   layers: list[int] | None = None, recalibrate: int = 0,
                   train: tuple[torch.Tensor, torch.Tensor] | None = None) -> float:
    """Accuracy of a deep copy of the trained net under one draw of noise (value None: no noise);
    ``recalibrate``: batch-norm statistics measured again on that many clean training batches of
    ``train`` (images, labels; default: the run's training split, drawn again on every call)."""
    if kind not in LEVELS:
        raise ConfigError(f"unknown noise kind {kind!r}; choose one of: {', '.join(KINDS)}")
    net = copy.deepcopy(trainer.net)
    g = torch.Generator(device=trainer.device).manual_seed(seed)
    corrupt = None
    if value is not None:
        if kind == "weight":
            add_weight_noise(net, float(value), g, heads, layers)
        elif kind == "quant":
            quantize_weights(net, int(value), heads, layers)
        elif kind == "stuck":
            add_stuck_faults(net, float(value), g, heads, layers)
        elif kind == "adc":
            add_adc(net, int(value), layers)
        elif kind == "activation":
            add_activation_noise(net, float(value), g, layers)
        else:
            corrupt = input_noise(kind, float(value), g)
    if recalibrate:
        x, y = train if train is not None else trainer.split("train")
        recalibrate_bn(net, trainer.norm, x, y, recalibrate, trainer.cfg.batch_size, seed)
    return evaluate_net(trainer, net, corrupt)


def noise_curve(trainer: Any, kind: str, levels: int = 5, draws: int = 3, seed: int = 0,
                heads: bool = True, layers: list[int] | None = None, recalibrate: int = 0) -> list[dict[str, Any]]:
    """Rows (level, value, mean, std, accuracies) for level 0..``levels`` of one kind (level 0 is
    recalibrated too, so a remedy's own cost on the clean net shows)."""
    train = trainer.split("train") if recalibrate else None  # once per curve, not per evaluation
    clean = noisy_accuracy(trainer, kind, None, recalibrate=recalibrate, train=train)
    rows = [{"kind": kind, "level": 0, "value": None, "mean_accuracy": clean, "std_accuracy": 0.0,
             "draws": 1, "accuracies": [clean]}]
    for lv in range(1, levels + 1):
        value = LEVELS[kind][lv - 1]
        n = 1 if kind in DETERMINISTIC else draws
        accs = [noisy_accuracy(trainer, kind, value, seed=seed * 1000 + d, heads=heads, layers=layers,
                               recalibrate=recalibrate, train=train) for d in range(n)]
        rows.append({"kind": kind, "level": lv, "value": value, "mean_accuracy": statistics.fmean(accs),
                     "std_accuracy": statistics.stdev(accs) if n > 1 else 0.0, "draws": n, "accuracies": accs})
    return rows


def run_noise(run_dirs: list[str | Path], kinds: list[str], levels: int = 5, draws: int = 3, seed: int = 0,
              heads: bool = True, layer_sets: list[list[int] | None] | None = None, recalibrate: int = 0,
              gain: bool = False, trace: float | None = None, probe: float | None = None,
              **overrides: Any) -> tuple[list[dict[str, Any]], ...]:
    """Noise curves of every run, kind and set of noisy layers (``layer_sets``: default [None], all
    at once; each row says its ``layers``), with ``gain`` each run's :func:`run_gain` rows, and with
    ``trace`` (a sigma) the :func:`trace_run` rows of weight noise of that sigma on each layer set,
    ``draws`` draws, and with ``probe`` (a sigma) the :func:`probe_run` rows; every run is loaded
    once; returns (curves, gain, trace, probe) rows. ``overrides`` go to load_run (limit_test, device,
    data_dir). A run's ``label`` is its folder's name, or the folder above for the seeds of one
    setting (``.../df-o/seed1`` -> ``df-o``): runs with one label are averaged as seeds of one method."""
    from ..runs import load_run

    for k in kinds:
        if k not in LEVELS:
            raise ConfigError(f"unknown noise kind {k!r}; choose from: {', '.join(KINDS)}")
    if not 1 <= levels <= 5:
        raise ConfigError(f"--levels must be between 1 and 5; got {levels}")
    if draws < 1:
        raise ConfigError(f"--draws must be at least 1; got {draws}")
    if recalibrate < 0:
        raise ConfigError(f"--recalibrate-bn takes a number of batches, 0 or more; got {recalibrate}")
    if trace is not None and not trace > 0:
        raise ConfigError(f"--trace takes the sigma of the weight noise to follow, above 0; got {trace}")
    if probe is not None and not probe > 0:
        raise ConfigError(f"--probe takes the sigma of the weight noise on layer 0, above 0; got {probe}")
    results, gains, traces, probes = [], [], [], []
    for d in run_dirs:
        t = load_run(d, compile=False, **{k: v for k, v in overrides.items() if v is not None})
        path = Path(d).resolve()
        who = {"run": str(path), "label": path.parent.name if path.name.startswith("seed") else path.name,
               "method": t.cfg.method}
        if gain:
            gains += [{**who, **r} for r in run_gain(t, seed=seed)]
        if probe is not None:
            probes += [{**who, "sigma": probe, **r} for r in probe_run(t, probe, draws, seed)]
        for layers in layer_sets or [None]:
            if trace is not None:
                traces += [{**who, "layers": layers, "sigma": trace, **row}
                           for row in trace_run(t, trace, layers, draws, seed, heads)]
            for k in kinds:
                results += [{**who, **row, "layers": layers}
                            for row in noise_curve(t, k, levels, draws, seed, heads, layers, recalibrate)]
    return results, gains, traces, probes


def plot_noise(results: list[dict[str, Any]], out: Path) -> list[Path]:
    """One figure per kind (DF paper Fig. 4C-E): mean accuracy (+- sd) against level, every run
    overlaid; PNG and PDF."""
    from .figures import pyplot, save, style

    plt = pyplot()
    paths: list[Path] = []
    unit = {"weight": "sigma", "quant": "bits", "activation": "sigma", "stuck": "p", "adc": "bits",
            "shot": "photons", "impulse": "p"}
    title = {"weight": "Device variation: w(1 + sigma eps)", "quant": "Limited precision: k-bit weights",
             "activation": "Read noise on layer outputs: + sigma std(a) eps",
             "stuck": "Stuck-at faults: a fraction p of the weights at 0 or +-max",
             "adc": "Read-out (ADC) precision: k-bit layer outputs", "shot": "Input shot noise: Poisson(N x) / N",
             "impulse": "Impulse noise: a fraction p of the pixels at 0 or 1"}
    for kind in dict.fromkeys(r["kind"] for r in results):
        fig, ax = plt.subplots(figsize=(6.5, 4.2))
        rows = [r for r in results if r["kind"] == kind]
        for i, row in enumerate(by_method(rows)):  # mean and sd over each method's runs (seeds)
            n = row["runs"]
            ax.errorbar(row["levels"], [100 * m for m in row["mean"]], yerr=[100 * s for s in row["sd"]],
                        capsize=3, label=f"{row['method']} ({n} run{'s' if n > 1 else ''})", **style(i))
        lv = sorted({(r["level"], r["value"]) for r in rows}, key=lambda t: t[0])
        ax.set_xticks([v[0] for v in lv])
        ax.set_xticklabels(["0\nclean" if v is None else f"L{n}\n{unit[kind]} {v:g}" for n, v in lv], fontsize=8)
        ax.set_ylabel("test accuracy (%)")
        ax.set_title(title[kind])
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        paths += save(fig, out, f"noise-{kind}")
    return paths


def by_method(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One kind's rows -> per method: the levels, the mean over its runs of each run's mean accuracy
    and their sd (the spread between trained seeds; one run: the spread between noise draws)."""
    out = []
    for method in dict.fromkeys(r.get("label", r["method"]) for r in rows):
        mine = [r for r in rows if r.get("label", r["method"]) == method]
        runs = list(dict.fromkeys(r["run"] for r in mine))
        levels = sorted({r["level"] for r in mine})
        mean, sd = [], []
        for lv in levels:
            accs = [r["mean_accuracy"] for r in mine if r["level"] == lv]
            mean.append(statistics.fmean(accs))
            sd.append(statistics.stdev(accs) if len(accs) > 1 else
                      next(r["std_accuracy"] for r in mine if r["level"] == lv))
        out.append({"method": method, "runs": len(runs), "levels": levels, "mean": mean, "sd": sd})
    return out


def summary_table(results: list[dict[str, Any]], layer_sets: list[list[int] | None], kinds: list[str],
                  levels: int) -> tuple[list[str], list[list[Any]]]:
    """The printed table: a row per (layers, method, kind), "mean±sd" (%) at each level."""
    headers = ["layers", "method", "runs", "kind"] + [f"L{i}" for i in range(levels + 1)]
    table = []
    for layers in layer_sets:
        for k in kinds:
            rows = [r for r in results if r["kind"] == k and r["layers"] == layers]
            for row in by_method(rows):
                table.append(["all" if layers is None else ",".join(map(str, layers)), row["method"], row["runs"], k]
                             + [f"{100 * m:.2f}±{100 * s:.2f}" for m, s in zip(row["mean"], row["sd"], strict=True)])
    return headers, table


def cmd_noise(args: argparse.Namespace) -> int:
    from ..runtime import set_threads

    set_threads(args.threads)
    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    try:
        levels, draws, recal = int(args.levels), int(args.draws), int(args.recalibrate_bn)
        limit = None if args.limit_test is None else int(args.limit_test)
    except ValueError:
        raise ConfigError("--levels, --draws, --recalibrate-bn and --limit-test must be integers") from None
    from ..cliargs import list_value

    layer_sets: list[list[int] | None] = [None]
    if args.layers:
        try:
            layer_sets = [[int(v)] for v in list_value(args.layers)]
        except ValueError:
            raise ConfigError(f"--layers takes layer numbers, e.g. 0,1,2; got {args.layers!r}") from None
    try:
        trace = None if args.trace is None else float(args.trace)
    except ValueError:
        raise ConfigError(f"--trace takes a sigma, e.g. 0.5; got {args.trace!r}") from None
    try:
        probe = None if args.probe is None else float(args.probe)
    except ValueError:
        raise ConfigError(f"--probe takes a sigma, e.g. 0.5; got {args.probe!r}") from None
    if not kinds and not args.gain and trace is None and probe is None:
        raise ConfigError("--kinds is empty: name at least one noise kind, or ask for --gain, --trace or --probe alone")
    results, gain, traced, probed = run_noise(
        args.run_dirs, kinds, levels, draws, args.seed, heads=not args.spare_heads, layer_sets=layer_sets,
        recalibrate=recal, gain=bool(args.gain), trace=trace, probe=probe,
        limit_test=limit, device=args.device, data_dir=args.data_dir)
    if args.gain:
        g_headers, g_table = gain_table(gain)
        print("weight-noise gain of each layer's pre-activation (noise std / signal std per unit of sigma; "
              "mean±sd over each method's runs; 1,024 training images)")
        print(format_table(g_headers, g_table))
    if trace is not None:
        t_headers, t_table = trace_table(traced)
        print(f"weight noise sigma {trace:g} traced up the stack: test accuracy and, per layer, the change of its "
              "pre-activation against its spread (its affine part, %); mean±sd over each method's runs, "
              f"{draws} draws each, 1,024 training images")
        print(format_table(t_headers, t_table))
    if probe is not None:
        p_headers, p_table = probe_table(probed)
        print(f"weight noise sigma {probe:g} on layer 0, probed: what reaches a layer (noise), a random direction "
              "and another class's direction (data) of the same size injected there into the clean net; the "
              "last layer's pre-activation change and the predictions it flips; mean±sd over each method's runs, "
              f"{draws} draws each, 1,024 training images")
        print(format_table(p_headers, p_table))
    headers, table = summary_table(results, layer_sets, kinds, levels)
    if kinds:
        print("test accuracy (%) under noise: mean±sd over each method's runs (one run: over noise draws)"
              + (f"; batch norm recalibrated on {recal} clean batches" if recal else "") + "; levels: "
              + "; ".join(f"{k} {', '.join(f'{v:g}' for v in LEVELS[k][:levels])}" for k in kinds))
        print(format_table(headers, table))
    if args.out and results:  # figures only where asked for
        for p in plot_noise([r for r in results if r["layers"] is None] or results, out_dir(args.out)):
            print(p)
    if args.json:
        summary = [dict(zip(headers, row, strict=True)) for row in table]
        write_json({"table": summary, "results": results, "levels": {k: LEVELS[k][:levels] for k in kinds},
                    "draws": draws, "spare_heads": bool(args.spare_heads), "recalibrate_bn": recal,
                    **({"gain": gain, "gain_table": [dict(zip(g_headers, row, strict=True)) for row in g_table]}
                       if args.gain else {}),
                    **({"trace": traced, "trace_table": [dict(zip(t_headers, row, strict=True)) for row in t_table]}
                       if trace is not None else {}),
                    **({"probe": probed, "probe_table": [dict(zip(p_headers, row, strict=True)) for row in p_table]}
                       if probe is not None else {})}, args.json)
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("noise", help="accuracy of trained runs under weight, precision and read noise (DF Fig. 4C-E)")
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    p.add_argument("--kinds", default="weight,quant,activation",
                   help="comma-separated: " + ", ".join(KINDS) + " (default weight,quant,activation)")
    p.add_argument("--layers", help="noise one layer at a time: the layers to try, e.g. 0,1,2,3,4,5 (default: all at once)")
    p.add_argument("--levels", default="5", help="number of noise levels L1..Ln, 1-5 (default 5)")
    p.add_argument("--draws", default="3", help="random draws per level (default 3)")
    p.add_argument("--seed", type=int, default=0, help="seed of the noise draws")
    p.add_argument("--recalibrate-bn", default="0", metavar="N",
                   help="remedy: batch-norm statistics measured again on N clean training batches after the "
                        "noise is applied, for every method alike (default 0: off)")
    add_bool(p, "--gain", "also print each layer's weight-noise gain (noise / signal of its pre-activation per "
             "unit of sigma, on the run's training images); with --kinds '' only that")
    p.add_argument("--trace", metavar="SIGMA", help="follow weight noise of SIGMA (on --layers, one at a time) up "
                   "the stack: each layer's pre-activation change and how much of it is affine per channel; "
                   "with --kinds '' only that")
    p.add_argument("--probe", metavar="SIGMA", help="weight noise of SIGMA on layer 0: inject what reaches each "
                   "later layer, a random direction and another class's direction of the same size there, and "
                   "compare what the top makes of each (one-pass nets); with --kinds '' only that")
    add_bool(p, "--spare-heads", "weight and quant noise on the layers only; heads, anchors and label maps stay exact")
    p.add_argument("--limit-test", help="evaluate on the first N test images only (quicker)")
    p.add_argument("--device", help="device to evaluate on (default: the run's)")
    p.add_argument("--data-dir", help="data root (default: the run's)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (default 0: torch's choice)")
    p.add_argument("--json", metavar="FILE", help="write the figures as JSON")
    p.add_argument("--out", metavar="DIR", help="write the noise curves (PNG and PDF) into DIR (default: no figures)")
    p.set_defaults(func=cmd_noise)
