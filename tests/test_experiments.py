"""The papers' experiments: memory count, noise, online learning, plots, report, their CLI."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch
from torch import nn

from conftest import DATASET
from fflearn.cli import main
from fflearn.errors import ConfigError
from fflearn.experiments import memory, noise, online, plot, report

PNG = b"\x89PNG\r\n\x1a\n"


# --- fixtures: two briefly trained tiny runs on real MNIST -------------------------------------
def _train(method: str, out: Path, dataset, data_root: Path) -> Path:
    from fflearn.api import make_config, train

    cfg = make_config(method=method, dataset=DATASET, model="mlp", hidden=[128, 128], epochs=2, batch_size=64,
                      limit_train=2000, limit_test=400, data_dir=str(data_root), out=str(out), progress=False)
    train(cfg, overwrite=True, dataset=dataset)
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory, real_small, data_root) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("runs")
    return {m: _train(m, root / f"{m}-mnist", real_small, data_root) for m in ("df", "bp")}


# --- memory ---------------------------------------------------------------------------------
def test_saved_tensor_counter_by_hand():
    """Linear -> ReLU -> Linear -> ReLU, sum: autograd saves the input x (B x D; the first
    weight's gradient needs it), the first ReLU output (B x H1; the second linear's input is the
    same storage, counted once) and the second ReLU output (B x H2). Weights are excluded."""
    b, d, h1, h2 = 5, 7, 11, 3
    net = nn.Sequential(nn.Linear(d, h1), nn.ReLU(), nn.Linear(h1, h2), nn.ReLU())
    x = torch.randn(b, d)
    with memory.SavedTensorCounter(net.parameters()) as c:
        loss = net(x).sum()
        assert c.current == 4 * b * (d + h1 + h2)
        loss.backward()
    assert c.peak == 4 * b * (d + h1 + h2)
    assert c.current == 0 and not c.live  # the graph's saved tensors were released by backward


def test_counter_sees_freed_graphs():
    """Two graphs one after the other: the peak is the larger one, not the sum."""
    w = nn.Parameter(torch.randn(4, 4))
    with memory.SavedTensorCounter([w]) as c:
        for n in (10, 30):
            (torch.relu(torch.randn(n, 4) @ w)).sum().backward()
    assert c.peak == 4 * 30 * 4 * 2  # x (30x4) and the ReLU output (30x4)
    assert c.current == 0


def test_architecture_limit_by_hand():
    """Layer = linear -> ReLU (norm none): a layer saves its input and its output. On a 784-H1-H2
    MLP, BP's layer stack saves 784 + H1 + H2 floats per sample; greedy's largest segment is
    max(784 + H1, H1 + H2); blocks of 2 hold the whole net."""
    h1, h2, bsz = 48, 16, 6
    lcp = memory.measure("lcp", model="mlp", hidden=[h1, h2], batch_size=bsz, norm="none")
    assert lcp["all_layers_saved_bytes"] == 4 * bsz * (784 + h1 + h2)
    assert lcp["largest_segment_saved_bytes"] == 4 * bsz * (784 + h1)
    assert lcp["arch_limit"] == pytest.approx((784 + h1) / (784 + h1 + h2))
    dfo = memory.measure("df-o", model="mlp", hidden=[h1, h2], batch_size=bsz, norm="none")
    assert dfo["arch_limit"] == 1.0
    # parameters by hand: two linear layers with bias + two linear heads (LCP classifier proxies)
    n_params = (784 * h1 + h1) + (h1 * h2 + h2) + (h1 * 10 + 10) + (h2 * 10 + 10)
    assert lcp["param_bytes"] == 4 * n_params
    assert lcp["optimizer_bytes"] >= 2 * 4 * n_params  # Adam: exp_avg + exp_avg_sq (+ step counters)
    assert lcp["optimizer_bytes"] <= 2 * 4 * n_params + 8 * 16


def test_local_methods_free_each_segment():
    kw = {"model": "small", "width": 0.125, "batch_size": 8, "block_size": 2, "head_pool": "avg"}
    res = {r["method"]: r for r in memory.run_memory(["bp", "df-o", "lcp"], **kw)}
    for r in res.values():
        assert r["saved_bytes_left_after_step"] == 0
        assert r["peak_bytes"] == sum(r[k] for k in ("saved_activation_bytes_peak", "param_bytes", "buffer_bytes",
                                                     "grad_bytes", "optimizer_bytes"))
    assert res["df-o"]["saved_activation_bytes_peak"] < res["bp"]["saved_activation_bytes_peak"]
    assert res["lcp"]["saved_activation_bytes_peak"] < res["df-o"]["saved_activation_bytes_peak"]
    assert res["df-o"]["ratio_to_bp"] == pytest.approx(res["df-o"]["peak_bytes"] / res["bp"]["peak_bytes"])
    assert res["df-o"]["ratio_to_bp"] < 1
    assert res["lcp"]["grad_bytes"] < res["bp"]["grad_bytes"]  # only one layer's grads live at a time


# --- noise ----------------------------------------------------------------------------------
@pytest.mark.parametrize("bits", [2, 3, 4, 8])
def test_quantisation_levels(bits):
    t = torch.randn(300, 40) * 3
    q = noise.quantize_(t.clone(), bits)
    assert q.unique().numel() <= 2**bits
    step = t.abs().max() / (2 ** (bits - 1) - 1)
    assert (q - t).abs().max() <= step / 2 + 1e-5
    if bits == 8:
        assert q.unique().numel() > 2**6  # fine quantisation keeps many values


def test_noise_level0_exact_and_strong_noise_hurts(runs):
    from fflearn.runs import load_run

    t = load_run(runs["df"])
    before = copy.deepcopy(t.net.state_dict())
    clean = t.evaluate(t.data.test_x, t.data.test_y)["accuracy"]
    assert clean > 0.5  # really trained
    rows = noise.noise_curve(t, "weight", levels=1, draws=3)
    assert rows[0]["level"] == 0 and rows[0]["mean_accuracy"] == clean
    assert rows[1]["draws"] == 3 and rows[1]["std_accuracy"] >= 0
    for kind in noise.KINDS:
        assert noise.noisy_accuracy(t, kind, None) == clean
    strong = [noise.noisy_accuracy(t, "weight", 2.0, seed=s) for s in range(3)]
    assert sum(strong) / 3 < clean - 0.03
    assert noise.noisy_accuracy(t, "activation", 3.0) < clean - 0.03
    after = t.net.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # the loaded weights are untouched


def test_spare_heads_leaves_heads_and_label_maps_exact(runs):
    from fflearn.runs import load_run

    t = load_run(runs["df"])
    net = copy.deepcopy(t.net)
    heads = {k: v.clone() for k, v in net.state_dict().items() if not k.startswith("layers.")}
    noise.add_weight_noise(net, 0.5, torch.Generator().manual_seed(0), heads=False)
    noise.quantize_weights(net, 2, heads=False)
    after = net.state_dict()
    assert heads and all(torch.equal(v, after[k]) for k, v in heads.items())  # anchors untouched
    assert any(not torch.equal(a, b) for a, b in zip(net.layers.parameters(), t.net.layers.parameters(), strict=True))
    assert len(noise.weight_arrays(t.net, heads=False)) < len(noise.weight_arrays(t.net))


def test_noise_cli_json(runs, tmp_path, capsys):
    out = tmp_path / "noise.json"
    rc = main(["experiment", "noise", str(runs["df"]), str(runs["bp"]), "--kinds", "quant,activation",
               "--levels", "2", "--draws", "2", "--limit-test", "200", "--json", str(out), "--out", str(tmp_path)])
    assert rc == 0
    res = json.loads(out.read_text())["results"]
    assert len(res) == 2 * 2 * 3  # runs x kinds x (level 0 + 2 levels)
    for r in res:
        assert {"run", "method", "kind", "level", "mean_accuracy", "std_accuracy"} <= set(r)
    assert {r["method"] for r in res} == {"df", "bp"}
    for kind in ("quant", "activation"):
        png = tmp_path / f"noise-{kind}.png"
        assert png.read_bytes()[:8] == PNG and png.stat().st_size > 1000
    assert "L2" in capsys.readouterr().out
    assert main(["experiment", "noise", str(runs["df"]), "--kinds", "weight", "--recalibrate-bn", "-1"]) == 2


# --- plots and report -----------------------------------------------------------------------
def test_plots_written(runs, tmp_path):
    paths = plot.plot_runs([runs["df"], runs["bp"]], tmp_path)
    assert [p.name for p in paths] == [f"{n}.{f}" for n in ("curves", "layers", "loss") for f in ("png", "pdf")]
    for p in paths:
        assert p.read_bytes()[:8] == PNG if p.suffix == ".png" else p.read_bytes()[:5] == b"%PDF-"
        assert p.stat().st_size > 1000


def test_plot_default_folder_and_bad_folder(runs, tmp_path, capsys):
    assert main(["plot", str(runs["bp"])]) == 0
    assert (runs["bp"] / "curves.png").stat().st_size > 1000
    assert main(["plot", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "metrics.jsonl" in err[0]


def test_report_and_plots_take_a_run_not_evaluated_yet(runs, tmp_path):
    """A run still in its first evaluation period (eval_every past the epochs done: an epoch
    record with a loss but no accuracy, no summary.json) has no bars in ``layers`` and "-" in the
    report's table, beside a finished run that keeps its figures."""
    import shutil

    busy = tmp_path / "busy"
    busy.mkdir()
    shutil.copy(runs["df"] / "config.yaml", busy / "config.yaml")
    first = json.loads((runs["df"] / "metrics.jsonl").read_text().splitlines()[0])
    first = {k: v for k, v in first.items() if "accuracy" not in k}
    (busy / "metrics.jsonl").write_text(json.dumps(first) + "\n")
    assert [p.name for p in plot.plot_runs([busy, runs["bp"]], tmp_path / "plots")][2:4] == ["layers.png", "layers.pdf"]
    text = report.build_report([busy, runs["bp"]], tmp_path / "report.md").read_text()
    row = next(line for line in text.splitlines() if line.startswith("| busy |"))
    assert row.split("|")[7].strip() == "-"  # test acc %: none yet
    summary = json.loads((runs["bp"] / "summary.json").read_text())
    assert f"{100 * summary['test_accuracy']:.2f}" in text


