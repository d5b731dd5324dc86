"""``fflearn experiment noise --trace SIGMA``: how a weight perturbation travels up the stack.

The gain (:func:`fflearn.experiments.noise.weight_noise_gain`) says how large the noise that
w(1 + sigma eps) puts on a layer's own pre-activation is; it does not say what the layers above
make of it, and two nets with the same first-layer gain can lose very different accuracy. The
trace follows one draw of weight noise through the net: the clean and the noisy copy see the same
training images, and at every layer l the change of the pre-activation, D = z'_l - z_l, is
measured three ways:

* ``change``: sqrt(sum D^2 / sum_c sum (z_c - mean z_c)^2), the perturbation against the clean
  pre-activation's spread over the data (the gain's units: at the noisy layer itself its
  expectation over draws is sigma * the pooled gain);
* ``shift``: the fraction of sum D^2 that is a constant per channel (each channel's mean of D over
  images and positions): what re-measuring a channel's mean undoes;
* ``affine``: the fraction that a per-channel map a_c + b_c z_c of the clean pre-activation
  explains (least squares): what re-measuring a channel's mean and scale (batch-norm
  recalibration) could undo. The rest moves units of one channel differently from image to image
  and no per-channel statistic can take it back.

A perturbation that grows on its way up (``change`` rising with l) and stays non-affine is one the
net itself amplifies; one that fades, or turns into a per-channel shift, a normalisation or a
recalibration can absorb. Each draw also scores the noisy copy on the test set, so the trace sits
beside the accuracy it costs.

``--probe SIGMA`` asks what the layers above do with *which* perturbation. One draw of weight
noise of SIGMA on layer 0 changes what reaches each later layer k by u = h'_{k-1} - h_{k-1}. Into
the clean net, at the input of layer k, the probe injects three perturbations of that same size
(sample by sample the same norm as u):

* ``noise``: u itself (layers k.. are clean, so at the top this is exactly the noisy net);
* ``random``: an isotropic Gaussian direction;
* ``data``: the direction from the sample's own h_{k-1} towards that of an image of another class
  (a direction the task uses).

and measures, at the last layer, the pre-activation's ``change`` (the trace's units) and the share
of the last layer's predictions that change (``flips``). Layers that ignore what the task does not
need pass ``data`` on and damp ``noise`` and ``random``: their ratio data / noise is large; layers
that treat all directions alike give about 1.
"""

from __future__ import annotations

import copy
import statistics
from typing import Any

import torch
from torch import nn

from ..analog import add_weight_noise


@torch.no_grad()
def pre_activations(net: nn.Module, x: torch.Tensor, labels: torch.Tensor | None = None) -> dict[int, torch.Tensor]:
    """Layer index -> that layer's pre-activation (the output of its linear or conv ``op``) for
    normalised images ``x``, in eval mode; layers without such an op are left out."""
    was = net.training
    net.eval()
    out: dict[int, torch.Tensor] = {}

    def keep(i: int) -> Any:
        return lambda _m, _i, z: out.__setitem__(i, z.detach().float())

    hooks = [layer.op.register_forward_hook(keep(i)) for i, layer in enumerate(net.layers)  # type: ignore[arg-type]
             if isinstance(getattr(layer, "op", None), nn.Conv2d | nn.Linear)]
    try:
        h = net.prepare(x, labels) if net.conditions_input else net.prepare(x)  # type: ignore[operator]
        for layer in net.layers:  # type: ignore[union-attr]
            h = layer(h)
    finally:
        for hk in hooks:
            hk.remove()
        net.train(was)
    return out


