"""Prediction: argmax over the K labels of each layer's score, per layer and as an ensemble.

Input-label modes (overlay, channel) run K passes, batched as one (K*B) batch in eval mode;
anchor and head modes score all K classes from one label-free pass. Test-time augmentation
(``test_aug``) scores each image and its mirror image in the same batch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from .config import CHOICES
from .models import Net, by_sample, head_scores
from .runtime import autocast

EVAL_BATCH = 1000  # images per evaluation batch (input-label modes: / K, since each runs K copies)


def eval_batch_size(net: Net) -> int:
    """Images per evaluation batch: input-label modes score K label copies of each image."""
    return max(100, EVAL_BATCH // net.num_classes) if net.conditions_input else EVAL_BATCH


@torch.no_grad()
def layer_scores(net: Net, x: torch.Tensor) -> list[torch.Tensor]:
    """Scores (B, K) of every layer for a batch of normalised images."""
    k = net.num_classes
    b = x.shape[0]  # not len(x): a traced or exported model keeps the batch size free
    labels = None
    if net.conditions_input:
        labels = torch.arange(k, device=x.device).repeat_interleave(b)  # group c holds label c
        h = net.prepare(x.repeat((k,) + (1,) * (x.dim() - 1)), labels)
    else:
        h = net.prepare(x)
    out = []
    for layer, head in zip(net.layers, net.heads, strict=True):
        h = layer(h)
        out.append(by_sample(head, head_scores(head, h, labels).float(), b))
    return out


@torch.no_grad()
def test_aug_scores(net: Net, x: torch.Tensor, test_aug: str = "none") -> list[torch.Tensor]:
    """Every layer's (B, K) scores under test-time augmentation ``test_aug``: ``none`` is
    :func:`layer_scores`; ``flip`` averages each layer's log-softmax over the image and its
    mirror image (one batch of 2B), so each layer votes with the geometric mean of its two
    class distributions. Only for data whose classes survive a mirror (those trained with flips)."""
    if test_aug == "none":
        return layer_scores(net, x)
    if test_aug != "flip":
        raise ValueError(f"test_aug must be one of {', '.join(CHOICES['test_aug'])}; got {test_aug!r}")
    b = x.shape[0]
    both = layer_scores(net, torch.cat([x, x.flip(-1)]))
    return [(s[:b].log_softmax(1) + s[b:].log_softmax(1)) / 2 for s in both]


def select_layers(rule: str, n: int) -> list[int]:
    """Layers that vote: ``last``, ``all``, or ``from:N`` (layers N.. ; negative N counts from the end)."""
    if rule == "last":
        return [n - 1]
    if rule == "all":
        return list(range(n))
    start = int(rule.split(":", 1)[1])
    start = start % n if start < 0 else min(start, n - 1)
    return list(range(start, n))


def ensemble(scores: list[torch.Tensor], layers: list[int]) -> torch.Tensor:
    """Sum of per-layer log-softmax scores: each layer's vote is on the same (log-probability)
    scale whatever its goodness magnitude; with one layer this is that layer's argmax."""
    return torch.stack([scores[i].log_softmax(1) for i in layers]).sum(0)


@torch.no_grad()
def evaluate(net: Net, images: torch.Tensor, labels: torch.Tensor,
             normalize: Callable[[torch.Tensor], torch.Tensor], batch_size: int = 1000,
             rule: str = "last", bf16: bool = False, test_aug: str = "none",
             rules: Sequence[str] = ()) -> dict[str, object]:
    """Test accuracy per layer and by ``rule`` on uint8 images, under test-time augmentation
    ``test_aug`` (:func:`test_aug_scores`; ``flip`` halves the batch, which holds both views);
    with ``rules``, also ``by_rule``: the accuracy of each of those rules from the same scores.
    Restores the net's mode."""
    was_training = net.training
    net.eval()
    n_layers = len(net.layers)
    votes = [select_layers(r, n_layers) for r in (rule, *rules)]
    correct = torch.zeros(n_layers + len(votes), dtype=torch.long, device=images.device)
    amp = autocast(images.device, bf16)
    if test_aug != "none":
        batch_size = max(1, batch_size // 2)
    for s in range(0, len(images), batch_size):
        x = normalize(images[s : s + batch_size])
        y = labels[s : s + batch_size]
        with amp:
            scores = test_aug_scores(net, x, test_aug)
        for i, sc in enumerate(scores):
            correct[i] += (sc.argmax(1) == y).sum()
        for j, vote in enumerate(votes):
            correct[n_layers + j] += (ensemble(scores, vote).argmax(1) == y).sum()
    net.train(was_training)
    acc = (correct.double() / max(1, len(images))).tolist()
    out: dict[str, object] = {"per_layer": acc[:n_layers], "accuracy": acc[n_layers]}
    if rules:
        out["by_rule"] = dict(zip(rules, acc[n_layers + 1 :], strict=True))
    return out
