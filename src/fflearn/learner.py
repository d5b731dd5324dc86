"""One training step of any method: build the labelled batch, run the scheme's segments.

For each segment: forward from a detached input, each loss layer's local loss, one backward
inside the segment, step the owning optimisers, free the graph, go on. No graph ever spans two
segments, so peak memory is that of the largest segment (the memory benefit of local learning).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from .analog import NoisyWeights
from .errors import ConfigError, TrainingError
from .models import Net, by_sample, head_scores
from .negatives import pos_neg
from .registry import LOSSES, NEGATIVES, construct
from .regularizers import PeerNormalization
from .runtime import autocast
from .schemes import Scheme, Segment


def build_loss(cfg: Any) -> Any:
    """The config's local loss, built by the registries' one rule."""
    return construct(LOSSES, cfg.loss, cfg)


def build_negatives(cfg: Any, num_classes: int, num_train: int | None, device: torch.device) -> Any:
    """The config's negative sampler: a function, or a stateful sampler object (negatives.Sampler)."""
    if num_train is None and getattr(NEGATIVES.get(cfg.negatives), "needs_indices", False):
        raise ConfigError(f"negatives {cfg.negatives!r} keeps state per training sample: this entry point "
                          "does not give the samples' indices; use negatives 'one' or 'all'")
    return construct(NEGATIVES, cfg.negatives, cfg, num_classes=num_classes, num_train=num_train or 0, device=device)


class StepStats:
    """Per-layer sums over an epoch (kept on the device, read once): loss, positive and negative
    goodness, the share of support pairs (pairs inside the loss's margin, DF's support points;
    losses without a margin leave it empty) and the number of samples seen.

    ``add`` only records a layer's tensors; ``flush`` (the learner calls it once per step) sums
    them into the totals with a dozen whole-step kernels. Accumulating layer by layer took ~33
    small operations per layer, a third of a BP step's operations: on a GPU, where a step of the
    conv nets is bound by kernel launches, every one of them costs about as much as a convolution."""

    ROWS = ("loss", "g_pos", "g_neg", "support", "n_loss")

    def __init__(self, n_layers: int, device: torch.device | str = "cpu", margin: float | None = None) -> None:
        self.n_layers = n_layers
        self.margin = margin
        self.sums = torch.zeros(len(self.ROWS), n_layers, dtype=torch.float64, device=device)
        self.count = torch.zeros(n_layers, dtype=torch.float64, device=device)
        self._rows: list[tuple[int, torch.Tensor, torch.Tensor, torch.Tensor | None]] = []
        # (layers, which have a loss) -> (index tensor, loss mask) on the device: a step's pattern
        # repeats (APL alternates two), so no per-step host-to-device copy
        self._patterns: dict[tuple[tuple[int, ...], tuple[bool, ...]], tuple[torch.Tensor, torch.Tensor]] = {}

    def add(self, i: int, g_pos: torch.Tensor, g_neg: torch.Tensor, loss: torch.Tensor | None) -> None:
        """Record layer ``i``'s positive goodness (B,), negative goodness (B, M) and mean loss
        (None for a layer scored for the metrics only); summed in by the next ``flush``."""
        self._rows.append((i, g_pos, g_neg, loss))

    def flush(self) -> None:
        rows, self._rows = self._rows, []
        if not rows:
            return
        b = len(rows[0][1])
        key = (tuple(r[0] for r in rows), tuple(r[3] is not None for r in rows))
        if key not in self._patterns:
            dev = self.sums.device
            self._patterns[key] = (torch.tensor(key[0], device=dev),
                                   torch.tensor(key[1], dtype=torch.float64, device=dev))
        idx, has_loss = self._patterns[key]
        pos = torch.stack([r[1] for r in rows]).float()  # (L, B)
        zero = pos.new_zeros(())
        loss = torch.stack([zero if r[3] is None else r[3].float() for r in rows])
        if len({r[2].shape for r in rows}) == 1:  # the usual case: the layers share the batch's negatives
            negs = torch.stack([r[2] for r in rows]).float()  # (L, B, M): one kernel per statistic
            neg = negs.mean(2).sum(1)
            inside = None if self.margin is None else (pos.unsqueeze(2) - negs < self.margin).double().mean((1, 2))
        else:
            neg = torch.stack([r[2].float().mean(1).sum() for r in rows])
            inside = None if self.margin is None else torch.stack(
                [(r[1].float().unsqueeze(1) - r[2].float() < self.margin).double().mean() for r in rows])
        support = torch.zeros_like(has_loss) if inside is None else inside * b
        vals = torch.stack([loss.double() * b, pos.sum(1).double(), neg.double(), support, has_loss * b])
        self.sums.index_add_(1, idx, vals)
        self.count.index_add_(0, idx, torch.full_like(has_loss, b))

    def summary(self) -> dict[str, list[float | None]]:
        self.flush()
        sums, count = self.sums.cpu().tolist(), self.count.cpu().tolist()

        def avg(vals: list[float], ns: list[float]) -> list[float | None]:
            return [v / c if c else None for v, c in zip(vals, ns, strict=True)]

        pos, neg = avg(sums[1], count), avg(sums[2], count)
        sep = [None if p is None or q is None else p - q for p, q in zip(pos, neg, strict=True)]
        support: list[float | None] = avg(sums[3], count) if self.margin is not None else [None] * self.n_layers
        return {"loss": avg(sums[0], sums[4]), "g_pos": pos, "g_neg": neg, "separation": sep, "support": support}

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"sums": self.sums.cpu(), "count": self.count.cpu()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        sums = state["sums"]
        if sums.shape[0] == 4:  # a checkpoint from before the support row: insert it
            sums = torch.cat([sums[:3], torch.zeros_like(sums[:1]), sums[3:]])
        self.sums.copy_(sums)
        self.count.copy_(state["count"])


