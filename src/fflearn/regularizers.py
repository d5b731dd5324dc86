"""Activity regularisers added to a layer's local loss.

Peer normalisation (Hinton 2022, section 3.3 of "The Forward-Forward Algorithm"): each hidden
unit keeps a running mean of its activity on positive data, and the layer is penalised by the
spread of those means around their average, so every unit stays in use. Without it the FF
threshold loss can be met by a handful of very active units: measured on the 3x1000 MLP on
MNIST, FF's second layer had 1.1% of its units active after 3 epochs, and the length
normalisation then handed the third layer a vector of a dozen huge values (23% accuracy).
"""

from __future__ import annotations

import torch


class PeerNormalization:
    """``weight`` * mean_u (mean_v a_v - a_u)^2, with a_u the running mean activity of unit u.

    The running mean (``momentum`` per step) is a buffer of the layer, so it is saved with the
    network and restored on resume; the newest batch's share of it carries the gradient.
    Units are features of an MLP layer or channels of a conv layer (averaged over positions).
    """

    def __init__(self, weight: float, momentum: float = 0.9) -> None:
        self.weight = weight
        self.momentum = momentum

    def __call__(self, h_pos: torch.Tensor, running: torch.Tensor) -> torch.Tensor:
        dims = [0, *range(2, h_pos.dim())]  # all but the unit (channel) axis
        mean = h_pos.float().mean(dims)
        new = self.momentum * running + (1 - self.momentum) * mean
        running.copy_(new.detach())
        return self.weight * (new.mean() - new).pow(2).mean()
