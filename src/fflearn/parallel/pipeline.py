"""Layer-parallel pipeline for local learning (``fflearn train --pipeline N``).

A local method with a static scheme (greedy, blocks without alternation: ff, symba, lcp, df-o,
df-r) cuts the net into the same segments at every step, and no gradient crosses a segment
boundary. So rank r can own a contiguous group of segments (never half of one: a DF-O block
stays on one rank) with their optimisers and local losses, and only *forward* traffic is needed:
rank r receives the detached output of rank r-1's last segment with the batch's labels (y and
the sampled negatives), trains its segments on it, and sends its own output on. Nothing flows
backward. Sends and receives are non-blocking, so while rank 1 trains on batch t, rank 0 already
trains on batch t+1 (the batch is the microbatch).

Rank 0 draws the data order, augmentation and negatives exactly as one process does, and each
layer sees the same inputs in the same order, so the pipeline computes the same updates as the
sequential run (bit for bit at equal thread counts). Evaluation is pipelined the same way; the
per-layer correct counts and the ensemble votes are summed over the ranks.

Checkpoints: every rank writes ``checkpoint-rank{r}.pt`` (its layers, optimisers and counters),
and rank 0 gathers the parts into the usual ``checkpoint.pt``, which ``fflearn eval``, a
single-process ``--resume`` or a pipeline over another number of ranks can use.
"""

from __future__ import annotations

import copy
import json
import statistics
import time
from collections import deque
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from .. import __version__
from ..checkpoint import first_line
from ..config import Config
from ..errors import ConfigError, FFLearnError, TrainingError
from ..learner import Learner, StepStats, load_optimizer
from ..models import Layer, Net, by_sample, head_scores
from ..predict import eval_batch_size, select_layers
from ..registry import MODELS
from ..runfolder import CHECKPOINT, atomic_save, atomic_write_text
from ..runtime import autocast, sync
from ..schemes import Segment, build_scheme
from ..trainer import Trainer
from .data import check_multiprocess
from .ranks import RankContext


def check_pipeline(cfg: Config, world: int) -> list[Segment]:
    """The static segments of ``cfg``'s scheme, or a ConfigError saying why it cannot be split."""
    check_multiprocess(cfg, "--pipeline")
    if cfg.ema:
        raise ConfigError("--pipeline keeps each rank's layers apart: the weights' moving average (--ema) needs "
                          "the whole net in one process; use --nproc N or train on one process")
    if cfg.train_weight_noise:
        raise ConfigError("--pipeline trains each rank's segments apart: noise-aware training (--train-weight-noise) "
                          "draws the noise for the whole net in one step; use --nproc N or train on one process")
    scheme = build_scheme(cfg)
    if getattr(scheme, "partition", "size") == "memory":
        raise ConfigError("--pipeline splits the blocks before the network exists: use --block-partition size "
                          "(block_partition 'memory' is measured on the built network)")
    if not scheme.static():
        why = ("the Trifecta's alternating pairs (apl) move the segment boundaries every step"
               if cfg.scheme == "apl" else "alternate blocks move the segment boundaries every other step")
        raise ConfigError(f"--pipeline needs a static update scheme: {why}; train {cfg.method} data parallel "
                          "(--nproc N) instead")
    n = len(MODELS.get(cfg.model)(cfg))
    segs = scheme.segments(0, n)
    if len(segs) < world:
        what = ("backprop's single segment spans the whole net" if scheme.probes else
                f"scheme {cfg.scheme} (block_size {cfg.block_size}) cuts the {n} layers into {len(segs)} segment(s)")
        raise ConfigError(f"--pipeline {world} needs at least {world} segments (a segment is never split across "
                          f"ranks), but {what}; use fewer processes{'' if scheme.probes else ' or smaller blocks'}")
    return segs


def layer_macs(layer: Layer) -> float:
    """Multiply-adds of one layer's weight op per sample."""
    op = layer.op
    if isinstance(op, nn.Conv2d):
        _, h, w = layer.out_shape
        if layer.pool:
            h, w = 2 * h, 2 * w
        kh, kw = op.kernel_size
        return float(op.in_channels * op.out_channels * kh * kw * h * w)
    assert isinstance(op, nn.Linear)
    return float(op.in_features * op.out_features)


def segment_costs(net: Net, segs: list[Segment]) -> list[float]:
    """Training cost of each segment: forward + weight gradient for every layer, and the input
    gradient for the layers the gradient must pass back through (all but the segment's first)."""
    layers: list[Layer] = list(net.layers)  # type: ignore[arg-type]
    return [sum(layer_macs(layers[i]) * (2 if i == s.start else 3) for i in range(s.start, s.end))
            for s in segs]


