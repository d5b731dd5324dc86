"""What CUDA-graph capture of a training step needs, checked on the CPU (issue 22): a step that
reads nothing back to the host and dispatches the same operations on the same shapes every step.
A graph replays fixed kernels on fixed buffers; a host read (``.item()``, a data-dependent shape)
inside the step would either break capture or stall the GPU every step.

The step is run as on a GPU: fused Adam (one kernel per parameter group, its step counter on the
device) and the NaN guard reading the losses once every 32 segments."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch.utils import _pytree as pytree
from torch.utils._python_dispatch import TorchDispatchMode

from fflearn.learner import Learner
from fflearn.methods import make_config
from fflearn.models import build_net
from fflearn.schemes import build_scheme

READS = ("aten._local_scalar_dense", "aten.item", "aten.nonzero", "aten.is_nonzero", "aten.masked_select")


class Trace(TorchDispatchMode):
    """Every dispatched operation with the shapes of its tensor arguments."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: list[tuple[str, tuple[tuple[int, ...], ...]]] = []

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        shapes = tuple(tuple(a.shape) for a in pytree.tree_leaves((args, kwargs)) if isinstance(a, torch.Tensor))
        self.ops.append((str(func.overloadpacket), shapes))
        return func(*args, **(kwargs or {}))


def gpu_like_learner(method: str) -> Learner:
    torch.manual_seed(0)
    cfg = make_config(method=method, model="small", width=0.25, dataset="cifar10")
    learner = Learner(build_net(cfg, (3, 32, 32), 10), build_scheme(cfg), cfg, torch.device("cpu"))
    for k, opt in learner.optimizers.items():  # what Learner builds on CUDA
        learner.optimizers[k] = torch.optim.Adam(opt.param_groups[0]["params"], lr=cfg.lr, fused=True)
    learner.check_every = 32
    return learner


@pytest.mark.parametrize("method", ["df-o", "df-r", "lcp", "bp"])
def test_a_step_reads_nothing_back_and_keeps_its_shapes(method: str) -> None:
    learner = gpu_like_learner(method)
    x, y = torch.rand(16, 3, 32, 32), torch.arange(16) % 10
    stats = learner.new_stats()
    for s in range(2):  # warm-up: the optimisers' state is created on the first step
        learner.step(x, y, s, stats)
    traces = []
    for s in (2, 3):
        with Trace() as t:
            learner.step(x, y, s, stats)
        traces.append(t.ops)
    reads = [op for op in traces[0] + traces[1] if op[0] in READS]
    assert reads == [], reads
    assert traces[0] == traces[1]  # the same kernels on the same shapes: one graph replays every step
    assert len(traces[0]) > 50
    # the NaN guard reads once its segments are full (4 here, to keep the test short), not before
    learner.check_losses()
    learner.check_every = 4
    n_segments = len(learner.scheme.segments(0, len(learner.net.layers)))
    counts = []
    for s in range(4, 4 + 4):
        with Trace() as t:
            learner.step(x, y, s, stats)
        counts.append(sum(op[0] in READS for op in t.ops))
    segments_done = [(k + 1) * n_segments for k in range(4)]
    assert counts == [done // 4 - (done - n_segments) // 4 for done in segments_done]
