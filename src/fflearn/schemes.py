"""Update schemes: which layers each local loss trains, and across which layers gradient flows.

A scheme cuts the network into *segments* for every training step. A segment is a run of
consecutive layers whose input is detached: gradient flows inside it and never across its
boundary, its graph is freed by its own backward before the next segment runs, and only the
losses of its ``loss_layers`` are used. That one idea covers:

* ``greedy``: every layer alone (Hinton's FF, SymBa, LCP).
* ``blocks``: blocks of ``size`` layers, each layer's loss counting (DF-O); with ``alternate``
  the boundaries shift by size//2 on odd steps (overlapping pairs); with random feedback the
  signal between layers of a block goes through fixed random matrices (DF-R).
* ``apl``: the Trifecta's alternating pairwise updates: on even steps pairs (0,1), (2,3), ...,
  on odd steps (0), (1,2), (3,4), ...; only the last layer of a pair computes a loss, which trains
  both; the optimiser of layer i holds layers i-1 and i (as the reference code does).
* ``e2e``: one segment over the whole net and one loss at the top (backprop). Heads of the
  other layers are trained as detached linear probes so that per-layer accuracy is defined.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .registry import SCHEMES, construct


@dataclass(frozen=True)
class Segment:
    start: int  # first layer (its input is detached)
    end: int  # one past the last layer
    loss_layers: tuple[int, ...]  # layers whose local loss trains this segment


class Scheme:
    """Base class. ``probes``: train non-loss heads on detached features (e2e only).
    ``counter``: the step count ``segments`` alternates on: ``global`` (steps since the start) or
    ``epoch`` (the batch index within the epoch, restarting at 0 each epoch)."""

    feedback = "backprop"
    probes = False
    counter = "global"

    def segments(self, step: int, n: int) -> list[Segment]:
        raise NotImplementedError

    def optimizer_layers(self, i: int, n: int) -> list[int]:
        """Layers whose parameters the optimiser of layer i holds ([] = layer i has none)."""
        return [i]

    def label_optimizers(self, n: int) -> list[int]:
        """Optimisers that hold the label injection's parameters (the Trifecta's embedding):
        every one that holds layer 0, unless the scheme says otherwise."""
        return [i for i in range(n) if 0 in self.optimizer_layers(i, n)]

    def stepped(self, seg: Segment, n: int) -> list[int]:
        """Optimisers stepped after a segment's backward: those of its loss layers."""
        return list(seg.loss_layers)

    def static(self) -> bool:
        """True when every step uses the same segments (needed by the layer-parallel pipeline)."""
        return True


@SCHEMES.register("greedy")
class Greedy(Scheme):
    def segments(self, step: int, n: int) -> list[Segment]:
        return [Segment(i, i + 1, (i,)) for i in range(n)]


