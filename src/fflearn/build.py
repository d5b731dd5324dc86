"""The one factory: net, learner, normaliser and augmentation from a Config.

The trainer, the pipeline ranks, the experiments and the benches all build through
:func:`build`, so a network measured by ``fflearn experiment memory`` or timed by ``fflearn
bench`` is the network ``fflearn train`` trains. Random initialisation happens here, in a fixed
order (label injection, then each layer and its head), so a seed gives the same weights
whichever entry point builds them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from .data.augment import Augment
from .data.normalize import Normalizer
from .learner import Learner
from .models import Net, build_net, layer_costs
from .schemes import build_scheme


@dataclass
class Parts:
    net: Net
    learner: Learner | None  # None when built for inference only
    norm: Normalizer
    augment: Augment


def build(cfg: Any, in_shape: tuple[int, int, int], num_classes: int, mean: torch.Tensor, std: torch.Tensor,
          device: torch.device, num_train: int | None = None, learner: bool = True) -> Parts:
    """Everything a config describes for images of ``in_shape`` (C, H, W) with per-channel
    statistics ``mean``/``std``; ``num_train``: training-set size (stateful negative samplers)."""
    norm = Normalizer(mean.to(device), std.to(device), cfg.channels_last)
    augment = Augment(crop_padding=cfg.crop, rotation=cfg.rotation, flip=cfg.flip)
    net = build_net(cfg, in_shape, num_classes, norm.pixel_value()).to(device)
    if cfg.channels_last:
        net = net.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    if cfg.compile:
        for layer in net.layers:
            layer.compile()
    scheme = build_scheme(cfg)
    if hasattr(scheme, "set_costs") and getattr(scheme, "partition", "size") == "memory":
        # what a layer holds while its block trains: its saved activations at this batch size and
        # its (and its head's) gradients
        saved = layer_costs(net, in_shape)
        grads = [sum(p.numel() * p.element_size() for p in net.layer_params(i, label=False)) for i in range(len(saved))]
        scheme.set_costs([s * cfg.batch_size for s in saved], grads)
    lrn = Learner(net, scheme, cfg, device, num_train=num_train) if learner else None
    return Parts(net, lrn, norm, augment)
