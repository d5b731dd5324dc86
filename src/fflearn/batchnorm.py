"""Batch-norm statistics measured again on clean batches, for a net whose weights changed after
training saw them: a noisy copy on a chip (``fflearn experiment noise --recalibrate-bn``) or the
weights' moving average (``ema``), whose averaged running statistics do not describe the averaged
weights' activations."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


@torch.no_grad()
def recalibrate_bn(net: nn.Module, norm: Any, x: torch.Tensor, y: torch.Tensor, batches: int,
                   batch_size: int = 128, seed: int = 0) -> int:
    """Measure the running statistics of every batch-norm layer in ``net.layers`` again, on
    ``batches`` batches of the uint8 images ``x`` (a seeded random draw, labels ``y``): each
    forgets its statistics and takes the plain average over the batches (momentum None). Returns
    the number of batch-norm layers (0: nothing to do; the net is not run)."""
    bns = [m for m in net.layers.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]  # type: ignore[union-attr,operator]
    if not bns or batches <= 0:
        return 0
    momenta = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average: every batch counts the same
    g = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(y), generator=g)[: batches * batch_size].to(x.device)
    k = int(net.num_classes)  # type: ignore[arg-type]
    was = net.training
    net.train()
    try:
        for idx in order.split(batch_size):
            xb, yb = norm(x[idx]), y[idx]
            if net.conditions_input:  # training's mix: the true label and a wrong one (never the true)
                wrong = (yb + torch.randint(1, k, yb.shape, generator=g).to(yb.device)) % k
                h = net.prepare(torch.cat([xb, xb]), torch.cat([yb, wrong]))  # type: ignore[operator]
            else:
                h = net.prepare(xb)  # type: ignore[operator]
            for layer in net.layers:  # type: ignore[union-attr]
                h = layer(h)
    finally:
        net.train(was)
        for m, momentum in zip(bns, momenta, strict=True):  # training on afterwards keeps its own momentum
            m.momentum = momentum
    return len(bns)