@SCHEMES.register("blocks")
class Blocks(Scheme):
    """Blocks of ``size`` consecutive layers. ``partition: memory`` cuts them by what each layer
    holds while its block trains (``set_costs``: saved activations at the run's batch size plus its
    gradients, measured by the factory): a block never holds more than the heaviest single layer,
    so the heaviest layers stand alone and the others keep blocks of ``size``; a step's peak
    memory is then the single-layer bound of local learning."""

    def __init__(self, size: int = 2, alternate: bool = False, feedback: str = "backprop",
                 partition: str = "size") -> None:
        if partition not in ("size", "memory"):
            raise ValueError(f"block_partition must be size or memory, got {partition!r}")
        if partition == "memory" and alternate:
            raise ValueError("block_partition 'memory' fixes the cuts: it does not combine with alternate")
        self.size = size
        self.alternate = alternate
        self.feedback = feedback
        self.partition = partition
        self.costs: list[list[float]] | None = None

    @classmethod
    def from_config(cls, cfg: Any) -> Blocks:
        return cls(cfg.block_size, cfg.alternate, cfg.feedback, cfg.block_partition)

    def set_costs(self, *costs: list[float]) -> None:
        """One or more per-layer costs (bytes); a block may hold no more of any than the layer
        heaviest in it (the factory gives saved activations and gradients)."""
        self.costs = [list(c) for c in costs]

    def memory_cuts(self, n: int) -> list[int]:
        assert self.costs is not None and all(len(c) == n for c in self.costs), \
            "block_partition 'memory' needs each layer's costs"
        caps = [max(c) for c in self.costs]
        cuts, runs, size = [0], [0.0] * len(caps), 0
        for i in range(n):
            over = any(r + c[i] > cap for r, c, cap in zip(runs, self.costs, caps, strict=True))
            if size and (size == self.size or over):
                cuts.append(i)
                runs, size = [0.0] * len(caps), 0
            runs = [r + c[i] for r, c in zip(runs, self.costs, strict=True)]
            size += 1
        return cuts + [n]

    def segments(self, step: int, n: int) -> list[Segment]:
        if self.partition == "memory":
            cuts = self.memory_cuts(n)
        else:
            offset = self.size // 2 if (self.alternate and step % 2 == 1) else 0
            cuts = sorted({0, n, *range(offset or self.size, n, self.size)})
        return [Segment(a, b, tuple(range(a, b))) for a, b in zip(cuts, cuts[1:], strict=False)]

    # With fixed cuts a block steps as one: one optimiser for its layers, one multi-tensor Adam call
    # per block instead of one per layer (Adam's update is elementwise, so the numbers are the same;
    # on a GPU each call is a handful of kernel launches). Alternating cuts need one per layer.
    def optimizer_layers(self, i: int, n: int) -> list[int]:
        if not self.static():
            return [i]
        seg = next(s for s in self.segments(0, n) if s.start <= i < s.end)
        return list(range(seg.start, seg.end)) if i == seg.start else []

    def stepped(self, seg: Segment, n: int) -> list[int]:
        return list(seg.loss_layers) if not self.static() else [seg.start]

    def static(self) -> bool:
        return not self.alternate or self.size == 1


@SCHEMES.register("apl")
class AlternatingPairs(Scheme):
    """The Trifecta's alternating pairwise updates, as tdooms/trifecta's main.py does them by
    default: the parity is the batch index within the epoch (``apl_parity: epoch``); a last block
    that is the first of an open pair gets no loss and no update on that step
    (``apl_last_alone: false``); the label embedding is held by block 0's optimiser only
    (``apl_label_shared: false``). The other values keep fflearn's earlier behaviour: a global
    step count, the last block trained alone, the embedding also in block 1's optimiser."""

    def __init__(self, apl_parity: str = "epoch", apl_last_alone: bool = False,
                 apl_label_shared: bool = False) -> None:
        if apl_parity not in ("epoch", "global"):
            raise ValueError(f"apl_parity must be epoch or global, got {apl_parity!r}")
        self.counter = apl_parity
        self.last_alone = apl_last_alone
        self.label_shared = apl_label_shared

    def segments(self, step: int, n: int) -> list[Segment]:
        # layer i detaches its output (ends a segment) when (i even) XOR (step even); a pair left
        # open at the top has no loss layer: its layers are not trained (or run) on this step
        segs, start = [], 0
        for i in range(n):
            if ((i % 2 == 0) != (step % 2 == 0)) or (self.last_alone and i == n - 1):
                segs.append(Segment(start, i + 1, (i,)))
                start = i + 1
        return segs

    def optimizer_layers(self, i: int, n: int) -> list[int]:
        return [i - 1, i] if i > 0 else [0]

    def label_optimizers(self, n: int) -> list[int]:
        return [0, 1][:n] if self.label_shared else [0]

    def static(self) -> bool:
        return False


@SCHEMES.register("e2e")
class EndToEnd(Scheme):
    probes = True

    def segments(self, step: int, n: int) -> list[Segment]:
        return [Segment(0, n, (n - 1,))]

    def optimizer_layers(self, i: int, n: int) -> list[int]:
        return list(range(n)) if i == n - 1 else []


def build_scheme(cfg: Any) -> Scheme:
    """The config's update scheme, built by the registries' one rule (a plugin scheme's
    constructor parameters come from the config, as the built-ins' do)."""
    return construct(SCHEMES, cfg.scheme, cfg)
