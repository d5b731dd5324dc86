"""Update schemes: segments, locality, the APL detach pattern, DF-R feedback, BN on pos+neg."""

from __future__ import annotations

import pytest
import torch

from fflearn.api import make_config
from fflearn.learner import Learner
from fflearn.models import build_net
from fflearn.schemes import AlternatingPairs, Blocks, EndToEnd, Greedy, Segment, build_scheme


def make(method: str, model: str = "mlp", **kw):
    kw.setdefault("hidden", [16, 16, 16, 16])
    cfg = make_config(method=method, model=model, width=0.05, **kw)
    shape = (1, 8, 8) if model == "mlp" else (3, 16, 16)
    net = build_net(cfg, shape, num_classes=4)
    return cfg, net, Learner(net, build_scheme(cfg), cfg, torch.device("cpu"))


def batch(model: str = "mlp", b: int = 8):
    g = torch.Generator().manual_seed(1)
    shape = (b, 1, 8, 8) if model == "mlp" else (b, 3, 16, 16)
    return torch.randn(shape, generator=g), torch.randint(0, 4, (b,), generator=g)


def test_segments() -> None:
    assert Greedy().segments(0, 3) == [Segment(0, 1, (0,)), Segment(1, 2, (1,)), Segment(2, 3, (2,))]
    assert Blocks(2).segments(0, 5) == [Segment(0, 2, (0, 1)), Segment(2, 4, (2, 3)), Segment(4, 5, (4,))]
    alt = Blocks(2, alternate=True)
    assert alt.segments(0, 4) == [Segment(0, 2, (0, 1)), Segment(2, 4, (2, 3))]
    assert alt.segments(1, 4) == [Segment(0, 1, (0,)), Segment(1, 3, (1, 2)), Segment(3, 4, (3,))]
    assert EndToEnd().segments(7, 3) == [Segment(0, 3, (2,))]


def test_apl_pairs_alternate_as_the_reference() -> None:
    apl = AlternatingPairs()
    # even batch: blocks 1, 3, 5 detach -> pairs (0,1), (2,3), (4,5), loss at the second
    assert apl.segments(0, 6) == [Segment(0, 2, (1,)), Segment(2, 4, (3,)), Segment(4, 6, (5,))]
    # odd batch: blocks 0, 2, 4 detach -> (0), (1,2), (3,4); block 5 opens a pair with no partner:
    # in the reference it gets no loss and no update on odd batches
    assert apl.segments(1, 6) == [Segment(0, 1, (0,)), Segment(1, 3, (2,)), Segment(3, 5, (4,))]
    assert apl.optimizer_layers(3, 6) == [2, 3]
    assert apl.optimizer_layers(0, 6) == [0]
    assert apl.counter == "epoch" and apl.label_optimizers(6) == [0]
    # fflearn's earlier behaviour, kept as options
    old = AlternatingPairs(apl_parity="global", apl_last_alone=True, apl_label_shared=True)
    assert old.segments(1, 6)[-1] == Segment(5, 6, (5,)) and old.counter == "global"
    assert old.label_optimizers(6) == [0, 1]


@pytest.mark.parametrize("shared", [False, True])
def test_apl_optimisers_hold_what_the_reference_holds(shared: bool) -> None:
    """Block i's Adam holds blocks i-1 and i (conv and batch norm); the label embedding is in block
    0's optimiser only (in block 1's too with apl_label_shared)."""
    cfg, net, learner = make("trifecta", model="small", apl_label_shared=shared)
    embed = net.label.embed.weight
    for i, opt in learner.optimizers.items():
        held = {id(p) for g in opt.param_groups for p in g["params"]}
        want = {id(p) for j in ([i - 1, i] if i else [0]) for p in net.layers[j].parameters()}
        assert want <= held, i
        assert (id(embed) in held) == (i == 0 or (shared and i == 1)), i
        assert held - want - {id(embed)} == set(), i  # nothing else (the goodness heads have no parameters)


