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
"""

from __future__ import annotations

import statistics
from typing import Any

import torch
from torch import nn


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