def measured_costs(learner: Learner, h: torch.Tensor, y: torch.Tensor, neg: torch.Tensor,
                   segs: list[Segment], repeats: int = 3) -> list[float]:
    """Seconds of each segment's training step (forward, local loss, backward, optimiser step) on
    one batch, run in order as the pipeline runs them: the median of ``repeats`` after one warm-up.
    Counted multiply-adds miss what a step costs besides the weight op (normalisation, pooling,
    heads, the optimiser, the threads' efficiency at that layer's size). The learner's state
    (weights, batch-norm statistics, optimiser moments) is put back afterwards, so the run that
    follows computes what it would have without the timing."""
    saved = copy.deepcopy(learner.state_dict())
    times: list[list[float]] = [[] for _ in segs]
    for r in range(repeats + 1):
        x = h
        for j, seg in enumerate(segs):
            sync(x.device)
            t0 = time.perf_counter()
            _, x = learner.run_segments(x, y, neg, [seg], 0)
            sync(x.device)
            if r:  # the first round warms the allocator and the kernels up
                times[j].append(time.perf_counter() - t0)
    learner.load_state_dict(saved)
    learner._pending.clear()
    learner._deepest = None
    return [statistics.median(t) for t in times]


def partition(costs: list[float], parts: int) -> list[list[int]]:
    """Split ``costs`` into ``parts`` contiguous non-empty groups minimising the largest sum (the
    pipeline's slowest stage sets its pace); returns the indices of each group."""
    n = len(costs)
    if not 1 <= parts <= n:
        raise ConfigError(f"cannot split {n} segments over {parts} ranks")
    pre = [0.0]
    for c in costs:
        pre.append(pre[-1] + c)
    inf = float("inf")
    best = [[inf] * (n + 1) for _ in range(parts + 1)]
    cut = [[0] * (n + 1) for _ in range(parts + 1)]
    best[0][0] = 0.0
    for k in range(1, parts + 1):
        for j in range(k, n + 1):
            for i in range(k - 1, j):
                v = max(best[k - 1][i], pre[j] - pre[i])
                if v < best[k][j]:
                    best[k][j], cut[k][j] = v, i
    groups, j = [], n
    for k in range(parts, 0, -1):
        i = cut[k][j]
        groups.append(list(range(i, j)))
        j = i
    return groups[::-1]


class Link:
    """Forward traffic of one pipeline rank: non-blocking receives from rank-1 (one posted ahead)
    and sends to rank+1 (at most ``window`` in flight: rank r runs at most that far ahead).
    ``wait_seconds`` counts the time spent blocked on either: the rank's idle time."""

    def __init__(self, rank: int, world: int, device: torch.device, window: int = 2) -> None:
        self.prev = rank - 1 if rank > 0 else None
        self.next = rank + 1 if rank + 1 < world else None
        self.device = device
        self.window = window
        self.sends: deque[tuple[list[Any], list[torch.Tensor]]] = deque()
        self.posted: tuple[list[Any], list[torch.Tensor]] | None = None
        self.n_sent = 0  # messages so far: both ends count alike, so tags pair them up
        self.n_recv = 0
        self.wait_seconds = 0.0
        self.bytes_sent = 0

    @staticmethod
    def _tag(count: int, part: int) -> int:
        return (count % 65536) * 4 + part

    def send(self, tensors: list[torch.Tensor]) -> None:
        assert self.next is not None
        while len(self.sends) >= self.window:
            self._finish_oldest()
        reqs = [dist.isend(t, self.next, tag=self._tag(self.n_sent, k)) for k, t in enumerate(tensors)]
        self.sends.append((reqs, tensors))  # keep the tensors alive until sent
        self.n_sent += 1
        self.bytes_sent += sum(t.numel() * t.element_size() for t in tensors)

    def _finish_oldest(self, count: bool = True) -> None:
        reqs, _ = self.sends.popleft()
        t0 = time.perf_counter()
        for r in reqs:
            r.wait()
        if count:
            self.wait_seconds += time.perf_counter() - t0

    def flush(self, count: bool = True) -> None:
        while self.sends:
            self._finish_oldest(count)

    def post(self, specs: list[tuple[tuple[int, ...], torch.dtype]]) -> None:
        """Start receiving the next message (one tensor per (shape, dtype))."""
        assert self.prev is not None and self.posted is None
        bufs = [torch.empty(shape, dtype=dtype, device=self.device) for shape, dtype in specs]
        reqs = [dist.irecv(b, self.prev, tag=self._tag(self.n_recv, k)) for k, b in enumerate(bufs)]
        self.posted = (reqs, bufs)
        self.n_recv += 1

    def receive(self) -> list[torch.Tensor]:
        assert self.posted is not None
        reqs, bufs = self.posted
        self.posted = None
        t0 = time.perf_counter()
        for r in reqs:
            r.wait()
        self.wait_seconds += time.perf_counter() - t0
        return bufs