def test_apl_which_layers_change_on_even_and_odd_steps() -> None:
    """Even step: pairs (0,1), (2,3), (4,5) step blocks 1, 3, 5 (each with its predecessor): every
    layer changes, the embedding does not (block 1's optimiser does not hold it). Odd step: (0),
    (1,2), (3,4): layer 5 does not change; the embedding changes with block 0's step. With
    apl_label_shared (fflearn's earlier behaviour) block 1's step moves the embedding too."""
    x, y = batch("small")
    for shared, emb_moves in ((False, {0: False, 1: True}), (True, {0: True, 1: True})):
        cfg, net, learner = make("trifecta", model="small", apl_label_shared=shared)
        for step, unchanged in ((0, []), (1, [5])):
            before, emb = _snapshot(net), net.label.embed.weight.detach().clone()
            learner.step(x, y, step)
            changed = _changed(net, before)
            assert [i for i, c in enumerate(changed) if not c] == unchanged, (shared, step, changed)
            assert (not torch.equal(emb, net.label.embed.weight)) == emb_moves[step], (shared, step)


def test_apl_parity_restarts_each_epoch(real_small, tmp_path) -> None:  # noqa: D103
    """The pairs alternate on the batch index within the epoch (Lightning's batch_idx): with an
    odd number of batches per epoch, epoch 2 starts with an even batch again."""
    from fflearn.trainer import Trainer

    cfg = make_config(method="trifecta", model="small", width=0.0625, epochs=2, batch_size=400, limit_train=1200,
                      crop=0, rotation=0.0, out=str(tmp_path / "r"), progress=False)
    t = Trainer(cfg, dataset=real_small, verbose=False)
    seen = []
    orig = t.learner.step

    def spy(x, y, step, *a, **k):
        seen.append(step)
        return orig(x, y, step, *a, **k)

    t.learner.step = spy  # type: ignore[method-assign]
    t.run()
    assert seen == [0, 1, 2, 0, 1, 2]  # 3 batches per epoch: the second epoch restarts at 0
    glob = Trainer(cfg.replace(out=str(tmp_path / "g"), apl_parity="global"), dataset=real_small, verbose=False)
    assert glob.scheme_step() == 0 and glob.learner.scheme.counter == "global"


def _changed(net, before):
    return [any(not torch.equal(p, q) for p, q in zip(layer.parameters(), b, strict=True))
            for layer, b in zip(net.layers, before, strict=True)]


def _snapshot(net):
    return [[p.detach().clone() for p in layer.parameters()] for layer in net.layers]


def test_greedy_layer_loss_sends_no_gradient_into_earlier_layers() -> None:
    cfg, net, learner = make("symba")
    x, y = batch()
    seen = {}
    # record which layers have gradients right after each segment's backward
    for i, opt in learner.optimizers.items():
        orig = opt.step

        def step(orig=orig, i=i):
            seen[i] = [any(p.grad is not None and p.grad.abs().sum() > 0 for p in layer.parameters())
                       for layer in net.layers]
            orig()
        opt.step = step
    learner.step(x, y, 0)
    for i in range(4):
        # when layer i steps, no earlier layer holds a gradient from layer i's loss
        assert seen[i][i] and not any(seen[i][:i]), (i, seen[i])


@pytest.mark.parametrize("step,trained_by", [(0, {1: [0, 1], 3: [2, 3]}), (1, {0: [0], 2: [1, 2], 4: [3, 4]})])
def test_apl_detach_pattern_over_two_batches(step: int, trained_by: dict) -> None:
    cfg, net, learner = make("trifecta", model="small")
    net = learner.net
    x, y = batch("small")
    grads_at_step = {}
    for i, opt in learner.optimizers.items():
        orig = opt.step

        def hooked(orig=orig, i=i):
            grads_at_step[i] = [j for j, layer in enumerate(net.layers)
                                if any(p.grad is not None for p in layer.parameters())]
            orig()
        opt.step = hooked
    n = len(net.layers)
    learner.step(x, y, step)
    for loss_layer, layers in trained_by.items():
        assert grads_at_step[loss_layer] == layers, (loss_layer, grads_at_step)
    assert n == 6