def test_report_has_table_and_plots(runs, tmp_path, capsys):
    out = report.build_report([runs["df"], runs["bp"]], tmp_path / "report.md")
    text = out.read_text()
    assert "| run | method | dataset | model | seed | epochs | test acc % |" in text
    label = "MNIST" if DATASET == "mnist" else "Fashion-MNIST"
    assert f"| df-mnist | df | {label}" in text and f"| bp-mnist | bp | {label}" in text
    summary = json.loads((runs["df"] / "summary.json").read_text())
    assert f"{100 * summary['test_accuracy']:.2f}" in text
    assert "Warning" not in text and "warning" not in capsys.readouterr().err  # one group: like with like
    # MLP runs stand beside no paper figure (the papers' figures are for conv nets) ...
    beside = text.split("## Ours beside the papers")[1].split("## Curves")[0]
    assert "99.70" not in beside and "93.89" not in beside and "no paper number" in beside
    # ... while the full table of the papers' numbers is there
    assert "99.7" in text.split("## All paper numbers")[1]
    for name in ("curves", "layers", "loss"):
        assert f"](report_plots/{name}.png)" in text
        assert (tmp_path / "report_plots" / f"{name}.png").stat().st_size > 1000


def test_report_groups_like_with_like_and_averages_seeds(runs, tmp_path, capsys):
    """Two more 'seeds' of the DF run (copies with their seed and accuracy changed) give one row with
    the mean and sd over three seeds; a run on fewer training images is another group, with a warning."""
    import shutil
    import statistics

    import yaml

    accs = [json.loads((runs["df"] / "summary.json").read_text())["test_accuracy"]]
    dirs = [runs["df"]]
    for seed, acc in ((1, 0.5), (2, 0.25)):
        d = tmp_path / f"df-seed{seed}"
        shutil.copytree(runs["df"], d)
        cfg = yaml.safe_load((d / "config.yaml").read_text())
        (d / "config.yaml").write_text(yaml.safe_dump({**cfg, "seed": seed}))
        summ = json.loads((d / "summary.json").read_text())
        (d / "summary.json").write_text(json.dumps({**summ, "test_accuracy": acc}))
        dirs.append(d)
        accs.append(acc)
    small = tmp_path / "bp-fewer"
    shutil.copytree(runs["bp"], small)
    cfg = yaml.safe_load((small / "config.yaml").read_text())
    (small / "config.yaml").write_text(yaml.safe_dump({**cfg, "limit_train": 500}))
    text = report.build_report([*dirs, runs["bp"], small], tmp_path / "r.md").read_text()
    mean, sd = 100 * statistics.fmean(accs), 100 * statistics.stdev(accs)
    row = next(ln for ln in text.splitlines() if "| df | - | 3 |" in ln)
    assert f"{mean:.2f} ± {sd:.2f}" in row
    assert "first 500 training images" in text and "Warning" in text
    assert "compared within a group only" in capsys.readouterr().err
    # --json: the same means, a row per (group, method), with the runs each averages
    js = tmp_path / "r.json"
    assert main(["report", *map(str, [*dirs, runs["bp"], small]), "--out", str(tmp_path / "r2.md"), "--json", str(js)]) == 0
    rows = json.loads(js.read_text())["rows"]
    (df,) = [r for r in rows if r["method"] == "df"]
    assert df["seeds"] == 3 and df["runs"] == [d.name for d in dirs]
    assert df["test_accuracy_mean"] == pytest.approx(mean / 100) and df["test_accuracy_sd"] == pytest.approx(sd / 100)
    assert len([r for r in rows if r["method"] == "bp"]) == 2  # the smaller run is its own group
    # a run of the same method and group with another setting is its own row, not a fourth seed
    other = tmp_path / "df-other-lr"
    shutil.copytree(runs["df"], other)
    cfg = yaml.safe_load((other / "config.yaml").read_text())
    (other / "config.yaml").write_text(yaml.safe_dump({**cfg, "seed": 3, "lr": cfg["lr"] * 10,
                                                       "params": {"focal_gamma": 2.0}}))
    assert main(["report", *map(str, [*dirs, other]), "--out", str(tmp_path / "r3.md"), "--json", str(js)]) == 0
    rows = json.loads(js.read_text())["rows"]
    by_variant = {r["variant"]: r for r in rows}
    assert set(by_variant) == {f"focal_gamma None, lr {cfg['lr']}", f"focal_gamma 2.0, lr {cfg['lr'] * 10}"}
    three = by_variant[f"focal_gamma None, lr {cfg['lr']}"]
    assert three["seeds"] == 3 and three["test_accuracy_mean"] == pytest.approx(mean / 100)
    assert by_variant[f"focal_gamma 2.0, lr {cfg['lr'] * 10}"]["runs"] == [other.name]