def _to_cpu(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_cpu(v) for v in obj)
    return obj


class PipelineTrainer(Trainer):
    """A Trainer that trains only this rank's segments, fed by the previous rank."""

    def __init__(self, cfg: Config, ctx: RankContext, overwrite: bool = False, resume: bool = False,
                 callbacks: list[Any] | None = None) -> None:
        check_pipeline(cfg, ctx.world)
        self.ctx = ctx
        rank_cfg = cfg if ctx.is_main else cfg.replace(tensorboard=False)
        super().__init__(rank_cfg, overwrite=overwrite, resume=resume, write=ctx.is_main, verbose=ctx.is_main,
                         callbacks=callbacks)
        n = len(self.net.layers)
        segs = self.learner.scheme.segments(0, n)
        self.segment_costs = self._costs(segs)
        groups = partition(self.segment_costs, ctx.world)
        # each rank's share of the cost (what the split balanced): the largest bounds the speedup
        # over one process on one rank's threads at 1 / share
        self.stage_share = [sum(self.segment_costs[j] for j in g) / sum(self.segment_costs) for g in groups]
        self.layer_ranges = [(segs[g[0]].start, segs[g[-1]].end) for g in groups]
        self.segments = [segs[j] for j in groups[ctx.rank]]
        self.first, self.last = self.layer_ranges[ctx.rank]
        probe = torch.zeros(1, dtype=torch.long, device=self.device)
        gen = torch.Generator(device=self.device).manual_seed(0)  # leave self.gen's stream alone
        self.n_neg = int(self.learner.negatives(probe, gen).shape[1])  # stateless: check_pipeline made sure
        self.wire_dtype = torch.bfloat16 if cfg.bf16 else torch.float32
        self.link = Link(ctx.rank, ctx.world, self.device)
        self.idle_seconds = 0.0
        self.bytes_per_step = 0.0
        self._inbox: list[torch.Tensor] | None = None  # rank > 0: the message of the step at hand
        self._clock = 0.0  # rank 0: the clock of the step at hand, sent with its message

    # --- set-up -----------------------------------------------------------------------------
    def _costs(self, segs: list[Segment]) -> list[float]:
        """What each segment costs: counted (``macs``), or timed by rank 0 on its first training
        batch with its own threads and sent to every rank, so all ranks cut the net alike."""
        if self.cfg.pipeline_balance == "macs":
            return segment_costs(self.net, segs)
        costs = torch.zeros(len(segs), dtype=torch.float64)
        if self.ctx.is_main:
            b = self.cfg.batch_size
            x, y = self.norm(self.data.train_x[:b].float()), self.data.train_y[:b]
            gen = torch.Generator(device=self.device).manual_seed(0)  # leave self.gen's stream alone
            neg = self.learner.negatives(y, gen)
            h = self.learner._labelled_input(x, y, neg)
            costs = torch.tensor(measured_costs(self.learner, h, y, neg, segs), dtype=torch.float64)
        dist.broadcast(costs, src=0)
        return [float(c) for c in costs]

    def rank_file(self, rank: int | None = None) -> Path:
        return self.out / f"checkpoint-rank{self.ctx.rank if rank is None else rank}.pt"

    def start(self, out: Path, ck_path: Path | None) -> None:
        """Use rank 0's run folder; continue from the checkpoints, or clear an old run's rank files."""
        self.out = out
        if not self.ctx.is_main:
            out.mkdir(parents=True, exist_ok=True)
        if ck_path is None:
            self.rank_file().unlink(missing_ok=True)
            if self.ctx.is_main:
                for f in out.glob("checkpoint-rank*.pt"):
                    f.unlink(missing_ok=True)
        else:
            self._resume()
        dist.barrier()

    def close(self) -> None:
        pass

    def _resume(self) -> None:
        """Every rank's own file when they agree on the step and the split, else checkpoint.pt."""
        mine = self.rank_file()
        state = None
        if mine.exists():
            try:
                state = torch.load(mine, map_location="cpu", weights_only=True)
            except Exception as e:  # damaged file: torch raises many kinds
                raise FFLearnError(f"cannot read checkpoint {mine}: {first_line(e)}") from None
        key = None if state is None else (state["global_step"], state["pipeline"]["world_size"],
                                          [list(r) for r in state["pipeline"]["layer_ranges"]])
        keys: list[Any] = [None] * self.ctx.world
        dist.all_gather_object(keys, (key, (self.out / CHECKPOINT).exists()))
        ranges = [list(r) for r in self.layer_ranges]
        if key is not None and key[1:] == (self.ctx.world, ranges) and all(k == keys[0][0] for k, _ in keys):
            self._load_rank_state(state)  # type: ignore[arg-type]  # key is not None: state is a dict
        elif all(has for _, has in keys):
            self._load_merged(self.out / CHECKPOINT)
        else:
            steps = [None if k is None else k[0] for k, _ in keys]
            raise FFLearnError(f"cannot resume {self.out}: the ranks' checkpoint-rank*.pt files are missing or "
                               f"disagree (steps {steps}, or another split over ranks) and {CHECKPOINT} is missing")

    def _load_rank_state(self, state: dict[str, Any]) -> None:
        res = self.net.load_state_dict(state["net"], strict=False)
        missing = [k for k in res.missing_keys if self._owns(k)]
        if missing or res.unexpected_keys:
            raise FFLearnError(f"{self.rank_file()} does not fit this network (missing {missing[:3]}, "
                               f"unexpected {res.unexpected_keys[:3]})")
        for k, sd in state["optimizers"].items():
            load_optimizer(self.learner.optimizers[int(k)], sd)
        self.epoch, self.step_in_epoch = state["epoch"], state["step_in_epoch"]
        self.global_step, self.train_seconds = state["global_step"], state["train_seconds"]
        if state.get("partial_stats") is not None:
            self.partial_stats = self.learner.new_stats()
            self.partial_stats.load_state_dict(state["partial_stats"])
        if self.ctx.is_main:
            self.gen.set_state(state["gen"])
            self.metrics = state["metrics"]
            atomic_write_text("".join(json.dumps(m) + "\n" for m in self.metrics), self.out / "metrics.jsonl")

    def _load_merged(self, path: Path) -> None:
        Trainer.load_checkpoint(self, path)  # only rank 0 (write) rewrites metrics.jsonl
        if self.partial_stats is not None:  # keep this rank's layers: the epoch's record sums ranks
            keep = torch.zeros(len(self.net.layers), dtype=torch.bool, device=self.device)
            keep[self.first : self.last] = True
            self.partial_stats.sums[:, ~keep] = 0
            self.partial_stats.count[~keep] = 0

    # --- training: the pieces of the trainer's one loop -----------------------------------------
    def _rows(self, b: int, copies: int) -> int:
        """Rows of a layer's input for a batch of ``b``: input-label modes stack one copy per label."""
        return b * copies if self.net.conditions_input else b

    def _act_shape(self, rows: int) -> tuple[int, ...]:
        prev: Layer = self.net.layers[self.first - 1]  # type: ignore[assignment]
        return (rows, *prev.out_shape)

    def _as_input(self, h: torch.Tensor) -> torch.Tensor:
        return h.contiguous(memory_format=torch.channels_last) if self.cfg.channels_last and h.dim() == 4 else h

    def _specs(self) -> list[tuple[tuple[int, ...], torch.dtype]]:
        """One training message: the activations, y and the negatives, rank 0's (clock, stop)."""
        b = self.cfg.batch_size
        return [(self._act_shape(self._rows(b, 1 + self.n_neg)), self.wire_dtype), ((b, 1 + self.n_neg), torch.long),
                ((2,), torch.float64)]

    def train_steps(self, limit: int | None = None) -> int:
        """The trainer's loop, with the links started before and drained after."""
        spe, link = self.steps_per_epoch(), self.link
        dist.barrier()  # all ranks start the clock together
        link.wait_seconds = 0.0
        sent_before, msgs_before = link.bytes_sent, link.n_sent
        if link.prev is not None and self.step_in_epoch < spe:
            link.post(self._specs())
        done = super().train_steps(limit)
        t0 = time.perf_counter()
        link.flush()
        self.train_seconds += time.perf_counter() - t0
        self.idle_seconds = link.wait_seconds
        self.bytes_per_step = (link.bytes_sent - sent_before) / max(1, link.n_sent - msgs_before)
        return done

    def decide(self, s: int, elapsed: float) -> tuple[float, bool]:
        """Rank 0 decides on its own clock and tells the next rank with the step's message; the
        others take the clock and the stop from the message they receive."""
        link = self.link
        if link.prev is None:
            clock, stop = super().decide(s, elapsed)
            if stop and link.next is not None:  # a message that only says stop
                link.send([torch.zeros(spec[0], dtype=spec[1], device=self.device) for spec in self._specs()[:2]]
                          + [torch.tensor([clock, 1.0], dtype=torch.float64, device=self.device)])
            self._clock = clock
            return clock, stop
        self._inbox = link.receive()
        clock, flag = (float(v) for v in self._inbox[2].tolist())
        stop = flag > 0
        if stop:
            if link.next is not None:
                link.send(self._inbox)
        elif s + 1 < self.steps_per_epoch():
            link.post(self._specs())  # batch s+1 arrives while this rank trains on batch s
        return clock, stop

    def take_step(self, s: int, stats: StepStats) -> torch.Tensor:
        link = self.link
        if link.prev is None:  # rank 0: the data, its augmentation and negatives, as one process
            x, y, _ = self.batch(s)
            neg = self.learner.negatives(y, self.gen)
            h = self.learner._labelled_input(x, y, neg)
            control = torch.tensor([self._clock, 0.0], dtype=torch.float64, device=self.device)
        else:
            assert self._inbox is not None
            h, labels, control = self._inbox
            y, neg = labels[:, 0], labels[:, 1:]
            h = self._as_input(h)
        try:
            loss, out = self.learner.run_segments(h, y, neg, self.segments, self.global_step, stats)
        except TrainingError as e:
            raise TrainingError(f"rank {self.ctx.rank} (layers {self.first}-{self.last - 1}): {e}") from None
        if link.next is not None:
            link.send([out.detach().to(self.wire_dtype).contiguous(), torch.cat([y[:, None], neg], 1), control])
        return loss

    def _epoch_record(self, stats: StepStats, seconds: float, samples: int) -> dict[str, Any]:
        """Per-layer statistics summed over the ranks (each filled its own layers); the epoch
        lasts until the last rank is done; idle fraction = time blocked on the links / epoch."""
        dist.all_reduce(stats.sums)
        dist.all_reduce(stats.count)
        mine = torch.tensor([seconds, self.idle_seconds, self.bytes_per_step], dtype=torch.float64, device=self.device)
        parts = [torch.zeros_like(mine) for _ in range(self.ctx.world)]
        dist.all_gather(parts, mine)
        times = [p.tolist() for p in parts]
        epoch_seconds = max(t[0] for t in times)
        self.train_seconds += epoch_seconds - seconds  # the same total on every rank
        rec = super()._epoch_record(stats, epoch_seconds, samples)
        rec["world_size"] = self.ctx.world
        rec["layers_per_rank"] = [list(r) for r in self.layer_ranges]
        rec["stage_share"] = self.stage_share
        rec["rank_seconds"] = [t[0] for t in times]
        rec["idle_fraction"] = [t[1] / t[0] if t[0] > 0 else None for t in times]
        rec["bytes_sent_per_step"] = [int(t[2]) for t in times[:-1]]  # rank r -> r+1, per microbatch
        return rec

    @torch.no_grad()
    def evaluate(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, Any]:
        """Pipelined evaluation: rank 0 feeds the images, each rank scores its layers and passes
        the activations on; correct counts and ensemble votes are summed over the ranks."""
        net, link, k = self.net, self.link, self.net.num_classes
        n = len(net.layers)
        bs = eval_batch_size(net)
        vote = set(select_layers(self.cfg.predict, n))
        was_training = net.training
        net.eval()
        amp = autocast(self.device, self.cfg.bf16)
        correct = torch.zeros(n, dtype=torch.float64, device=self.device)
        votes = torch.zeros(len(y), k, dtype=torch.float32, device=self.device)
        starts = list(range(0, len(y), bs))

        def specs(s: int) -> list[tuple[tuple[int, ...], torch.dtype]]:
            return [(self._act_shape(self._rows(min(bs, len(y) - s), k)), self.wire_dtype)]

        if link.prev is not None and starts:
            link.post(specs(starts[0]))
        for j, s in enumerate(starts):
            yb = y[s : s + bs]
            b = len(yb)
            if link.prev is None:
                xb = self.norm(x[s : s + bs])
                if net.conditions_input:  # group c of the K copies carries label c
                    labels = torch.arange(k, device=xb.device).repeat_interleave(b)
                    h = net.prepare(xb.repeat((k,) + (1,) * (xb.dim() - 1)), labels)
                else:
                    h = net.prepare(xb)
            else:
                (h,) = link.receive()
                if j + 1 < len(starts):
                    link.post(specs(starts[j + 1]))
                h = self._as_input(h)
            with amp:
                for i in range(self.first, self.last):
                    h = net.layers[i](h)
                    rows = torch.arange(k, device=h.device).repeat_interleave(b) if net.conditions_input else None
                    sc = by_sample(net.heads[i], head_scores(net.heads[i], h, rows).float(), b)
                    correct[i] += (sc.argmax(1) == yb).sum()
                    if i in vote:
                        votes[s : s + b] += sc.log_softmax(1)
            if link.next is not None:
                link.send([h.to(self.wire_dtype).contiguous()])
        link.flush(count=False)
        dist.all_reduce(correct)
        dist.all_reduce(votes)
        net.train(was_training)
        total = max(1, len(y))
        return {"per_layer": (correct / total).tolist(),
                "accuracy": float((votes.argmax(1) == y).sum()) / total}

    # --- checkpoints ------------------------------------------------------------------------
    def _owns(self, key: str) -> bool:
        parts = key.split(".")
        if parts[0] in ("layers", "heads") and len(parts) > 1 and parts[1].isdigit():
            return self.first <= int(parts[1]) < self.last
        return self.ctx.is_main  # the label embedding and anything else: rank 0's first layer

    def _rank_state(self) -> dict[str, Any]:
        st = self.partial_stats
        state: dict[str, Any] = {
            "fflearn_version": __version__,
            "config": self.cfg.to_dict(),
            "pipeline": {"rank": self.ctx.rank, "world_size": self.ctx.world,
                         "layer_ranges": [list(r) for r in self.layer_ranges]},
            "net": {k: v for k, v in self.net.state_dict().items() if self._owns(k)},
            "optimizers": {str(i): o.state_dict() for i, o in self.learner.optimizers.items()
                           if self.first <= i < self.last},
            "epoch": self.epoch, "step_in_epoch": self.step_in_epoch, "global_step": self.global_step,
            "train_seconds": self.train_seconds,
            "partial_stats": None if st is None else st.state_dict(),
        }
        if self.ctx.is_main:
            state["gen"] = self.gen.get_state()
            state["metrics"] = self.metrics
        return _to_cpu(state)

    def save_checkpoint(self) -> None:
        """This rank's file, then rank 0 gathers every part into the usual checkpoint.pt. All
        ranks save after the same step (epoch ends, or every checkpoint_every steps), so the
        files always describe one consistent state."""
        self.link.flush(count=False)
        self.learner.check_losses()
        for i in range(self.first, self.last):
            for name, t in self.net.layers[i].state_dict().items():
                if t.is_floating_point() and not torch.isfinite(t).all():
                    raise TrainingError(f"rank {self.ctx.rank}: layer {i} has non-finite values in {name} after "
                                        f"step {self.global_step}; lower --lr and --resume {self.out}")
        state = self._rank_state()
        atomic_save(state, self.rank_file())
        parts: list[Any] | None = [None] * self.ctx.world if self.ctx.is_main else None
        dist.gather_object({k: state[k] for k in ("net", "optimizers", "partial_stats")}, parts, dst=0)
        if parts is not None:
            ck = Trainer.checkpoint(self)
            for p in parts:
                ck["learner"]["net"].update(p["net"])
                ck["learner"]["optimizers"].update(p["optimizers"])
            stats = [p["partial_stats"] for p in parts if p["partial_stats"] is not None]
            ck["partial_stats"] = None if not stats else {"sums": sum(s["sums"] for s in stats),
                                                          "count": sum(s["count"] for s in stats)}
            ck["pipeline"] = {"world_size": self.ctx.world, "layer_ranges": [list(r) for r in self.layer_ranges]}
            atomic_save(ck, self.out / CHECKPOINT)
        dist.barrier()

    def summary(self) -> dict[str, Any]:
        s = super().summary()
        s["distributed"] = {"mode": "pipeline", "world_size": self.ctx.world, "backend": dist.get_backend(),
                            "layers_per_rank": [list(r) for r in self.layer_ranges],
                            "balance": self.cfg.pipeline_balance, "segment_costs": self.segment_costs,
                            "stage_share": self.stage_share}
        return s
