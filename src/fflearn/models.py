"""Layers, per-layer heads and the networks built from them.

A network is a label injection, a list of layers and one head per layer. Layers know nothing
about learning: which layers a loss trains is the update scheme's business
(:mod:`fflearn.schemes`), so the same net serves FF, SymBa, the Trifecta, DF-O/DF-R, LCP and BP.

Layer = pre-norm -> linear or 3x3 conv (no bias for conv, as the Trifecta) -> ReLU -> optional
2x2 max-pool. The pre-norm stops a layer from passing its goodness straight on (Hinton's
length normalisation) or, as batch norm, keeps the information but rescales it (the Trifecta).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .feedback import fa_conv2d, fa_linear
from .goodness import pool_features, pool_scored, pooled_size
from .registry import ANCHOR_GOODNESS, GOODNESS, HEADS, LABELS, MODELS, NORMS, construct


class UnitNorm(nn.Module):
    """Scale each sample to unit L2 length (Hinton 2022), times sqrt(D) to keep unit-size values."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.flatten(1)
        scale = math.sqrt(flat.shape[1]) / (flat.norm(dim=1, keepdim=True) + 1e-6)
        return (flat * scale).view_as(x)


NORMS.register("unit", lambda shape: UnitNorm())
NORMS.register("ln", lambda shape: nn.LayerNorm(list(shape)))
NORMS.register("bn", lambda shape: nn.BatchNorm1d(shape[0]) if len(shape) == 1 else nn.BatchNorm2d(shape[0]))
NORMS.register("none", lambda shape: nn.Identity())


def make_norm(kind: str, shape: tuple[int, ...]) -> nn.Module:
    """Pre-norm (a name in :data:`fflearn.registry.NORMS`) for a layer input of ``shape`` (C,) or (C, H, W)."""
    return NORMS.get(kind)(shape)


