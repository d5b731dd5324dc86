"""Peer normalisation: the penalty recomputed by hand, its running state, and its place in training."""

from __future__ import annotations

import pytest
import torch

from fflearn.api import make_config
from fflearn.learner import Learner
from fflearn.models import build_net
from fflearn.regularizers import PeerNormalization
from fflearn.schemes import build_scheme


def test_peer_normalization_by_hand() -> None:
    h = torch.tensor([[1.0, 0.0, 3.0], [3.0, 0.0, 1.0]])  # unit means 2, 0, 2
    running = torch.tensor([1.0, 1.0, 4.0])
    loss = PeerNormalization(0.5, momentum=0.75)(h, running)
    new = [0.75 * 1 + 0.25 * 2, 0.75 * 1 + 0.25 * 0, 0.75 * 4 + 0.25 * 2]  # 1.25, 0.75, 3.5
    avg = sum(new) / 3
    assert loss.item() == pytest.approx(0.5 * sum((avg - a) ** 2 for a in new) / 3)
    assert running.tolist() == pytest.approx(new)  # updated in place, for the next step


def test_peer_normalization_averages_conv_positions() -> None:
    h = torch.zeros(2, 2, 3, 3)
    h[:, 1] = 4.0  # channel 0 silent, channel 1 always on
    running = torch.zeros(2)
    loss = PeerNormalization(1.0, momentum=0.0)(h, running)
    assert running.tolist() == [0.0, 4.0] and loss.item() == pytest.approx(4.0)


def test_peer_normalization_gradient_raises_quiet_units() -> None:
    h = torch.tensor([[0.5, 2.0, 3.5]], requires_grad=True)  # unit 0 below the average activity
    PeerNormalization(1.0, momentum=0.5)(h, torch.tensor([0.5, 2.0, 3.5])).backward()
    assert h.grad is not None
    assert h.grad[0, 0] < 0 < h.grad[0, 2] and h.grad[0, 1] == pytest.approx(0.0)  # descent evens them out


def test_peer_norm_is_part_of_each_layers_local_loss() -> None:
    def first_loss(peer: float) -> float:
        cfg = make_config(method="ff", model="mlp", hidden=[6, 6], peer_norm=peer)
        torch.manual_seed(0)
        net = build_net(cfg, (1, 4, 4), num_classes=3)
        learner = Learner(net, build_scheme(cfg), cfg, torch.device("cpu"))
        g = torch.Generator().manual_seed(0)
        x, y = torch.rand(8, 1, 4, 4, generator=g), torch.randint(0, 3, (8,), generator=g)
        loss = float(learner.step(x, y, 0, generator=torch.Generator().manual_seed(1)))
        if peer:  # the running means moved from zero towards each unit's activity on positives
            assert "layers.1.activity" in net.state_dict()  # checkpointed and restored with the net
            assert net.layers[1].activity.abs().sum() > 0
        return loss

    assert first_loss(10.0) > first_loss(0.0)
