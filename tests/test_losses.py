"""Each loss recomputed by hand on tiny inputs."""

from __future__ import annotations

import math

import torch

from fflearn.losses import CrossEntropyLoss, FFLoss, NPairMarginLoss, SymBaLoss, support_fraction


def sp(v: float) -> float:
    return math.log1p(math.exp(v))


G_POS = torch.tensor([3.0, 1.0])
G_NEG = torch.tensor([[1.0, 2.5], [0.5, 2.0]])


def test_ff_loss_by_hand() -> None:
    out = FFLoss(tau=2.0)(G_POS, G_NEG)
    want0 = sp(2 - 3) + (sp(1 - 2) + sp(2.5 - 2)) / 2
    want1 = sp(2 - 1) + (sp(0.5 - 2) + sp(2 - 2)) / 2
    assert torch.allclose(out, torch.tensor([want0, want1]), atol=1e-6)


def test_symba_loss_by_hand() -> None:
    out = SymBaLoss(alpha=4.0)(G_POS, G_NEG)
    want0 = (sp(-4 * (3 - 1)) + sp(-4 * (3 - 2.5))) / 2
    want1 = (sp(-4 * (1 - 0.5)) + sp(-4 * (1 - 2))) / 2
    assert torch.allclose(out, torch.tensor([want0, want1]), atol=1e-6)


def test_npair_hinge_by_hand() -> None:
    out = NPairMarginLoss(margin=1.0, lam=0.5, form="hinge")(G_POS, G_NEG)
    # sample 0: gaps 2.0, 0.5 -> relu(1-2)=0, relu(1-0.5)=0.5 -> mean 0.25; + 0.5*max(1, 2.5)
    # sample 1: gaps 0.5, -1.0 -> 0.5, 2.0 -> mean 1.25; + 0.5*2.0
    assert torch.allclose(out, torch.tensor([0.25 + 1.25, 1.25 + 1.0]), atol=1e-6)


def test_npair_softplus_by_hand() -> None:
    s, m = 2.0, 1.0
    out = NPairMarginLoss(margin=m, lam=0.0, form="softplus", scale=s)(G_POS, G_NEG)
    want0 = math.log(1 + math.exp(s * (m - 2.0)) + math.exp(s * (m - 0.5))) / s
    want1 = math.log(1 + math.exp(s * (m - 0.5)) + math.exp(s * (m + 1.0))) / s
    assert torch.allclose(out, torch.tensor([want0, want1]), atol=1e-6)


def test_npair_only_supports_get_gradient() -> None:
    g_pos = torch.tensor([3.0], requires_grad=True)
    g_neg = torch.tensor([[1.0, 2.5]], requires_grad=True)
    NPairMarginLoss(margin=1.0, form="hinge")(g_pos, g_neg).sum().backward()
    # the pair with gap 2.0 is outside the margin: no gradient; gap 0.5 is a support pair
    assert g_neg.grad is not None
    assert g_neg.grad.tolist() == [[0.0, 0.5]]
    assert support_fraction(g_pos.detach(), g_neg.detach(), 1.0) == 0.5


def test_cross_entropy_matches_torch() -> None:
    logits = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 3.0]])
    y = torch.tensor([0, 1])
    g_pos = logits.gather(1, y[:, None]).squeeze(1)
    g_neg = torch.stack([logits[0, [1, 2]], logits[1, [0, 2]]])
    out = CrossEntropyLoss()(g_pos, g_neg)
    want = torch.nn.functional.cross_entropy(logits, y, reduction="none")
    assert torch.allclose(out, want, atol=1e-6)


def test_npair_softplus_is_additive_margin_softmax_cross_entropy() -> None:
    """The identity docs/distance-forward.md states: with goodness scores G (B, K) (cosine: CosFace;
    minus squared distance: prototype logits), (1/s) log(1 + sum_c exp(s (m - (G_y - G_c)))) equals
    (1/s) times the softmax cross-entropy of s G with the margin m taken off the true class."""
    import torch.nn.functional as F

    g = torch.Generator().manual_seed(0)
    scores = torch.rand(6, 5, generator=g) * 2 - 1  # cosine goodness in [-1, 1]
    y = torch.tensor([0, 1, 2, 3, 4, 0])
    s, m = 20.0, 0.3
    neg = torch.stack([torch.tensor([c for c in range(5) if c != t]) for t in y.tolist()])
    g_pos, g_neg = scores.gather(1, y[:, None])[:, 0], scores.gather(1, neg)
    npair = NPairMarginLoss(margin=m, lam=0.0, form="softplus", scale=s)(g_pos, g_neg)
    logits = s * (scores - m * F.one_hot(y, 5))  # CosFace: cos(theta_y) - m for the true class
    cosface = F.cross_entropy(logits, y, reduction="none") / s
    torch.testing.assert_close(npair, cosface)
    # m = 0: normalised-softmax cross-entropy over the prototypes (the ablation's "dfhead" row)
    torch.testing.assert_close(NPairMarginLoss(0.0, 0.0, "softplus", s)(g_pos, g_neg),
                               F.cross_entropy(s * scores, y, reduction="none") / s)


def test_npair_from_the_score_matrix_equals_the_pairwise_form() -> None:
    """With every wrong class a negative the learner reads the softplus N-pair loss off the (B, K)
    scores (fewer operations); it must be the same number as the pairwise form."""
    from fflearn.negatives import all_wrong, pos_neg

    g = torch.Generator().manual_seed(1)
    scores, y = torch.randn(7, 10, generator=g), torch.randint(0, 10, (7,), generator=g)
    loss = NPairMarginLoss(margin=0.2, lam=0.0, form="softplus", scale=20.0)
    assert loss.reads_scores and not NPairMarginLoss(form="hinge").reads_scores
    assert not NPairMarginLoss(lam=0.1).reads_scores
    torch.testing.assert_close(loss.from_scores(scores, y), loss(*pos_neg(scores, y, all_wrong(y, 10))))
    # its gradient keeps its digits for confident samples in float32: softmax cross-entropy's
    # true-class gradient p_y - 1 came out as 0 (100% off) once the gaps were a few units of 1/s
    g = torch.Generator().manual_seed(2)
    scores, y = torch.randn(64, 10, generator=g), torch.randint(0, 10, (64,), generator=g)
    col = y.unsqueeze(1)
    for spread in (0.5, 1.0, 2.0):
        ref = (scores * spread).double().requires_grad_()
        loss(*pos_neg(ref, y, all_wrong(y, 10))).sum().backward()
        g32 = (scores * spread).requires_grad_()
        loss.from_scores(g32, y).sum().backward()
        torch.testing.assert_close(g32.grad.double().gather(1, col), ref.grad.gather(1, col), rtol=1e-4, atol=0)