def test_paper_numbers_match_their_own_row():
    assert report.paper_numbers("trifecta", "cifar-10", "small") == [
        ("Trifecta = FF(100 epochs) [Trifecta slides (Dooms et al. 2023)]", 74.0)]
    assert report.paper_numbers("bp", "mnist", "mlp") == []  # the slides' BP is their conv net
    assert [a for _, a in report.paper_numbers("bp", "mnist", "large")] == [99.1]
    assert [a for _, a in report.paper_numbers("ff", "mnist", "mlp")] == [98.64]  # Hinton's 4x2000 MLP
    assert report.paper_numbers("ff", "mnist", "small") == []
    assert report.paper_numbers("df", "fmnist", "small") == report.paper_numbers("df-o", "fashion-mnist", "small")


# --- online ---------------------------------------------------------------------------------
def test_online_batch_size_one(data_root, tmp_path):
    res = online.run_online(["df-o"], [1, 4], samples=24, dataset=DATASET, out=tmp_path, data_dir=str(data_root),
                            hidden=[32], limit_test=100)
    assert [r["batch_size"] for r in res] == [1, 4]
    assert [r["samples"] for r in res] == [24, 24]
    assert [r["steps"] for r in res] == [24, 6]
    assert res[0]["lr"] == pytest.approx(1e-3 * (1 / 128) ** 0.5)
    assert all(0 <= r["test_accuracy"] <= 1 for r in res)


def test_online_refuses_batchnorm_at_batch_one():
    with pytest.raises(ConfigError, match="batch norm"):
        online.online_configs(["df-o"], [1, 8], 100, model="small")
    with pytest.raises(ConfigError, match="larger than"):
        online.online_configs(["df-o"], [64], 10)


