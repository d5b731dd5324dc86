"""What an analog chip would hold, and noise on it: the weight arrays, device variation on them,
and noise-aware training.

* :func:`weight_arrays`: the parameters hardware noise applies to (matrices and kernels; not
  biases or normalisation parameters, which would live in digital periphery);
* :func:`add_weight_noise`: device variation, w <- w (1 + sigma eps), eps ~ N(0, 1) per element;
* :class:`NoisyWeights`: noise-aware training (as in the analog in-memory computing literature,
  e.g. Joshi et al. 2020): one training step's forward and backward passes see a fresh draw of
  w (1 + sigma eps), and the update the optimisers make is moved onto the clean weights, so the
  gradient is taken at the noisy weights and the clean ones learn. The experiment
  ``fflearn experiment noise`` measures the same noise on trained nets.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

NORM_MODULES = (nn.LayerNorm, nn.GroupNorm, nn.modules.batchnorm._BatchNorm, nn.modules.instancenorm._InstanceNorm)


def weight_arrays(net: nn.Module, heads: bool = True, layers: list[int] | None = None) -> list[nn.Parameter]:
    """The parameters noise applies to: those with two or more dimensions (matrices, kernels),
    except normalisation parameters, whatever their shape (a conv net's layer norm holds a 3-D
    gain and bias, one per channel and position: digital periphery, like batch norm's 1-D ones);
    ``heads=False`` spares the heads (anchors, classifiers) and the label embedding, so only the
    layers' arrays are noisy; ``layers``: only those layers (and their heads, unless spared)."""
    spared = {id(p) for m in net.modules() if isinstance(m, NORM_MODULES) for p in m.parameters()}
    spared |= {id(p) for layer in net.layers for p in getattr(layer, "norm", nn.Identity()).parameters()}  # type: ignore[union-attr]
    if layers is not None:
        mods: list[Any] = [m for i in layers for m in ([net.layers[i]] + ([net.heads[i]] if heads else []))]  # type: ignore[index]
        src = [p for m in mods for p in m.parameters()]
    else:
        src = list(net.parameters() if heads else net.layers.parameters())  # type: ignore[union-attr,operator]
    return [p for p in src if p.dim() >= 2 and id(p) not in spared]


@torch.no_grad()
def add_weight_noise(net: nn.Module, sigma: float, generator: torch.Generator | None, heads: bool = True,
                     layers: list[int] | None = None) -> None:
    """w <- w * (1 + sigma * eps) for every weight array, in place (use on a copy)."""
    for p in weight_arrays(net, heads, layers):
        eps = torch.randn(p.shape, generator=generator, device=p.device, dtype=p.dtype)
        p.mul_(1 + sigma * eps)


class NoisyWeights:
    """``with NoisyWeights(net, sigma, generator): <one training step>``: inside, every weight
    array of ``net`` is w (1 + sigma eps) (a fresh draw); on leaving, each becomes
    w_clean + (w_after - w_noisy): the clean weights plus the step's update. Adam's update does
    not depend on the weights' values, so this is the step taken at the noisy weights applied to
    the clean ones. ``sigma`` 0: nothing happens."""

    def __init__(self, net: nn.Module, sigma: float, generator: torch.Generator | None = None) -> None:
        self.arrays = weight_arrays(net) if sigma > 0 else []
        self.sigma, self.generator = sigma, generator
        self.noise: list[torch.Tensor] = []

    @torch.no_grad()
    def __enter__(self) -> NoisyWeights:
        # the noise w * sigma * eps is kept (not the clean weights): leaving subtracts it again
        self.noise = [p * (self.sigma * torch.randn(p.shape, generator=self.generator, device=p.device,
                                                    dtype=p.dtype)) for p in self.arrays]
        for p, d in zip(self.arrays, self.noise, strict=True):
            p.add_(d)
        return self

    @torch.no_grad()
    def __exit__(self, *exc: object) -> None:
        for p, d in zip(self.arrays, self.noise, strict=True):
            p.sub_(d)
        self.noise = []