class _FullGradReLU(torch.autograd.Function):
    """ReLU forward, identity backward: the gradient passes whatever the input's sign (loeweX's
    ``ReLU_full_grad``), so a unit switched off by the threshold loss can still come back."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        return x.clamp_min(0)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        return grad


class Layer(nn.Module):
    """One locally trained layer. ``random_feedback`` builds a fixed feedback matrix for DF-R;
    ``relu_grad``: ``exact`` (ReLU's own gradient) or ``full`` (straight through)."""

    def __init__(self, in_shape: tuple[int, ...], out_features: int, norm: str = "unit",
                 pool: bool = False, random_feedback: bool = False, peer_norm: bool = False,
                 relu_grad: str = "exact") -> None:
        super().__init__()
        self.full_grad = relu_grad == "full"
        self.conv = len(in_shape) == 3
        self.norm = make_norm(norm, in_shape)
        if self.conv:
            self.op: nn.Module = nn.Conv2d(in_shape[0], out_features, 3, padding=1, bias=False)
        else:
            self.op = nn.Linear(in_shape[0], out_features)
        self.pool = pool
        if random_feedback:
            fb = torch.empty_like(self.op.weight)
            nn.init.kaiming_uniform_(fb, a=math.sqrt(5))
            self.register_buffer("feedback", fb)
        else:
            self.feedback = None
        if peer_norm:  # running mean activity of each unit (fflearn.regularizers.PeerNormalization)
            self.register_buffer("activity", torch.zeros(out_features))
        else:
            self.activity = None
        self.out_shape: tuple[int, ...]
        if self.conv:
            h, w = in_shape[1:]
            self.out_shape = (out_features, h // 2, w // 2) if pool else (out_features, h, w)
        else:
            self.out_shape = (out_features,)

    def forward(self, x: torch.Tensor, random_feedback: bool = False) -> torch.Tensor:
        x = self.norm(x)
        if random_feedback:
            assert self.feedback is not None, "layer was built without a feedback matrix"
            w = self.op.weight
            if self.conv:
                x = fa_conv2d(x, w.to(x.dtype), self.feedback, 1)
            else:
                b = self.op.bias
                x = fa_linear(x, w.to(x.dtype), None if b is None else b.to(x.dtype), self.feedback)
        else:
            x = self.op(x)
        x = _FullGradReLU.apply(x) if self.full_grad else F.relu(x)
        if self.pool:
            x = F.max_pool2d(x, 2)
        return x


@HEADS.register("goodness")
class GoodnessHead(nn.Module):
    """Input-label modes: the score of a (sample, label) pair is the goodness of the activations."""

    all_classes = False

    def __init__(self, goodness: str = "mean_squares", cfg: object = None) -> None:
        super().__init__()
        self.fn = construct(GOODNESS, goodness, cfg)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.fn(h)


@HEADS.register("anchors")
class AnchorHead(nn.Module):
    """DF's one-pass reading: K learned class anchors; score = closeness of the features to each."""

    all_classes = True

    def __init__(self, features: int, num_classes: int, anchor_goodness: str = "neg_sqdist",
                 head_pool: str = "avg", cfg: object = None) -> None:
        super().__init__()
        self.fn = construct(ANCHOR_GOODNESS, anchor_goodness, cfg)
        self.pool = head_pool
        # small random anchors: they start nearly equal and separate as the layer learns
        self.anchors = nn.Parameter(torch.randn(num_classes, features) * 0.01)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.fn(*pool_scored(h, self.pool, self.anchors))

    def pair_scores(self, h: torch.Tensor, y: torch.Tensor, p: int) -> torch.Tensor:
        """Sample-level N-pair mining: each sample's goodness against the ``p`` other-class samples
        of the batch that are closest to it, each taken as an anchor (B, p); fewer than ``p``
        other-class samples leave -inf entries, which the softplus form ignores."""
        z = pool_features(h, self.pool)
        s = self.fn(z, z).masked_fill(y.view(-1, 1) == y.view(1, -1), float("-inf"))
        return s.topk(min(p, s.shape[1]), dim=1).values


@HEADS.register("linear")
class LinearHead(nn.Module):
    """A local classifier proxy (LCP) or BP's output layer: linear map of the pooled features;
    ``head_bias`` false gives a bias-free projection (Mono-Forward's M_i)."""

    all_classes = True

    def __init__(self, features: int, num_classes: int, head_pool: str = "avg", head_bias: bool = True) -> None:
        super().__init__()
        self.pool = head_pool
        self.fc = nn.Linear(features, num_classes, bias=head_bias)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        z, w = pool_scored(h, self.pool, self.fc.weight)
        return F.linear(z, w, self.fc.bias)


@HEADS.register("label-anchors")
class LabelAnchorHead(AnchorHead):
    """DF's Fig. 1A reading, FF style: the label enters at the input (one copy of the batch per
    candidate label, K passes to predict), and the goodness of a (sample, label) copy is the
    anchor goodness of the layer's projection against *that label's* anchor pattern."""

    all_classes = False
    needs_labels = True

    def forward(self, h: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:  # type: ignore[override]
        assert labels is not None, "label-anchors scores a copy against its own label's anchor"
        return super().forward(h).gather(1, labels.view(-1, 1)).squeeze(1)


def head_scores(head: nn.Module, h: torch.Tensor, row_labels: torch.Tensor | None) -> torch.Tensor:
    """A head's raw scores; heads that score a row against its own label get the rows' labels."""
    return head(h, row_labels) if getattr(head, "needs_labels", False) else head(h)


def by_sample(head: nn.Module, scores: torch.Tensor, b: int) -> torch.Tensor:
    """A head's output as (B, columns): all-class heads give (B, K) already; a goodness head gives
    one score per row of a batch stacked as groups of B (one group per label copy), -> (B, groups)."""
    return scores if getattr(head, "all_classes", False) else scores.view(-1, b).t()


class Net(nn.Module):
    """Label injection + layers + one head per layer."""

    def __init__(self, label: nn.Module, layers: list[Layer], heads: list[nn.Module],
                 num_classes: int, flatten: bool) -> None:
        super().__init__()
        self.label = label
        self.layers = nn.ModuleList(layers)
        self.heads = nn.ModuleList(heads)
        self.num_classes = num_classes
        self.flatten = flatten

    @property
    def conditions_input(self) -> bool:
        return bool(getattr(self.label, "conditions_input", False))

    def prepare(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Network input from normalised images (B, C, H, W): flattened for MLPs, label injected."""
        if self.flatten:
            x = x.flatten(1)
        return self.label(x, labels) if self.conditions_input else x

    def layer_params(self, i: int, label: bool = True) -> list[nn.Parameter]:
        """Parameters trained by layer i's local objective: the layer, its head, and for the first
        layer (``label``) the label embedding (the Trifecta trains it with block 0's optimiser)."""
        ps = list(self.layers[i].parameters()) + list(self.heads[i].parameters())
        if i == 0 and label:
            ps += list(self.label.parameters())
        return ps


# --- what a layer saves for its backward (memory) ---------------------------------------
def layer_storages(net: Net, x: torch.Tensor, y: torch.Tensor) -> list[dict[int, int]]:
    """Storages (address -> bytes) that autograd saves in each layer of one forward of the layer stack.

    One forward with gradients on (no backward, no heads): the pack hook only records, and returns
    nothing, so no reference cycle keeps the graph alive; the tensors are kept in a list until the
    end so that no storage address is reused meanwhile. A segment starting at layer a saves the
    same storages as here (its detached input shares the storage of layer a-1's output), so the
    saved bytes of any segment are the size of the union of its layers' storages.
    """
    exclude = {t.untyped_storage().data_ptr() for t in [*net.parameters(), *net.buffers()]}
    keep: list[torch.Tensor] = []
    per_layer: list[dict[int, int]] = []

    def pack(t: torch.Tensor) -> None:
        st = t.untyped_storage()
        if st.nbytes() and st.data_ptr() not in exclude:
            per_layer[-1][st.data_ptr()] = st.nbytes()
        keep.append(t)

    def unpack(_: Any) -> torch.Tensor:
        raise RuntimeError("layer_storages builds a graph for counting only")

    with torch.no_grad():
        h = net.prepare(x, y) if net.conditions_input else net.prepare(x)
    with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(pack, unpack):
        for layer in net.layers:
            per_layer.append({})
            h = layer(h)
    keep.clear()
    return per_layer


def segment_bytes(per_layer: list[dict[int, int]], start: int, end: int) -> int:
    union: dict[int, int] = {}
    for d in per_layer[start:end]:
        union.update(d)
    return sum(union.values())


def layer_costs(net: Net, in_shape: tuple[int, int, int]) -> list[int]:
    """Bytes each layer saves for the backward per sample of a batch (measured on a batch of two
    random images: the bytes scale with the batch, so relative costs hold at any batch size)."""
    import copy

    probe = copy.deepcopy(net).train()  # batch norm would update its running statistics
    p = next(probe.parameters())
    x = torch.randn(2, *in_shape, generator=torch.Generator().manual_seed(0)).to(p.device)
    y = torch.zeros(2, dtype=torch.long, device=p.device)
    return [sum(d.values()) // 2 for d in layer_storages(probe, x, y)]


# --- architectures ------------------------------------------------------------------------
# An architecture maps a config to (out features, max-pool after?) for each layer.
@MODELS.register("mlp")
def mlp(cfg: object) -> list[tuple[int, bool]]:
    """Fully connected layers of the widths in ``hidden`` (Hinton: 4x2000; loeweX: 3x1000)."""
    return [(h, False) for h in cfg.hidden]  # type: ignore[attr-defined]


def _conv(chans: list[int], pools: set[int]) -> object:
    def arch(cfg: object) -> list[tuple[int, bool]]:
        w = cfg.width  # type: ignore[attr-defined]
        return [(max(1, round(c * w)), i in pools) for i, c in enumerate(chans)]

    return arch


# the Trifecta's nets (REFERENCE section 2): 6 blocks, pools after 0, 2, 5; 12 blocks (~8.5M)
MODELS.register("small", _conv([128, 128, 256, 256, 256, 512], {0, 2, 5}))
MODELS.register("large", _conv([64, 128, 128, 128, 128, 256, 256, 256, 256, 512, 512, 512], {1, 5, 9}))


def build_net(cfg: object, in_shape: tuple[int, int, int], num_classes: int,
              pixel_value: float = 1.0) -> Net:
    """Build the network a config describes, for images of ``in_shape`` (C, H, W): the label
    injection, the model's layers and one head per layer, each by the registries' one rule."""
    c, h, w = in_shape
    label = construct(LABELS, cfg.label_mode, cfg, num_classes=num_classes, height=h, width=w,  # type: ignore[attr-defined]
                      value=pixel_value)
    mlp = cfg.model == "mlp"  # type: ignore[attr-defined]
    shape: tuple[int, ...] = (c * h * w,) if mlp else (c + label.extra_channels, h, w)
    fb = cfg.feedback == "random"  # type: ignore[attr-defined]
    head = cfg.head if cfg.head != "auto" else label.default_head  # type: ignore[attr-defined]
    layers: list[Layer] = []
    heads: list[nn.Module] = []
    for out, pool in MODELS.get(cfg.model)(cfg):  # type: ignore[attr-defined]
        layer = Layer(shape, out, cfg.norm, pool, random_feedback=fb,  # type: ignore[attr-defined]
                      peer_norm=cfg.peer_norm > 0, relu_grad=cfg.relu_grad)  # type: ignore[attr-defined]
        layers.append(layer)
        shape = layer.out_shape
        feats = pooled_size(shape, cfg.head_pool)  # type: ignore[attr-defined]
        heads.append(construct(HEADS, head, cfg, features=feats, num_classes=num_classes, shape=shape))
        if cfg.feedback == "direct":  # type: ignore[attr-defined]
            # DF-R, direct: a fixed random matrix from the block's class scores to this layer's output
            layer.register_buffer("direct", torch.randn(num_classes, math.prod(shape)) / math.sqrt(num_classes))
    return Net(label, layers, heads, num_classes, flatten=mlp)