def test_batchnorm_sees_positives_and_negatives_as_one_batch() -> None:
    cfg, net, learner = make("trifecta", model="small")
    x, y = batch("small", b=8)
    sizes = []
    bn = net.layers[0].norm
    assert isinstance(bn, torch.nn.BatchNorm2d)
    bn.register_forward_hook(lambda m, inp, out: sizes.append(inp[0].shape[0]))
    learner.step(x, y, 0)
    assert sizes == [16]  # 8 positives + 8 negatives in one BatchNorm call


def test_df_o_blocks_never_pass_gradient_across_blocks() -> None:
    cfg, net, learner = make("df-o")
    x, y = batch()
    at_step = {}
    for i, opt in learner.optimizers.items():
        orig = opt.step

        def hooked(orig=orig, i=i):
            at_step[i] = [j for j, layer in enumerate(net.layers)
                          if any(p.grad is not None for p in layer.parameters())]
            orig()
        opt.step = hooked
    learner.step(x, y, 0)
    # block (0,1): both losses train layers 0 and 1; block (2,3) sees no gradient from them. A
    # block with fixed cuts steps as one: one optimiser (keyed by its first layer) per block
    assert set(learner.optimizers) == {0, 2}
    assert at_step == {0: [0, 1], 2: [2, 3]}


def test_df_r_never_reads_the_forward_weight_transpose() -> None:
    """Scale layer 1's weights by a constant inside a block: under DF-R the gradient reaching
    layer 0 from layer 1's loss must not move (it goes through a fixed random matrix); under
    DF-O it does (it goes through W1 transposed)."""

    def layer0_grad(method: str, scale: float) -> torch.Tensor:
        torch.manual_seed(0)
        kw = {"feedback": "random"} if method == "df-r" else {}  # feedback alignment, layer by layer
        cfg, net, learner = make(method, hidden=[16, 16], lam=0.0, **kw)
        with torch.no_grad():
            net.layers[1].op.weight.mul_(scale)
            net.layers[1].op.bias.mul_(scale)
        x, y = batch()
        h0 = net.layers[0](net.prepare(x))
        # gradient of layer 1's loss with respect to layer 1's input, up to ReLU's mask
        inp = h0.detach().requires_grad_(True)
        h1 = net.layers[1](inp, random_feedback=(method == "df-r"))
        g_pos, g_neg = learner._scores(1, h1, y, learner.sampler(y, 4, torch.Generator().manual_seed(0)))
        learner.loss_fn(g_pos, g_neg).sum().backward()
        return inp.grad

    # for DF-R the direction is fixed by B: scaling W changes only the upstream magnitude,
    # so compare directions (cosine) rather than values
    def cos(a, b):
        return torch.nn.functional.cosine_similarity(a.flatten(), b.flatten(), dim=0)

    r1, r2 = layer0_grad("df-r", 1.0), layer0_grad("df-r", -1.0)
    o1, o2 = layer0_grad("df-o", 1.0), layer0_grad("df-o", -1.0)
    assert r1.abs().sum() > 0 and o1.abs().sum() > 0
    # flipping the sign of W1 flips DF-O's backward path (W1^T) but not DF-R's (B)
    assert cos(o1, o2) < 0.9
    assert cos(r1, r2) > cos(o1, o2)


def test_e2e_trains_every_layer_from_the_top_loss() -> None:
    cfg, net, learner = make("bp")
    x, y = batch()
    before = _snapshot(net)
    learner.step(x, y, 0)
    assert all(_changed(net, before))


