"""Negatives, goodness, label injection, random feedback."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fflearn.feedback import fa_conv2d, fa_linear
from fflearn.goodness import cosine, mean_squares, neg_sqdist, sum_squares
from fflearn.labels import LabelChannel, Overlay
from fflearn.negatives import all_wrong, one_wrong, pos_neg


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
    stats = StepStats(3)
    want = torch.zeros(4, 3, dtype=torch.float64)
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
            count[i] += b
            if loss is not None:
                want[0, i] += loss.double() * b
                want[3, i] += b
        stats.flush()
        torch.testing.assert_close(stats.sums, want)
        torch.testing.assert_close(stats.count, count)
    s = stats.summary()
    assert s["loss"][1] == pytest.approx(float(want[0, 1] / want[3, 1]))
    assert s["g_pos"][0] == pytest.approx(float(want[1, 0] / count[0]))