class Learner:
    """Owns a net, its update scheme, its local optimisers and its local loss."""

    def __init__(self, net: Net, scheme: Scheme, cfg: Any, device: torch.device,
                 num_train: int | None = None) -> None:
        self.net = net
        self.scheme = scheme
        self.cfg = cfg
        self.device = device
        self.loss_fn = build_loss(cfg)
        # losses with a margin (DF's N-pair) log the share of support pairs per layer
        self.margin: float | None = getattr(self.loss_fn, "margin", None)
        self.peer = PeerNormalization(cfg.peer_norm) if cfg.peer_norm > 0 else None
        self.k = net.num_classes
        self.sampler = build_negatives(cfg, self.k, num_train, device)
        # a sampler object that learns from the goodness it gets the deepest loss layer's back
        self.observes = hasattr(self.sampler, "observe")
        # sample-level N-pair mining: other-class samples of the batch join each sample's negatives
        self.pairs = int(getattr(cfg, "pair_negatives", 0))
        if self.pairs and not all(hasattr(hd, "pair_scores") for hd in net.heads):
            raise ConfigError("config field 'pair_negatives' needs heads that score samples against each other "
                              "(head 'anchors'); use the DF methods, or set pair_negatives 0")
        self.needs_indices = bool(getattr(self.sampler, "needs_indices", False))
        self._deepest: tuple[int, torch.Tensor, torch.Tensor] | None = None
        # a loss that can be read off the (B, K) score matrix when every wrong class is a negative
        self.from_scores = bool(getattr(self.loss_fn, "reads_scores", False)) and self.sampler is NEGATIVES.get("all")
        n = len(net.layers)
        self.optimizers: dict[int, torch.optim.Optimizer] = {}
        # A GPU step of a local method is many small kernels (one optimiser per layer): the fused
        # Adam kernel updates all of a layer's tensors in one launch. CPU keeps the default.
        self.fused = device.type == "cuda"
        label_owners = set(scheme.label_optimizers(n))
        for i in range(n):
            owned = scheme.optimizer_layers(i, n)
            if owned:
                params = [p for j in owned for p in net.layer_params(j, label=i in label_owners)]
                kw: dict[str, Any] = {"lr": cfg.lr, "fused": True} if self.fused else {"lr": cfg.lr}
                self.optimizers[i] = torch.optim.AdamW(params, weight_decay=cfg.weight_decay, **kw) \
                    if cfg.weight_decay else torch.optim.Adam(params, **kw)
        # Reading a loss value on the host waits for the GPU to finish all queued work, which
        # idles it between steps. So on a GPU the NaN guard reads the recorded losses once every
        # ``check_every`` segments (a NaN is caught a few steps late, still before any checkpoint
        # is written); on a CPU reading is free and each segment is checked before it steps.
        self.check_every = 32 if device.type == "cuda" else 1
        self._pending: list[tuple[int, list[int], torch.Tensor]] = []  # (step, layers, losses)
        self.amp = autocast(device, cfg.bf16)
        # called with the optimisers about to step, after their segment's backward (data parallel:
        # all-reduce their gradients); None on a single process
        self.grad_sync: Callable[[list[torch.optim.Optimizer]], None] | None = None

    # ------------------------------------------------------------------------------------
    def new_stats(self) -> StepStats:
        """Empty per-layer statistics for an epoch of this learner's net and loss."""
        return StepStats(len(self.net.layers), self.device, self.margin)

    def set_lr(self, lr: float) -> None:
        for opt in self.optimizers.values():
            for g in opt.param_groups:
                g["lr"] = lr

    def _labelled_input(self, x: torch.Tensor, y: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
        """Input of layer 0. Input-label modes stack the positive copy and one copy per negative
        as (1+M) groups of B, so BatchNorm sees positives and negatives as one batch."""
        if not self.net.conditions_input:
            return self.net.prepare(x)
        m = neg.shape[1]
        labels = torch.cat([y, neg.t().reshape(-1)])
        xs = x.repeat((m + 1,) + (1,) * (x.dim() - 1))
        return self.net.prepare(xs, labels)

    def _scores(self, i: int, h: torch.Tensor, y: torch.Tensor, neg: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        g_pos, g_neg, _ = self._all_scores(i, h, y, neg)
        return g_pos, g_neg

    def _all_scores(self, i: int, h: torch.Tensor, y: torch.Tensor,
                    neg: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Positive (B,) and negative (B, M) goodness, and for one-pass heads the (B, K) scores."""
        head = self.net.heads[i]
        rows = torch.cat([y, neg.t().reshape(-1)]) if getattr(head, "needs_labels", False) else None
        g = by_sample(head, head_scores(head, h, rows).float(), len(y))
        if getattr(head, "all_classes", False):
            return *pos_neg(g, y, neg), g
        return g[:, 0], g[:, 1:], None  # (B, 1+M) label copies: column 0 is the positive

    def negatives(self, y: torch.Tensor, generator: torch.Generator | None = None,
                  idx: torch.Tensor | None = None) -> torch.Tensor:
        """The batch's negative labels (B, M), never the true one."""
        if self.needs_indices:
            if idx is None:
                raise ConfigError(f"negatives {self.cfg.negatives!r} needs each batch's sample indices: "
                                  "call step(..., idx=...)")
            return self.sampler(y, self.k, generator, idx=idx)
        return self.sampler(y, self.k, generator)

    def step(self, x: torch.Tensor, y: torch.Tensor, step: int, stats: StepStats | None = None,
             generator: torch.Generator | None = None, idx: torch.Tensor | None = None) -> torch.Tensor:
        """One local-learning step on a normalised batch; returns the summed loss as a 0-d tensor
        on the device (read it with ``float()`` only when needed: on a GPU that waits for the step).
        ``idx``: the batch's indices in the training set (needed by negatives 'hard')."""
        neg = self.negatives(y, generator, idx)
        h = self._labelled_input(x, y, neg)
        self._deepest = None
        with NoisyWeights(self.net, self.cfg.train_weight_noise, generator):  # sigma 0: no-op
            loss = self.run_segments(h, y, neg, self.scheme.segments(step, len(self.net.layers)), step, stats)[0]
        if self.observes and self._deepest is not None:
            _, g_pos, g_neg = self._deepest
            self.sampler.observe(idx, neg, g_pos, g_neg)
        return loss

    def run_segments(self, h: torch.Tensor, y: torch.Tensor, neg: torch.Tensor, segments: list[Segment],
                     step: int, stats: StepStats | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Train ``segments`` (consecutive) on ``h``, the input of the first one; returns the summed
        loss and the output of the last one. The layer-parallel pipeline runs each rank's segments."""
        n = len(self.net.layers)
        total_loss = torch.zeros((), device=h.device)
        direct = self.scheme.feedback == "direct"
        read_scores = self.from_scores and not self.pairs
        for seg in segments:
            if seg.start > 0:
                h = h.detach()
            losses: list[tuple[int, torch.Tensor]] = []
            outs: list[tuple[int, torch.Tensor]] = []  # direct feedback: each layer's output
            top = seg.loss_layers[-1] if seg.loss_layers else -1
            top_scores: torch.Tensor | None = None
            with self.amp:
                for i in range(seg.start, seg.end):
                    fa = self.scheme.feedback == "random" and i > seg.start
                    if direct and i > seg.start:
                        h = h.detach()  # no signal travels back through the next layer: it comes directly
                    h = self.net.layers[i](h, random_feedback=True) if fa else self.net.layers[i](h)
                    if direct:
                        outs.append((i, h))
                    pre = None  # the loss, where it is read off the score matrix directly
                    if direct and i == top:
                        top_scores = self.net.heads[i](h).float()  # (B, K): the block's error is taken here
                        g_pos, g_neg = pos_neg(top_scores, y, neg)
                    elif i in seg.loss_layers:
                        g_pos, g_neg, full = self._all_scores(i, h, y, neg)
                        if read_scores and full is not None:
                            pre = self.loss_fn.from_scores(full, y).mean()
                        if self.observes:  # layers run in order: the last kept is the deepest
                            self._deepest = (i, g_pos.detach(), g_neg.detach())
                    elif self.scheme.probes:  # e2e: a linear probe on detached features
                        g_pos, g_neg = self._scores(i, h.detach(), y, neg)
                    elif stats is not None:  # metrics only (e.g. the first layer of an APL pair)
                        with torch.no_grad():
                            g_pos, g_neg = self._scores(i, h, y, neg)
                    else:
                        continue
                    li = pre
                    if li is None and (i in seg.loss_layers or self.scheme.probes):
                        loss_neg = g_neg
                        if self.pairs and i in seg.loss_layers:
                            extra = self.net.heads[i].pair_scores(h, y, self.pairs)  # type: ignore[operator]
                            loss_neg = torch.cat([g_neg, extra.float()], 1)
                        li = self.loss_fn(g_pos, loss_neg).mean()
                    if li is not None:
                        if self.peer is not None and i in seg.loss_layers:
                            # the positives: the first B rows in every label mode
                            running = self.net.layers[i].activity
                            assert isinstance(running, torch.Tensor)  # built with peer_norm > 0
                            li = li + self.peer(h[: len(y)], running)
                        losses.append((i, li))
                    if stats is not None:
                        stats.add(i, g_pos.detach(), g_neg.detach(), None if li is None else li.detach())
            if not losses:
                continue
            per_layer = torch.stack([li for _, li in losses])
            loss = per_layer.sum()
            if direct and top_scores is not None and len(outs) > 1:
                loss = loss + self._direct_feedback(outs[:-1], losses[-1][1], top_scores)
            self._pending.append((step, [i for i, _ in losses], per_layer.detach()))
            if len(self._pending) >= self.check_every:
                self.check_losses()
            opts = [self.optimizers[j] for j in self.scheme.stepped(seg, n)]
            for opt in opts:
                opt.zero_grad(set_to_none=True)
            loss.backward()
            if self.grad_sync is not None:
                self.grad_sync(opts)
            for opt in opts:
                opt.step()
            for opt in opts:
                opt.zero_grad(set_to_none=True)  # free this segment's gradients before the next
            total_loss = total_loss + loss.detach()
        if stats is not None:
            stats.flush()
        return total_loss, h

    def _direct_feedback(self, outs: list[tuple[int, torch.Tensor]], top_loss: torch.Tensor,
                         top_scores: torch.Tensor) -> torch.Tensor:
        """DF-R with direct random feedback (after DFA, Noekland 2016): the error of the block's
        loss at its top layer's class scores, e = dL/dscores (B, K), reaches every lower layer i
        of the block at once through its fixed random matrix B_i (K x its output size): a term
        whose gradient at layer i's output is e B_i. No layer waits for a later layer's backward."""
        (e,) = torch.autograd.grad(top_loss, top_scores, retain_graph=True)
        terms = []
        for i, h in outs:
            fb = self.net.layers[i].direct
            assert isinstance(fb, torch.Tensor), "layer was built without a direct feedback matrix"
            terms.append((h.flatten(1).float() * (e @ fb).detach()).sum())
        return torch.stack(terms).sum()

    def check_losses(self) -> None:
        """The NaN guard: raise TrainingError naming the first non-finite loss recorded since the
        last check (one host read for all of them)."""
        pending, self._pending = self._pending, []
        if not pending or bool(torch.cat([v for _, _, v in pending]).isfinite().all()):
            return
        for step, layers, values in pending:
            vals = values.tolist()
            for i, v in zip(layers, vals, strict=True):
                if not math.isfinite(v):
                    raise TrainingError(
                        f"loss of layer {i} is {v} at step {step}: "
                        "lower the learning rate or check the data; the last good checkpoint is kept"
                    )

    # ------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"net": self.net.state_dict(),
                                 "optimizers": {str(k): o.state_dict() for k, o in self.optimizers.items()}}
        sampler_state = self.sampler.state_dict() if hasattr(self.sampler, "state_dict") else {}
        if sampler_state:
            state["negatives"] = sampler_state
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.net.load_state_dict(state["net"])
        for k, o in self.optimizers.items():
            load_optimizer(o, state["optimizers"][str(k)])
        if hasattr(self.sampler, "load_state_dict") and self.sampler.state_dict():
            # KeyError (a checkpoint of another config) is reported by the caller
            self.sampler.load_state_dict(state["negatives"])


def load_optimizer(opt: torch.optim.Optimizer, state: dict[str, Any]) -> None:
    """Load an optimiser's state but keep its kernel choice (fused on a GPU, not on a CPU), so a
    run checkpointed on one device resumes on another."""
    keep: list[dict[str, Any]] = [{k: g[k] for k in ("fused", "foreach") if k in g} for g in opt.param_groups]
    opt.load_state_dict(state)
    for g, k in zip(opt.param_groups, keep, strict=True):
        g.update(k)