# --- CLI ------------------------------------------------------------------------------------
def test_unknown_method_is_one_line(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["experiment", "memory", "--model", "mlp", "--methods", "bp,nope", "--batch-size", "4"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown method 'nope'" in err[0]
    assert main(["experiment", "online", "--methods", "nope", "--samples", "10", "--batch-sizes", "2"]) == 2
    assert main(["experiment", "noise", "x", "--kinds", "heat"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(e.startswith("fflearn: error:") for e in err)
    assert not (tmp_path / "runs").exists()  # a refused command leaves no output folder behind


def test_memory_cli_json(tmp_path, capsys):
    out = tmp_path / "mem.json"
    rc = main(["experiment", "memory", "--model", "mlp", "--hidden", "64,64", "--methods", "bp,df-o,ff",
               "--batch-size", "16", "--json", str(out), "--out", str(tmp_path)])
    assert rc == 0
    d = json.loads(out.read_text())
    assert d["model"] == "mlp" and d["batch_size"] == 16
    assert [r["method"] for r in d["results"]] == ["bp", "df-o", "ff"]
    for r in d["results"]:
        assert {"peak_bytes", "ratio_to_bp", "saved_activation_bytes_peak", "param_bytes", "grad_bytes",
                "optimizer_bytes", "arch_limit"} <= set(r)
    png = tmp_path / "memory-mlp-b16.png"
    assert png.read_bytes()[:8] == PNG and png.stat().st_size > 1000
    assert "ratio_to_bp" in capsys.readouterr().out
    by = {r["method"]: r for r in d["results"]}
    assert by["df-o"]["segments"] == [[0, 2]]  # blocks of 2 over two layers: one segment

    # --set reaches every method's config: DF-O greedy (block size 1) saves less than blocks of 2
    rc = main(["experiment", "memory", "--model", "mlp", "--hidden", "64,64", "--methods", "df-o",
               "--batch-size", "16", "--set", "block_size=1", "--json", str(out), "--out", str(tmp_path)])
    assert rc == 0
    greedy = json.loads(out.read_text())["results"][0]
    assert greedy["segments"] == [[0, 1], [1, 2]]
    assert greedy["saved_activation_bytes_peak"] < by["df-o"]["saved_activation_bytes_peak"]
    assert main(["experiment", "memory", "--model", "mlp", "--methods", "df-o", "--set", "block_size"]) == 2


def test_experiments_write_figures_only_where_asked(tmp_path, monkeypatch, runs):
    monkeypatch.chdir(tmp_path)
    assert main(["experiment", "memory", "--model", "mlp", "--hidden", "32", "--methods", "bp,df-o",
                 "--batch-size", "8"]) == 0
    assert main(["experiment", "noise", str(runs["df"]), "--kinds", "weight", "--levels", "1", "--draws", "1",
                 "--limit-test", "50"]) == 0
    assert list(tmp_path.iterdir()) == []  # no ./runs/experiments/ unasked


def test_batch_norm_recalibration_by_hand():
    """--recalibrate-bn: layer 0's batch norm forgets its statistics and takes the plain average
    of the batches' own (momentum None): with equal batches, the mean of all the images it saw and
    the mean of the batches' unbiased variances; a label-conditioned net sees each image twice
    (true and wrong label); a net without batch norm is left alone."""
    from fflearn.experiments.noise import recalibrate_bn
    from fflearn.methods import make_config
    from fflearn.models import build_net

    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (80, 1, 4, 4), generator=g, dtype=torch.uint8)
    y = torch.randint(0, 10, (80,), generator=g)

    def norm(xb: torch.Tensor) -> torch.Tensor:
        return xb.float() / 255

    net = build_net(make_config(method="df", hidden=[12, 6], norm="bn"), (1, 4, 4), 10).eval()
    bn0, bn1 = net.layers[0].norm, net.layers[1].norm
    before = bn1.running_mean.clone()
    assert recalibrate_bn(net, norm, x, y, batches=4, batch_size=16, seed=3) == 2
    order = torch.randperm(80, generator=torch.Generator().manual_seed(3))[:64]
    batches = [norm(x[i]).flatten(1) for i in order.split(16)]
    assert torch.allclose(bn0.running_mean, torch.cat(batches).mean(0), atol=1e-6)
    assert torch.allclose(bn0.running_var, torch.stack([b.var(0) for b in batches]).mean(0), atol=1e-6)
    assert int(bn0.num_batches_tracked) == 4 and not torch.equal(bn1.running_mean, before)
    assert not net.training  # handed back in eval mode
    ff = build_net(make_config(method="ff", hidden=[12], norm="bn"), (1, 4, 4), 10)
    assert ff.conditions_input and recalibrate_bn(ff, norm, x, y, batches=2, batch_size=16) == 1
    assert int(ff.layers[0].norm.num_batches_tracked) == 2
    plain = build_net(make_config(method="df", hidden=[12], norm="unit"), (1, 4, 4), 10)
    assert recalibrate_bn(plain, norm, x, y, batches=2) == 0


def test_weight_noise_gain_by_hand_and_against_the_noise_itself():
    """--gain: for a linear layer, sqrt(mean_x sum_j w_cj^2 x_j^2 / var_x z_c) recomputed by hand;
    the noise std that add_weight_noise actually puts on z over many draws is sigma times it; a
    conv layer's gain is a linear layer's on its unfolded 3x3 patches; rescaling w leaves it."""
    import torch.nn.functional as F

    from fflearn.experiments.noise import add_weight_noise, weight_noise_gain
    from fflearn.methods import make_config
    from fflearn.models import build_net

    g = torch.Generator().manual_seed(0)
    net = build_net(make_config(method="df", hidden=[5, 4], norm="none"), (1, 2, 3), 10).eval()
    x = torch.randn(64, 1, 2, 3, generator=g)
    w, xi = net.layers[0].op.weight.detach(), x.flatten(1)
    z = xi @ w.T
    by_hand = (((xi**2) @ (w**2).T).mean(0) / z.var(0))
    rows = weight_noise_gain(net, x)
    assert [r["layer"] for r in rows] == [0, 1] and rows[0]["fan_in"] == 6 and rows[1]["fan_in"] == 5
    assert rows[0]["pooled"] == pytest.approx(float((((xi**2) @ (w**2).T).mean(0).sum() / z.var(0).sum()).sqrt()), rel=1e-5)
    assert rows[0]["median"] == pytest.approx(float(by_hand.sqrt().median()), rel=1e-5)
    assert rows[0]["flatness"] == pytest.approx(float((w.sum(1) ** 2 / (6 * (w**2).sum(1))).mean()), rel=1e-5)
    # Monte Carlo: the spread the noise really adds to layer 0's pre-activation
    sigma, deltas = 0.1, []
    for d in range(400):
        noisy = copy.deepcopy(net)
        add_weight_noise(noisy, sigma, torch.Generator().manual_seed(d), layers=[0])
        deltas.append(xi @ noisy.layers[0].op.weight.detach().T - z)
    noise_var = torch.stack(deltas).var(0).mean(0)  # over draws, then over inputs: per unit
    assert float(noise_var.sum() / z.var(0).sum()) == pytest.approx(sigma**2 * rows[0]["pooled"] ** 2, rel=0.05)
    with torch.no_grad():
        net.layers[0].op.weight.mul_(7.0)
    assert weight_noise_gain(net, x)[0]["pooled"] == pytest.approx(rows[0]["pooled"], rel=1e-4)
    conv = build_net(make_config(method="df", model="small", width=0.25, norm="none"), (1, 8, 8), 10).eval()
    xc = torch.randn(16, 1, 8, 8, generator=g)
    wc = conv.layers[0].op.weight.detach().flatten(1)
    patches = F.unfold(xc, 3, padding=1).transpose(1, 2).reshape(-1, 9)  # every 3x3 patch a sample
    zc = patches @ wc.T
    pooled = float((((patches**2) @ (wc**2).T).mean(0).sum() / zc.var(0).sum()).sqrt())
    assert weight_noise_gain(conv, xc)[0]["pooled"] == pytest.approx(pooled, rel=1e-4)
    with torch.no_grad():  # a constant filter is flat (1), a zero-sum one is not (0)
        conv.layers[0].op.weight[0].fill_(0.5)
        conv.layers[0].op.weight[1].copy_(torch.tensor([[1.0, 0, -1], [2, 0, -2], [1, 0, -1]]))
    n = conv.layers[0].op.weight.shape[0]
    wc = conv.layers[0].op.weight.detach().flatten(1)
    rest = float((wc[2:].sum(1) ** 2 / (9 * (wc[2:] ** 2).sum(1))).sum())
    assert weight_noise_gain(conv, xc)[0]["flatness"] == pytest.approx((1.0 + 0.0 + rest) / n, rel=1e-5)


def test_noise_gain_cli(runs, tmp_path, capsys):
    out = tmp_path / "g.json"
    assert main(["experiment", "noise", str(runs["df"]), "--kinds", "", "--json", str(out), "--gain"]) == 0
    printed = capsys.readouterr().out
    assert "weight-noise gain" in printed and "under noise" not in printed
    d = json.loads(out.read_text())
    assert d["results"] == [] and d["gain"] and all(r["pooled"] > 0 for r in d["gain"])
    assert d["gain_table"][0]["runs"] == 1
    assert main(["experiment", "noise", str(runs["df"]), "--kinds", ""]) == 2
    assert "--kinds is empty" in capsys.readouterr().err


def test_weight_noise_spares_normalisation_parameters():
    """A conv net's layer norm holds a 3-D gain and bias per layer: weight, quant and stuck noise
    leave them (and batch norm's) exact, and with only the conv kernels noisy the change that a
    draw puts on layer 0's pre-activation is, over draws, sigma^2 gain^2 (n / (n - 1)), as without
    a norm."""
    from fflearn.experiments.noise import add_weight_noise, weight_arrays, weight_noise_gain
    from fflearn.experiments.noise_trace import change_profile, pre_activations
    from fflearn.methods import make_config
    from fflearn.models import build_net

    g = torch.Generator().manual_seed(0)
    for norm in ("bn", "ln"):  # the layer-norm net last: the draws below use it
        net = build_net(make_config(method="df-o", model="small", width=0.25, norm=norm), (1, 8, 8), 10).eval()
        with torch.no_grad():  # a trained layer norm's gain and bias are not all ones and zeros
            for layer in net.layers:
                for q in layer.norm.parameters():
                    q.uniform_(0.5, 1.5, generator=g)
        norm_ids = {id(q) for layer in net.layers for q in layer.norm.parameters()}
        arrays = weight_arrays(net)
        assert arrays and not norm_ids & {id(q) for q in arrays}
        assert {id(layer.op.weight) for layer in net.layers} <= {id(q) for q in arrays}
        before = [q.detach().clone() for layer in net.layers for q in layer.norm.parameters()]
        noisy = copy.deepcopy(net)
        add_weight_noise(noisy, 0.5, torch.Generator().manual_seed(1))
        after = [q for layer in noisy.layers for q in layer.norm.parameters()]
        assert all(torch.equal(a, b) for a, b in zip(before, after, strict=True))
    x = torch.randn(64, 1, 8, 8, generator=g)
    gain = weight_noise_gain(net, x)[0]["pooled"]
    clean = pre_activations(net, x)[0]
    ch2 = []
    for draw in range(300):
        noisy = copy.deepcopy(net)
        add_weight_noise(noisy, 0.5, torch.Generator().manual_seed(draw), layers=[0])
        ch2.append(change_profile(clean, pre_activations(noisy, x)[0])["change"] ** 2)
    n = clean.numel() // clean.shape[1]
    assert sum(ch2) / len(ch2) == pytest.approx(0.25 * gain**2 * n / (n - 1), rel=0.05)


def test_noise_aware_training_takes_the_step_at_noisy_weights_and_moves_it_onto_the_clean_ones():
    """train_weight_noise sigma: the step's passes see w (1 + sigma eps) on every weight array; then
    the weights are the clean ones plus the update that step made from the noisy ones (done here by
    hand: the noise added, a plain step, the noise taken off); it differs from the clean step; a
    negative sigma, or the layer pipeline, is refused."""
    from fflearn.analog import weight_arrays
    from fflearn.build import build
    from fflearn.config import validate
    from fflearn.methods import make_config
    from fflearn.parallel.pipeline import check_pipeline

    def parts(sigma: float):
        torch.manual_seed(0)
        cfg = validate(make_config(method="df-o", model="small", width=0.25, train_weight_noise=sigma))
        return build(cfg, (1, 28, 28), 10, torch.zeros(1), torch.ones(1), torch.device("cpu"))

    g = torch.Generator().manual_seed(3)
    x, y = torch.randn(32, 1, 28, 28, generator=g), torch.randint(0, 10, (32,), generator=g)
    noisy, plain, by_hand = parts(0.3), parts(0.0), parts(0.0)
    for p in (noisy, plain):
        p.learner.step(x, y, 0, generator=torch.Generator().manual_seed(7))
    arrays = weight_arrays(by_hand.net)
    gen = torch.Generator().manual_seed(7)
    with torch.no_grad():
        noise = [q * (0.3 * torch.randn(q.shape, generator=gen)) for q in arrays]
        for q, d in zip(arrays, noise, strict=True):
            q.add_(d)
    by_hand.learner.step(x, y, 0, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        for q, d in zip(arrays, noise, strict=True):
            q.sub_(d)
    got, want, clean = (p.net.state_dict() for p in (noisy, by_hand, plain))
    for k in want:
        torch.testing.assert_close(got[k], want[k])
    assert any(not torch.allclose(got[k].float(), clean[k].float()) for k in clean)
    with pytest.raises(ConfigError, match="train_weight_noise"):
        validate(make_config(train_weight_noise=-0.1))
    with pytest.raises(ConfigError, match="--train-weight-noise"):
        check_pipeline(make_config(method="df-o", hidden=[32, 32], block_size=1, train_weight_noise=0.1), 2)


def test_trace_change_profile_by_hand():
    """--trace: a per-channel constant change is all shift; a per-channel rescaling of a centred
    pre-activation is affine but no shift; change is the perturbation against the clean spread;
    a generic change's affine part is the per-channel least-squares fit on [1, z], by hand."""
    from fflearn.experiments.noise_trace import change_profile

    g = torch.Generator().manual_seed(0)
    z = torch.randn(200, 3, generator=g)
    c = torch.tensor([0.5, -1.0, 2.0])
    p = change_profile(z, z + c)
    assert p["shift"] == pytest.approx(1.0) and p["affine"] == pytest.approx(1.0)
    spread = ((z - z.mean(0)) ** 2).sum()
    assert p["change"] == pytest.approx(float((200 * (c**2).sum() / spread).sqrt()), rel=1e-5)
    zc = z - z.mean(0)
    p = change_profile(zc, zc * torch.tensor([1.1, 0.7, 1.3]))
    assert p["shift"] == pytest.approx(0.0, abs=1e-6) and p["affine"] == pytest.approx(1.0, rel=1e-5)
    d = torch.randn(200, 3, generator=g) + 0.3 * z + 0.2
    p = change_profile(z, z + d)
    explained = 0.0
    for k in range(3):  # least squares of d_k on [1, z_k]: the sum of squares the fit reproduces
        a = torch.stack([torch.ones(200), z[:, k]], 1).double()
        coef = torch.linalg.lstsq(a, d[:, k:k + 1].double()).solution
        explained += float(((a @ coef) ** 2).sum())
    assert p["affine"] == pytest.approx(explained / float((d.double() ** 2).sum()), rel=1e-4)
    assert p["shift"] == pytest.approx(float(200 * (d.mean(0) ** 2).sum() / (d**2).sum()), rel=1e-4)
    assert 0 < p["shift"] < p["affine"] < 1
    # a conv map: channels are dim 1, means over images and positions
    zm = torch.randn(8, 2, 5, 5, generator=g)
    pm = change_profile(zm, zm + torch.tensor([1.0, -2.0]).view(1, 2, 1, 1))
    assert pm["shift"] == pytest.approx(1.0) and pm["affine"] == pytest.approx(1.0)


def test_trace_follows_the_noise_of_the_curves(runs, tmp_path, capsys):
    """--trace SIGMA --layers 0: each draw's accuracy is the noise curve's at the same sigma and draw
    (the same noisy net); a draw's change at the noisy layer recomputed by hand from its noisy
    kernel; the layer above changes too. (That its mean over draws is sigma times the gain:
    test_weight_noise_spares_normalisation_parameters.)"""
    out = tmp_path / "t.json"
    assert main(["experiment", "noise", str(runs["df"]), "--kinds", "weight", "--layers", "0", "--draws", "3",
                 "--trace", "0.5", "--gain", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "traced up the stack" in printed
    d = json.loads(out.read_text())
    curve = next(r for r in d["results"] if r["level"] == 5)
    assert curve["value"] == 0.5
    top = [r for r in d["trace"] if r["layer"] == 0]
    assert [r["accuracy"] for r in top] == curve["accuracies"]
    assert {r["layer"] for r in d["trace"]} == {0, 1} and all(r["layers"] == [0] for r in d["trace"])
    assert all(r["change"] > 0 and 0 <= r["shift"] <= r["affine"] <= 1 + 1e-6 for r in d["trace"])
    assert d["trace_table"][0]["runs"] == 1 and d["trace_table"][0]["noisy"] == "0"
    # draw 0's change at layer 0 by hand: the same images, the same noisy kernel, z = x W^T
    from fflearn.experiments.noise import add_weight_noise, train_images
    from fflearn.runs import load_run

    t = load_run(runs["df"], compile=False)
    xb, yb = train_images(t, 1024, 0)
    noisy = copy.deepcopy(t.net)
    add_weight_noise(noisy, 0.5, torch.Generator().manual_seed(0), layers=[0])
    with torch.no_grad():
        xi = t.net.layers[0].norm(t.net.prepare(xb)).float()
        z = xi @ t.net.layers[0].op.weight.float().T
        dz = xi @ (noisy.layers[0].op.weight.float() - t.net.layers[0].op.weight.float()).T
    by_hand = float(((dz**2).sum() / ((z - z.mean(0)) ** 2).sum()).sqrt())
    assert top[0]["change"] == pytest.approx(by_hand, rel=1e-4)
    for bad, msg in (("-1", "above 0"), ("x", "takes a sigma")):
        assert main(["experiment", "noise", str(runs["df"]), "--kinds", "", "--trace", bad]) == 2
        assert msg in capsys.readouterr().err


def test_probe_injects_same_sized_perturbations(runs, tmp_path, capsys):
    """--probe SIGMA: the 'noise' perturbation injected into the clean net is the noisy net's own,
    so its change at the top is the trace's at the last layer for the same draw, and its flips are
    the noisy net's disagreements with the clean one, recomputed by hand; the three kinds inject
    the same change; the data direction always points at another class."""
    out = tmp_path / "p.json"
    assert main(["experiment", "noise", str(runs["df"]), "--kinds", "", "--draws", "2", "--layers", "0",
                 "--trace", "0.5", "--probe", "0.5", "--json", str(out)]) == 0
    assert "probed" in capsys.readouterr().out
    d = json.loads(out.read_text())
    assert {(r["draw"], r["kind"]) for r in d["probe"]} == {(dr, k) for dr in (0, 1) for k in ("noise", "random", "data")}
    assert {r["layer"] for r in d["probe"]} == {1}
    for draw in (0, 1):
        mine = {r["kind"]: r for r in d["probe"] if r["draw"] == draw}
        top = next(r for r in d["trace"] if r["draw"] == draw and r["layer"] == 1)
        assert mine["noise"]["top"] == pytest.approx(top["change"], rel=1e-5)
        assert mine["random"]["injected"] == pytest.approx(mine["noise"]["injected"], rel=1e-4)
        assert mine["data"]["injected"] == pytest.approx(mine["noise"]["injected"], rel=1e-4)
        assert mine["random"]["top"] > 0 and mine["data"]["top"] > 0
    row = d["probe_table"][0]
    assert row["runs"] == 1 and row["into layer"] == 1 and set(row) >= {"top: noise", "top: data", "data / noise"}
    # draw 0's flips by hand: the noisy net against the clean one on the same training images
    from fflearn.experiments.noise import add_weight_noise, train_images
    from fflearn.experiments.noise_trace import other_class_partner, probe_net
    from fflearn.models import head_scores
    from fflearn.runs import load_run

    t = load_run(runs["df"], compile=False)
    xb, yb = train_images(t, 1024, 0)
    noisy = copy.deepcopy(t.net)
    add_weight_noise(noisy, 0.5, torch.Generator().manual_seed(0), layers=[0])

    def predict(net):
        with torch.no_grad():
            h = net.prepare(xb)
            for layer in net.layers:
                h = layer(h)
            return head_scores(net.heads[-1], h, None).argmax(1)
    t.net.eval(), noisy.eval()
    flips = float((predict(noisy) != predict(t.net)).float().mean())
    assert next(r for r in d["probe"] if r["draw"] == 0 and r["kind"] == "noise")["flips"] == pytest.approx(flips)
    y = torch.tensor([0, 0, 1, 2, 2, 2])
    partner = other_class_partner(y, torch.Generator().manual_seed(0))
    assert bool((y[partner] != y).all())
    with pytest.raises(ValueError, match="two classes"):
        other_class_partner(torch.zeros(4, dtype=torch.long), torch.Generator())
    from fflearn.methods import make_config
    from fflearn.models import build_net

    ff = build_net(make_config(method="ff", hidden=[16, 16]), (1, 8, 8), 10)
    with pytest.raises(ValueError, match="one-pass"):
        probe_net(ff, torch.rand(4, 1, 8, 8), torch.tensor([0, 1, 2, 3]), 0.5, 1)
    for bad, msg in (("0", "above 0"), ("x", "takes a sigma")):
        assert main(["experiment", "noise", str(runs["df"]), "--kinds", "", "--probe", bad]) == 2
        assert msg in capsys.readouterr().err


def test_noise_kinds_by_hand():
    import torch

    from fflearn.experiments.noise import add_adc, add_stuck_faults, by_method, input_noise, weight_arrays
    from fflearn.methods import make_config
    from fflearn.models import build_net

    net = build_net(make_config(method="df", hidden=[400, 400]), (1, 8, 8), 10)
    w0, w1 = net.layers[0].op.weight, net.layers[1].op.weight
    w0_before, w1_before = w0.detach().clone(), w1.detach().clone()
    assert len(weight_arrays(net, layers=[1])) == 2  # layer 1's weights and its head's anchors
    add_stuck_faults(net, 0.2, torch.Generator().manual_seed(0), layers=[1])
    assert torch.equal(w0, w0_before)  # layer 0 untouched: --layers 1
    changed = (w1 != w1_before).float().mean().item()
    assert 0.17 < changed < 0.23  # a fifth of layer 1's weights stuck
    stuck = w1[w1 != w1_before]
    assert torch.all((stuck == 0) | (stuck.abs() == w1_before.abs().max()))
    # an ADC of k bits leaves at most 2^k levels in a layer's output
    x = torch.rand(32, 64)
    handle = add_adc(net, 2, layers=[0])
    out = net.layers[0](x)
    handle[0].remove()
    assert len(torch.unique(out)) <= 4
    # input noise keeps the 0..255 scale; impulse sets a fraction p of the pixels to 0 or 255
    img = torch.full((4, 1, 16, 16), 128, dtype=torch.uint8)
    imp = input_noise("impulse", 0.2, torch.Generator().manual_seed(1))(img)
    hit = (imp != 128).float().mean().item()
    assert 0.15 < hit < 0.25 and set(imp[imp != 128].unique().tolist()) <= {0.0, 255.0}
    shot = input_noise("shot", 1e6, torch.Generator().manual_seed(1))(img)  # many photons: almost exact
    assert (shot - 128).abs().max() < 1
    # seeds of one setting are averaged; their spread is the sd
    rows = [{"label": "df-o", "method": "df-o", "run": r, "level": lv, "mean_accuracy": a, "std_accuracy": 0.0}
            for r, accs in (("a", (0.9, 0.8)), ("b", (0.7, 0.6))) for lv, a in enumerate(accs)]
    (row,) = by_method(rows)
    assert row["runs"] == 2 and row["mean"] == pytest.approx([0.8, 0.7])
    assert row["sd"] == pytest.approx([0.1414213, 0.1414213], rel=1e-5)


def test_parallel_speed_bars(tmp_path):
    from fflearn.experiments.parallel import plot_speed

    paths = plot_speed([("1 process", 20.0), ("pipeline", 11.0)], "speed", tmp_path)
    assert [p.name for p in paths] == ["parallel-speed.png", "parallel-speed.pdf"]
    assert paths[0].read_bytes()[:8] == PNG and paths[1].read_bytes()[:5] == b"%PDF-"


def test_experiment_parallel_runs_and_its_figures_follow_from_its_runs(tmp_path, data_root):
    """Three real runs (1 x 2 threads, 1 x 1 thread, a 2-rank pipeline): the speedup, the cost
    shares and the bound in the JSON are recomputed here from the run folders."""
    out, js = tmp_path / "par", tmp_path / "par.json"
    rc = main(["experiment", "parallel", "--method", "df-o", "--hidden", "64", "64", "64", "64", "--dataset", DATASET,
               "--data-dir", str(data_root), "--limit-train", "1024", "--limit-test", "256", "--also-one-thread",
               "--out", str(out), "--json", str(js)])
    assert rc == 0
    r = json.loads(js.read_text())

    def epoch_seconds(run: str) -> float:
        recs = [json.loads(ln) for ln in (out / run / "metrics.jsonl").read_text().splitlines()]
        return sum(x["seconds"] for x in recs) / len(recs)

    seq, one, pipe = epoch_seconds("sequential"), epoch_seconds("sequential-1thread"), epoch_seconds("pipeline")
    assert r["speedup"] == pytest.approx(seq / pipe)
    costs = json.loads((out / "pipeline" / "summary.json").read_text())["distributed"]["segment_costs"]
    assert r["stage_share"] == pytest.approx([c / sum(costs) for c in costs]) and len(costs) == 2
    assert r["speedup_bound"] == pytest.approx(seq / (one * max(r["stage_share"])))
    assert r["layers_per_rank"] == [[0, 2], [2, 4]]
    # the pipeline computes the sequential run's updates: the same accuracy up to float rounding
    assert abs(r["pipeline_accuracy"] - r["sequential_accuracy"]) <= 0.02
    assert (out / "parallel-speed.png").exists()


# --- prediction rules chosen on validation ------------------------------------------------------
def test_rules_choose_on_validation_and_report_that_picks_test(real_small, data_root, tmp_path, capsys):
    """experiment rules: every (rule, augmentation) mean equals the runs' own evaluations
    recomputed one by one, the chosen row is the best validation mean of its method, and a run
    without a validation split, or a bad rule, is one line."""
    import statistics

    from fflearn.api import make_config, train
    from fflearn.predict import eval_batch_size, evaluate
    from fflearn.runs import load_run

    dirs = []
    for seed in (0, 1):
        cfg = make_config(method="df", dataset=DATASET, hidden=[64, 64, 64], epochs=1, batch_size=50, val_split=400,
                          limit_train=2000, limit_test=400, seed=seed, data_dir=str(data_root),
                          out=str(tmp_path / f"df-s{seed}"), progress=False)
        train(cfg, dataset=real_small)
        dirs.append(str(tmp_path / f"df-s{seed}"))
    code = main(["experiment", "rules", *dirs, "--rules", "last,all,from:-2", "--test-aug", "none,flip",
                 "--json", str(tmp_path / "r.json")])
    assert code == 0
    rows = json.loads((tmp_path / "r.json").read_text())["rows"]
    assert len(rows) == 6 and all(r["runs"] == 2 and r["seeds"] == [0, 1] for r in rows)
    loaded = [load_run(d) for d in dirs]
    for r in rows:
        for split in ("val", "test"):
            accs = []
            for run in loaded:
                x, y = run.split(split)
                accs.append(evaluate(run.net, x, y, run.norm, eval_batch_size(run.net), r["predict"], False,
                                     r["test_aug"])["accuracy"])
            assert r[f"{split}_accuracy_mean"] == pytest.approx(statistics.fmean(accs), abs=1e-12)
            assert r[f"{split}_accuracy_sd"] == pytest.approx(statistics.stdev(accs), abs=1e-12)
    best = max(r["val_accuracy_mean"] for r in rows)
    chosen = [r for r in rows if r["chosen"]]
    assert len(chosen) == 1 and chosen[0]["val_accuracy_mean"] == best
    assert [(r["predict"], r["test_aug"]) for r in rows if r["own"]] == [("last", "none")]
    out = capsys.readouterr().out
    assert "chosen" in out and "from:-2" in out
    assert main(["experiment", "rules", dirs[0], "--rules", "best"]) == 2
    assert "predict" in capsys.readouterr().err
    plain = make_config(method="df", dataset=DATASET, hidden=[32], epochs=1, batch_size=50, data_dir=str(data_root),
                        out=str(tmp_path / "noval"), progress=False)
    train(plain, dataset=real_small)
    assert main(["experiment", "rules", str(tmp_path / "noval")]) == 2
    err = capsys.readouterr().err
    assert "without a validation split" in err and len(err.strip().splitlines()) == 1