def test_direct_feedback_by_hand() -> None:
    """feedback 'direct' (DF-R): inside a block, layer 0 learns from its own loss plus the block's
    error at the top layer's class scores, e = dL_1/dG_1, sent straight through its fixed random
    matrix B_0: grad W_0 = d/dW_0 [L_0 + sum(h_0 * (e B_0))]. Nothing flows back through layer 1."""
    from fflearn.negatives import pos_neg

    cfg, net, learner = make("df-r", hidden=[12, 10])
    assert cfg.feedback == "direct" and net.layers[0].direct.shape == (4, 12)
    x, y = batch()
    neg = learner.negatives(y)
    grads = {}
    opt = learner.optimizers[0]
    orig = opt.step

    def spy() -> None:
        grads["w0"] = net.layers[0].op.weight.grad.clone()
        orig()

    opt.step = spy  # type: ignore[method-assign]
    w0 = net.layers[0].op.weight.detach().clone()
    state = {k: v.clone() for k, v in net.state_dict().items()}
    learner.step(x, y, 0)
    # the same by hand, on the initial weights
    net.load_state_dict(state)
    net.zero_grad()
    h0 = net.layers[0](net.prepare(x))
    g0 = net.heads[0](h0)
    l0 = learner.loss_fn(*pos_neg(g0, y, neg)).mean()
    h1 = net.layers[1](h0.detach())
    g1 = net.heads[1](h1)
    l1 = learner.loss_fn(*pos_neg(g1, y, neg)).mean()
    (e,) = torch.autograd.grad(l1, g1, retain_graph=True)
    total = l0 + l1 + (h0 * (e @ net.layers[0].direct)).sum()
    total.backward()
    torch.testing.assert_close(grads["w0"], net.layers[0].op.weight.grad)
    assert torch.equal(w0, state["layers.0.op.weight"])
    # and it is not the backprop gradient (the error did not come through layer 1's weights)
    net.zero_grad()
    h0 = net.layers[0](net.prepare(x))
    bp = learner.loss_fn(*pos_neg(net.heads[0](h0), y, neg)).mean() + \
        learner.loss_fn(*pos_neg(net.heads[1](net.layers[1](h0)), y, neg)).mean()
    bp.backward()
    assert not torch.allclose(grads["w0"], net.layers[0].op.weight.grad)


def test_memory_partition_by_hand() -> None:
    """block_partition 'memory': a block never holds more saved activations, nor more gradients,
    than the heaviest single layer; otherwise blocks of block_size."""
    b = Blocks(3, partition="memory")
    b.set_costs([10, 9, 3, 3, 3, 2, 1, 1], [1, 1, 1, 1, 1, 4, 4, 4])
    # layer 0 and 1 alone (10 + 9 > 10); 2,3,4 (9 <= 10, grads 3 <= 4); 5 (grads 1 + 4 > 4); 6; 7
    assert [(s.start, s.end) for s in b.segments(0, 8)] == [(0, 1), (1, 2), (2, 5), (5, 6), (6, 7), (7, 8)]
    assert b.segments(1, 8) == b.segments(0, 8)  # the same cut at every step
    with pytest.raises(ValueError, match="alternate"):
        Blocks(3, alternate=True, partition="memory")


def test_memory_partition_reaches_the_single_layer_bound() -> None:
    """On the Trifecta's large net the factory's measured cut keeps a step's counted peak at the
    single-layer bound (blocks of one layer), at every batch size."""
    from fflearn.experiments.memory import measure

    for batch in (16, 64):
        mem = measure("df-o", model="large", width=0.125, batch_size=batch, block_partition="memory")
        one = measure("df-o", model="large", width=0.125, batch_size=batch, block_partition="size", block_size=1)
        assert mem["saved_activation_bytes_peak"] == one["saved_activation_bytes_peak"]
        assert mem["grad_bytes"] <= one["grad_bytes"] * 1.01
        assert len(mem["segments"]) < len(one["segments"])  # yet the light layers still train in blocks