def change_profile(clean: torch.Tensor, noisy: torch.Tensor) -> dict[str, float]:
    """``change``, ``shift`` and ``affine`` (module docstring) of one layer's pre-activations,
    (N, C) or (N, C, H, W), clean and noisy."""
    dims = (0,) if clean.dim() == 2 else (0, 2, 3)
    d = noisy - clean
    n = clean.numel() // clean.shape[1]
    zc = clean - clean.mean(dim=dims, keepdim=True)
    dm = d.mean(dim=dims)
    total = (d**2).sum()
    var_z = (zc**2).mean(dim=dims)
    cov = (zc * (d - dm.view([1, -1] + [1] * (d.dim() - 2)))).mean(dim=dims)
    shift = n * (dm**2)
    affine = shift + n * torch.where(var_z > 0, cov**2 / var_z.clamp_min(1e-30), torch.zeros_like(cov))
    tot = float(total)
    return {"change": float((total / (zc**2).sum().clamp_min(1e-30)).sqrt()),
            "shift": float(shift.sum()) / tot if tot > 0 else 0.0,
            "affine": float(affine.sum()) / tot if tot > 0 else 0.0}


def mean_sd(vals: list[float], scale: float = 1.0) -> str:
    """"mean±sd" of ``vals`` times ``scale``, 2 decimals (sd 0 for one value)."""
    sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
    return f"{scale * statistics.fmean(vals):.2f}±{scale * sd:.2f}"


def _per_run(runs: dict[str, list[dict[str, Any]]], key: str, layer: int | None = None) -> list[float]:
    """Each run's mean of ``key`` over its draws (on one traced layer, or over all)."""
    return [statistics.fmean(r[key] for r in mine if layer is None or r["layer"] == layer) for mine in runs.values()]


def trace_table(rows: list[dict[str, Any]]) -> tuple[list[str], list[list[Any]]]:
    """A row per (noisy layers, label): accuracy and, per traced layer, ``change`` (``affine`` %),
    each the mean over the label's runs of the run's mean over draws."""
    traced = sorted({r["layer"] for r in rows})
    groups: dict[tuple[str, str], dict[str, list[dict[str, Any]]]] = {}
    for r in rows:  # (noisy layers, label) -> run -> rows
        groups.setdefault((str(r["layers"]), r["label"]), {}).setdefault(r["run"], []).append(r)
    table = []
    for (_, label), runs in groups.items():
        first = next(iter(runs.values()))[0]
        noisy = "all" if first["layers"] is None else ",".join(map(str, first["layers"]))
        table.append([noisy, label, len(runs), mean_sd(_per_run(runs, "accuracy"), 100)]
                     + [f"{mean_sd(_per_run(runs, 'change', lv))} ({100 * statistics.fmean(_per_run(runs, 'affine', lv)):.0f}%)"
                        for lv in traced])
    return ["noisy", "method", "runs", "accuracy %"] + [f"layer {lv}" for lv in traced], table


