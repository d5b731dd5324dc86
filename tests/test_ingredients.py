"""Negatives, goodness, label injection, random feedback."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fflearn.feedback import fa_conv2d, fa_linear
from fflearn.goodness import cosine, mean_squares, neg_sqdist, sum_squares
from fflearn.labels import IntrinsicClassPattern, LabelChannel, Overlay
from fflearn.negatives import HardNegatives, all_wrong, one_wrong, pos_neg


@settings(max_examples=50, deadline=None)
@given(k=st.integers(2, 20), b=st.integers(1, 64), seed=st.integers(0, 2**31))
def test_one_wrong_never_returns_true_label(k: int, b: int, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, k, (b,), generator=g)
    neg = one_wrong(y, k, g)
    assert neg.shape == (b, 1)
    assert (neg[:, 0] != y).all()
    assert ((neg >= 0) & (neg < k)).all()


def test_one_wrong_is_uniform_over_wrong_classes() -> None:
    g = torch.Generator().manual_seed(0)
    y = torch.zeros(50000, dtype=torch.long)
    counts = torch.bincount(one_wrong(y, 10, g)[:, 0], minlength=10)
    assert counts[0] == 0
    assert (counts[1:] - 50000 / 9).abs().max() < 300  # ~5 sigma of a binomial


@settings(max_examples=30, deadline=None)
@given(k=st.integers(2, 12), b=st.integers(1, 16), seed=st.integers(0, 1000))
def test_all_wrong_is_every_other_class(k: int, b: int, seed: int) -> None:
    y = torch.randint(0, k, (b,), generator=torch.Generator().manual_seed(seed))
    neg = all_wrong(y, k)
    assert neg.shape == (b, k - 1)
    for i in range(b):
        assert sorted(neg[i].tolist()) == [c for c in range(k) if c != y[i]]


@settings(max_examples=50, deadline=None)
@given(k=st.integers(2, 12), b=st.integers(1, 32), mix=st.floats(0, 1), scale=st.floats(0, 50),
       seed=st.integers(0, 2**31))
def test_hard_negatives_never_return_the_true_label(k: int, b: int, mix: float, scale: float, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    hard = HardNegatives(100, k, mix, scale, torch.device("cpu"))
    hard.table.normal_(0, 10, generator=g)
    idx = torch.randint(0, 100, (b,), generator=g)
    y = torch.randint(0, k, (b,), generator=g)
    hard.table[idx, y] = 1e4  # the true label looking hardest of all must still never be drawn
    p = hard.probabilities(idx, y)
    assert torch.allclose(p.sum(1), torch.ones(b)) and (p.gather(1, y.unsqueeze(1)) == 0).all()
    neg = hard(y, k, g, idx=idx)
    assert neg.shape == (b, 1) and (neg[:, 0] != y).all()


def test_hard_negative_probabilities_by_hand() -> None:
    hard = HardNegatives(3, 4, hard_mix=0.5, hard_scale=2.0, device=torch.device("cpu"))
    hard.table[1] = torch.tensor([9.0, 0.5, -1.0, 0.0])  # sample 1, true label 0
    p = hard.probabilities(torch.tensor([1, 2]), torch.tensor([0, 3]))
    w = torch.tensor([math.exp(1.0), math.exp(-2.0), 1.0])  # exp(2 * margin) of labels 1, 2, 3
    expect1 = 0.5 * w / w.sum() + 0.5 / 3
    assert torch.allclose(p[0], torch.cat([torch.zeros(1), expect1]))
    # sample 2 was never measured: every wrong label ties, so the draw is uniform
    assert torch.allclose(p[1], torch.tensor([1 / 3, 1 / 3, 1 / 3, 0.0]))


def test_hard_negatives_follow_the_measured_margins() -> None:
    g = torch.Generator().manual_seed(0)
    hard = HardNegatives(4, 10, hard_mix=0.2, hard_scale=1.0, device=torch.device("cpu"))
    idx, y = torch.tensor([0, 3]), torch.tensor([4, 7])
    neg = torch.tensor([[9], [1]])
    hard.observe(idx, neg, g_pos=torch.tensor([5.0, 2.0]), g_neg=torch.tensor([[6.0], [-8.0]]))
    assert hard.table[0, 9] == 1.0 and hard.table[3, 1] == -10.0
    assert hard.table.count_nonzero() == 2  # nothing else touched
    counts = torch.bincount(hard(y.repeat(5000), 10, g, idx=idx.repeat(5000))[0::2, 0], minlength=10)
    # sample 0: label 9 (margin +1) has weight e against 1 for the 8 untried labels
    p9 = 0.8 * math.e / (math.e + 8) + 0.2 / 9
    assert abs(counts[9] / 5000 - p9) < 0.03 and counts[4] == 0
    counts3 = torch.bincount(hard(y.repeat(5000), 10, g, idx=idx.repeat(5000))[1::2, 0], minlength=10)
    assert counts3[1] / 5000 < 0.2 / 9 + 0.01  # label 1 was easy for sample 3: drawn almost only by mix


def test_hard_negatives_stay_finite_when_a_goodness_is_not() -> None:
    spare = HardNegatives(2, 10, hard_mix=0.2, hard_scale=1.0, device=torch.device("cpu"))
    spare.observe(torch.tensor([0, 1]), torch.tensor([[2], [3]]), torch.tensor([math.nan, 0.0]),
                 torch.tensor([[1.0], [math.inf]]))
    assert spare.table.isfinite().all()  # a NaN goodness leaves the draws valid (the NaN guard reports it)
    assert spare(torch.tensor([0, 0]), 10, idx=torch.tensor([0, 1])).shape == (2, 1)


def test_pos_neg_selection() -> None:
    scores = torch.arange(12.0).view(3, 4)
    y = torch.tensor([0, 3, 1])
    neg = all_wrong(y, 4)
    p, n = pos_neg(scores, y, neg)
    assert p.tolist() == [0.0, 7.0, 9.0]
    assert n.tolist() == [[1, 2, 3], [4, 5, 6], [8, 10, 11]]


def test_goodness_functions_by_hand() -> None:
    h = torch.tensor([[1.0, -2.0, 3.0, 0.0]])
    assert mean_squares(h).item() == 14 / 4
    assert sum_squares(h).item() == 14
    assert mean_squares(h.view(1, 1, 2, 2)).item() == 14 / 4
    z = torch.tensor([[1.0, 2.0]])
    a = torch.tensor([[1.0, 2.0], [3.0, 2.0], [0.0, 0.0]])
    assert torch.allclose(neg_sqdist(z, a), torch.tensor([[0.0, -2.0, -2.5]]))
    assert torch.allclose(cosine(z, a[:2]), torch.tensor([[1.0, 7 / (5**0.5 * 13**0.5)]]))



def test_cosine_gradients_match_normalize() -> None:
    """The cosine's hand-written backward (no normalised copy of z) gives the gradients autograd
    takes through F.normalize, for the features, the anchors, and both at once (pair mining
    scores z against itself); gradcheck confirms them against finite differences."""
    g = torch.Generator().manual_seed(0)
    z = torch.randn(5, 7, generator=g, dtype=torch.float64, requires_grad=True)
    a = torch.randn(3, 7, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(5, 3, generator=g, dtype=torch.float64)
    F = torch.nn.functional
    want = (F.normalize(z, dim=1) @ F.normalize(a, dim=1).t() * w).sum()
    got = (cosine(z, a) * w).sum()
    torch.testing.assert_close(got, want)
    torch.testing.assert_close(torch.autograd.grad(got, (z, a)), torch.autograd.grad(want, (z, a)))
    self_want = (F.normalize(z, dim=1) @ F.normalize(z, dim=1).t()).pow(2).sum()
    self_got = cosine(z, z).pow(2).sum()
    torch.testing.assert_close(torch.autograd.grad(self_got, z), torch.autograd.grad(self_want, z))
    assert torch.autograd.gradcheck(cosine, (z, a))

def test_overlay_writes_the_right_pixels() -> None:
    x = torch.full((3, 1, 4, 4), 0.5)
    out = Overlay(num_classes=5, value=2.0)(x, torch.tensor([0, 4, 2]))
    flat = out.flatten(1)
    for i, lab in enumerate([0, 4, 2]):
        want = torch.zeros(5)
        want[lab] = 2.0
        assert torch.equal(flat[i, :5], want)
        assert (flat[i, 5:] == 0.5).all()
    assert (x == 0.5).all()  # input untouched


def test_label_channel_appends_a_learned_map() -> None:
    lc = LabelChannel(num_classes=3, height=4, width=4)
    x = torch.zeros(2, 3, 4, 4)
    out = lc(x, torch.tensor([1, 2]))
    assert out.shape == (2, 4, 4, 4)
    assert torch.equal(out[0, 3].flatten(), lc.embed.weight[1].detach())
    out.sum().backward()
    assert lc.embed.weight.grad is not None


def test_intrinsic_class_pattern_adds_its_label_s_fixed_pattern_to_every_channel() -> None:
    """ICP: image + scale * the label's +-1 pattern over the H x W pixels, the same pattern in every
    channel and for the flat (MLP) input as for the image; fixed by the seed, learned by nothing."""
    icp = IntrinsicClassPattern(num_classes=3, height=4, width=4, icp_scale=0.5, icp_seed=7)
    assert not list(icp.parameters()) and icp.patterns.shape == (3, 16)
    assert set(icp.patterns.unique().tolist()) == {-0.5, 0.5}
    assert not torch.equal(icp.patterns[0], icp.patterns[1])  # classes differ (16 signs: a tie is 2**-16)
    x = torch.randn(2, 3, 4, 4)
    y = torch.tensor([2, 0])
    out = icp(x, y)
    for i, lab in enumerate(y.tolist()):
        for c in range(3):  # by hand: every channel gets the same pattern
            torch.testing.assert_close(out[i, c].flatten(), x[i, c].flatten() + icp.patterns[lab])
    torch.testing.assert_close(icp(x.flatten(1), y), out.flatten(1))  # the MLP's flat input alike
    again = IntrinsicClassPattern(num_classes=3, height=4, width=4, icp_scale=0.5, icp_seed=7)
    assert torch.equal(again.patterns, icp.patterns)  # the seed fixes the patterns
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="icp_scale"):
            IntrinsicClassPattern(num_classes=3, icp_scale=bad)


def test_fa_linear_uses_feedback_not_weight_transpose() -> None:
    torch.manual_seed(0)
    x = torch.randn(5, 4, requires_grad=True)
    w = torch.randn(3, 4, requires_grad=True)
    b = torch.randn(3, requires_grad=True)
    fb = torch.randn(3, 4)
    out = fa_linear(x, w, b, fb)
    assert torch.allclose(out, x @ w.t() + b)
    grad = torch.randn(5, 3)
    out.backward(grad)
    assert torch.allclose(x.grad, grad @ fb)  # B, not W
    assert not torch.allclose(x.grad, grad @ w.detach())
    assert torch.allclose(w.grad, grad.t() @ x.detach())  # the weight gradient is exact
    # the input gradient does not depend on W at all
    x2 = x.detach().clone().requires_grad_(True)
    fa_linear(x2, (w * 7).detach().requires_grad_(True), b, fb).backward(grad)
    assert torch.allclose(x2.grad, x.grad)


def test_fa_conv_uses_feedback_kernel() -> None:
    torch.manual_seed(0)
    x = torch.randn(2, 3, 6, 6, requires_grad=True)
    w = torch.randn(4, 3, 3, 3, requires_grad=True)
    fb = torch.randn(4, 3, 3, 3)
    out = fa_conv2d(x, w, fb, 1)
    assert torch.allclose(out, torch.nn.functional.conv2d(x, w, padding=1), atol=1e-5)
    grad = torch.randn_like(out)
    out.backward(grad)
    ref_x = x.detach().clone().requires_grad_(True)
    torch.nn.functional.conv2d(ref_x, fb, padding=1).backward(grad)  # what B-feedback should give
    assert torch.allclose(x.grad, ref_x.grad, atol=1e-5)
    ref_w = w.detach().clone().requires_grad_(True)
    torch.nn.functional.conv2d(x.detach(), ref_w, padding=1).backward(grad)
    assert torch.allclose(w.grad, ref_w.grad, atol=1e-4)


def test_step_stats_sum_what_the_layers_recorded() -> None:
    """StepStats adds a step's layers in one go at flush: the totals must equal the per-layer sums
    recomputed by hand, with a metrics-only layer (no loss), a repeated layer pattern over two
    steps (its device index is cached) and a layer whose negatives differ in number."""
    from fflearn.learner import StepStats

    g = torch.Generator().manual_seed(0)
    margin = 0.3
    stats = StepStats(3, margin=margin)
    want = torch.zeros(5, 3, dtype=torch.float64)  # loss, g_pos, g_neg, support, n_loss
    count = torch.zeros(3, dtype=torch.float64)
    steps = [
        [(0, 8, 9, True), (1, 8, 9, False), (2, 8, 9, True)],
        [(0, 8, 9, True), (1, 8, 9, False), (2, 8, 9, True)],  # same pattern again
        [(2, 5, 1, True), (1, 5, 3, True)],  # another order, M differs between layers
    ]
    for step in steps:
        for i, b, m, has_loss in step:
            pos, neg = torch.randn(b, generator=g), torch.randn(b, m, generator=g)
            loss = torch.rand((), generator=g) if has_loss else None
            stats.add(i, pos, neg, loss)
            want[1, i] += pos.double().sum()
            want[2, i] += neg.double().mean(1).sum()
            want[3, i] += (pos.unsqueeze(1) - neg < margin).double().mean() * b  # share of support pairs
            count[i] += b
            if loss is not None:
                want[0, i] += loss.double() * b
                want[4, i] += b
        stats.flush()
        torch.testing.assert_close(stats.sums, want)
        torch.testing.assert_close(stats.count, count)
    s = stats.summary()
    assert s["loss"][1] == pytest.approx(float(want[0, 1] / want[4, 1]))
    assert s["g_pos"][0] == pytest.approx(float(want[1, 0] / count[0]))
    assert s["support"][2] == pytest.approx(float(want[3, 2] / count[2]))
    assert 0 < s["support"][2] < 1


@pytest.mark.parametrize("scheme", ["greedy", "apl"])
def test_learner_records_the_last_layers_margin_for_hard_negatives(scheme: str) -> None:
    """negatives 'hard': each step writes g_neg - g_pos of the deepest loss layer (for APL on 3
    layers: layer 1 on even steps, where layer 2 opens a pair with no partner, layer 2 on odd
    ones), at (sample index, drawn negative) and nowhere else."""
    from fflearn import make_config
    from fflearn.errors import ConfigError
    from fflearn.learner import Learner
    from fflearn.models import build_net
    from fflearn.schemes import build_scheme

    cfg = make_config(method="symba", hidden=[16, 16, 16], negatives="hard", scheme=scheme)
    net = build_net(cfg, (1, 8, 8), 10)
    with pytest.raises(ConfigError, match="negatives 'hard'"):
        Learner(net, build_scheme(cfg), cfg, torch.device("cpu"))  # no training-set size
    learner = Learner(net, build_scheme(cfg), cfg, torch.device("cpu"), num_train=50)
    assert learner.sampler is not None
    g = torch.Generator().manual_seed(0)
    for step in range(2):
        idx = torch.randperm(50, generator=g)[:12]
        x, y = torch.rand(12, 1, 8, 8, generator=g), torch.randint(0, 10, (12,), generator=g)
        before = learner.sampler.table.clone()  # (a new margin equal to the old one: never in practice)
        learner.step(x, y, step, generator=g, idx=idx)
        deepest = 2 if scheme == "greedy" or step % 2 else 1
        assert learner._deepest is not None and learner._deepest[0] == deepest
        _, g_pos, g_neg = learner._deepest
        changed = (learner.sampler.table != before).nonzero().tolist()
        drawn = learner.sampler.table[idx].ne(before[idx]).nonzero()
        assert len(changed) == len(drawn) == 12  # one entry per sample of the batch, none elsewhere
        assert drawn[:, 0].tolist() == list(range(12))
        neg = drawn[:, 1]
        assert (neg != y).all()
        torch.testing.assert_close(learner.sampler.table[idx, neg], g_neg[:, 0] - g_pos)
    with pytest.raises(ConfigError, match="sample indices"):
        learner.step(x, y, 2, generator=g)


def test_label_anchor_head_scores_each_copy_against_its_own_label() -> None:
    """DF's FF-style reading: a copy with label c is scored by the anchor goodness of its features
    against anchor c (and K copies give the K class scores of the one-pass anchor head)."""
    from fflearn.models import AnchorHead, LabelAnchorHead, by_sample, head_scores

    torch.manual_seed(0)
    head = LabelAnchorHead(features=6, num_classes=3, anchor_goodness="cosine", head_pool="flat")
    h = torch.randn(4, 6)
    labels = torch.tensor([2, 0, 1, 2])
    z, a = torch.nn.functional.normalize(h, dim=1), torch.nn.functional.normalize(head.anchors, dim=1)
    want = torch.stack([z[i] @ a[labels[i]] for i in range(4)])
    torch.testing.assert_close(head_scores(head, h, labels), want)
    one_pass = AnchorHead(6, 3, "cosine", "flat")
    one_pass.anchors = head.anchors
    b = 2  # two samples, K = 3 copies each, grouped by label as the learner stacks them
    rows = torch.arange(3).repeat_interleave(b)
    hh = torch.randn(b, 6).repeat(3, 1)
    torch.testing.assert_close(by_sample(head, head_scores(head, hh, rows), b), one_pass(hh[:b]))


def test_pair_scores_take_the_closest_other_class_samples() -> None:
    from fflearn.models import AnchorHead

    head = AnchorHead(features=2, num_classes=2, anchor_goodness="cosine", head_pool="flat")
    h = torch.tensor([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [-1.0, 0.0]])
    y = torch.tensor([0, 0, 1, 1])
    out = head.pair_scores(h, y, 2)  # each sample against the two samples of the other class
    cos = torch.nn.functional.normalize(h, dim=1) @ torch.nn.functional.normalize(h, dim=1).t()
    want = torch.stack([cos[i][y != y[i]].sort(descending=True).values for i in range(4)])
    torch.testing.assert_close(out, want)
    assert head.pair_scores(h, y, 5).shape == (4, 4)  # at most B columns; same-class entries are -inf
    assert torch.isinf(head.pair_scores(h, y, 5)[:, -1]).all()


def test_loewex_ff_options_by_hand() -> None:
    """relu_grad full: ReLU forward, identity backward; sum_squares_minus_width: sum h^2 - D."""
    from fflearn.goodness import sum_squares_minus_width
    from fflearn.models import Layer

    h = torch.tensor([[1.0, -2.0, 3.0], [0.5, 0.5, 0.0]])
    torch.testing.assert_close(sum_squares_minus_width(h), torch.tensor([14.0 - 3, 0.5 - 3]))
    for mode, want in (("exact", [1.0, 0.0]), ("full", [1.0, 1.0])):
        layer = Layer((2,), 2, norm="none", relu_grad=mode)
        with torch.no_grad():
            layer.op.weight.copy_(torch.eye(2))
            layer.op.bias.zero_()
        x = torch.tensor([[1.0, -1.0]], requires_grad=True)
        out = layer(x)
        assert out.tolist() == [[1.0, 0.0]]  # the forward is ReLU either way
        out.sum().backward()
        assert x.grad.tolist() == [want], mode  # the negative unit passes its gradient only with 'full'


def test_flat_heads_score_a_channels_last_map_as_a_contiguous_one() -> None:
    """Flat heads read a channels-last map in its memory order, with their weight's columns
    permuted to match: the scores and every gradient equal those of the same map stored
    contiguously, and the gradient reaching the map keeps its layout."""
    from fflearn.models import AnchorHead, LinearHead

    g = torch.Generator().manual_seed(1)
    x = torch.randn(4, 3, 5, 2, generator=g)
    for head in (AnchorHead(30, 6, "cosine", "flat"), LinearHead(30, 6, "flat")):
        out = []
        for h in (x.clone().requires_grad_(), x.clone().to(memory_format=torch.channels_last).requires_grad_()):
            s = head(h)
            grads = torch.autograd.grad(s.pow(2).sum(), [h, *head.parameters()])
            out.append((s, grads))
        torch.testing.assert_close(out[0][0], out[1][0])
        for a, b in zip(out[0][1], out[1][1], strict=True):
            torch.testing.assert_close(a, b)
        assert out[1][1][0].is_contiguous(memory_format=torch.channels_last)