@torch.no_grad()
def layer_outputs(net: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    """The input of every layer of a one-pass ``net`` (eval mode, normalised images ``x``): entry k
    is what layer k sees (entry 0 the prepared input), and one more entry, the last layer's output."""
    h = net.prepare(x)  # type: ignore[operator]
    outs = [h]
    for layer in net.layers:  # type: ignore[union-attr]
        h = layer(h)
        outs.append(h)
    return outs


@torch.no_grad()
def run_from(net: nn.Module, h: torch.Tensor, start: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Layers ``start``.. of ``net`` on their input ``h``: (the last layer's pre-activation, the last
    layer's class scores)."""
    from ..models import head_scores

    keep: dict[str, torch.Tensor] = {}
    last = net.layers[-1]  # type: ignore[index]
    hook = last.op.register_forward_hook(lambda _m, _i, z: keep.__setitem__("z", z.detach().float()))  # type: ignore[union-attr]
    try:
        for layer in net.layers[start:]:  # type: ignore[index]
            h = layer(h)
    finally:
        hook.remove()
    return keep["z"], head_scores(net.heads[-1], h, None).float()  # type: ignore[index,arg-type]


def other_class_partner(y: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """For each sample i an index j with y[j] != y[i], drawn uniformly among them (seeded)."""
    diff = (y.view(-1, 1) != y.view(1, -1)).float()
    if bool((diff.sum(1) == 0).any()):
        raise ValueError("--probe needs images of at least two classes")
    return torch.multinomial(diff.cpu(), 1, generator=generator).view(-1).to(y.device)


def _scaled_like(d: torch.Tensor, norms: torch.Tensor) -> torch.Tensor:
    """``d`` rescaled sample by sample to the norms ``norms``."""
    n = d.flatten(1).norm(dim=1).clamp_min(1e-30)
    return d * (norms / n).view([-1] + [1] * (d.dim() - 1))


@torch.no_grad()
def probe_net(net: nn.Module, x: torch.Tensor, y: torch.Tensor, sigma: float, draws: int,
              seed: int = 0) -> list[dict[str, Any]]:
    """Rows (draw, layer k, kind, injected, top, flips) of the probe (module docstring) on the
    one-pass ``net`` for normalised images ``x`` with labels ``y``; draw d's weight noise uses the
    noise curves' seed for draw d, as the trace does."""
    if getattr(net, "conditions_input", False):
        raise ValueError("--probe needs a one-pass net (DF anchors, LCP, BP): this net takes the label "
                         "at its input")
    was = net.training
    net.eval()
    rows = []
    try:
        clean = layer_outputs(net, x)
        z_top, s_top = run_from(net, clean[1], 1)
        pred = s_top.argmax(1)
        g = torch.Generator().manual_seed(seed)
        partner = other_class_partner(y, g)
        for draw in range(draws):
            noisy = copy.deepcopy(net)
            add_weight_noise(noisy, sigma, torch.Generator(device=x.device).manual_seed(seed * 1000 + draw), True, [0])
            outs = layer_outputs(noisy, x)
            for k in range(1, len(clean) - 1):
                base, u = clean[k], outs[k] - clean[k]
                norms = u.flatten(1).norm(dim=1)
                rand = torch.randn(base.shape, generator=g).to(base)
                for kind, d in (("noise", u), ("random", _scaled_like(rand, norms)),
                                ("data", _scaled_like(base[partner] - base, norms))):
                    z, s = run_from(net, base + d, k)
                    rows.append({"draw": draw, "layer": k, "kind": kind,
                                 "injected": change_profile(base.float(), (base + d).float())["change"],
                                 "top": change_profile(z_top, z)["change"],
                                 "flips": float((s.argmax(1) != pred).float().mean())})
    finally:
        net.train(was)
    return rows


def probe_table(rows: list[dict[str, Any]]) -> tuple[list[str], list[list[Any]]]:
    """A row per (label, layer k): the injected change and, per kind, the top's change and the
    share of predictions flipped (mean±sd over the label's runs of each run's mean over draws), and
    data / noise, the ratio of the top's changes."""
    groups: dict[tuple[str, int], dict[str, list[dict[str, Any]]]] = {}
    for r in rows:
        groups.setdefault((r["label"], r["layer"]), {}).setdefault(r["run"], []).append(r)
    def per_run(runs: dict[str, list[dict[str, Any]]], key: str, kind: str) -> list[float]:
        return [statistics.fmean(r[key] for r in mine if r["kind"] == kind) for mine in runs.values()]

    table = []
    for (label, k), runs in groups.items():
        ratio = [d / n if n > 0 else float("inf")
                 for d, n in zip(per_run(runs, "top", "data"), per_run(runs, "top", "noise"), strict=True)]
        table.append([label, k, len(runs), mean_sd(per_run(runs, "injected", "noise"))]
                     + [mean_sd(per_run(runs, "top", kind)) for kind in ("noise", "random", "data")]
                     + [mean_sd(per_run(runs, "flips", kind), 100) for kind in ("noise", "random", "data")]
                     + [mean_sd(ratio)])
    return (["method", "into layer", "runs", "injected", "top: noise", "top: random", "top: data",
             "flips %: noise", "flips %: random", "flips %: data", "data / noise"], table)
