"""Conv nets (the Trifecta's small and large), the label channel, and tiny end-to-end conv runs."""

from __future__ import annotations

import json

import pytest
import torch

from conftest import DATASET, REPO
from fflearn.api import make_config
from fflearn.models import build_net
from fflearn.predict import layer_scores


@pytest.mark.parametrize("model,n_layers,out_hw", [("small", 6, 4), ("large", 12, 4)])
def test_conv_shapes(model: str, n_layers: int, out_hw: int) -> None:
    cfg = make_config(method="trifecta", model=model, width=0.125)
    net = build_net(cfg, (3, 32, 32), 10)
    assert len(net.layers) == n_layers
    x = net.prepare(torch.randn(2, 3, 32, 32), torch.tensor([1, 2]))
    assert x.shape == (2, 4, 32, 32)  # RGB + the label channel
    for layer in net.layers:
        x = layer(x)
    assert x.shape[2:] == (out_hw, out_hw)
    assert [layer.out_shape[0] for layer in net.layers][-1] == 64  # 512 * 0.125


def test_large_has_about_8_5_million_parameters() -> None:
    net = build_net(make_config(method="trifecta", model="large"), (3, 32, 32), 10)
    convs = sum(p.numel() for layer in net.layers for p in layer.op.parameters())
    # 3x3 convs of 4->64->128x4->256x4->512x3 channels, by hand:
    by_hand = 9 * (4 * 64 + 64 * 128 + 3 * 128 * 128 + 128 * 256 + 3 * 256 * 256 + 256 * 512 + 2 * 512 * 512)
    assert convs == by_hand
    total = sum(p.numel() for p in net.parameters())
    assert 8.4e6 < total < 8.6e6


def test_trifecta_uses_batchnorm_and_ff_uses_layernorm() -> None:
    tri = build_net(make_config(method="trifecta", model="small", width=0.1), (1, 28, 28), 10)
    ff = build_net(make_config(method="ff", model="small", width=0.1), (1, 28, 28), 10)
    assert all(isinstance(layer.norm, torch.nn.BatchNorm2d) for layer in tri.layers)
    assert all(isinstance(layer.norm, torch.nn.LayerNorm) for layer in ff.layers)


def test_k_pass_prediction_scores_every_label() -> None:
    net = build_net(make_config(method="trifecta", model="small", width=0.1), (1, 28, 28), 10).eval()
    x = torch.randn(3, 1, 28, 28)
    scores = layer_scores(net, x)
    assert len(scores) == 6 and scores[0].shape == (3, 10)
    # score (i, c) must be the goodness of sample i with label c, computed alone
    h = net.prepare(x[1:2], torch.tensor([7]))
    for layer in net.layers[:2]:
        h = layer(h)
    assert torch.allclose(scores[1][1, 7], h.pow(2).mean(), atol=1e-5)


def test_head_pools_by_hand() -> None:
    from fflearn.goodness import pool_features

    h = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).view(2, 3, 4, 4)
    assert torch.equal(pool_features(h, "avg"), h.mean((2, 3)))
    am = pool_features(h, "avgmax")
    assert am.shape == (2, 6)
    assert am[1, 3 + 2].item() == h[1, 2].max().item() == h[1, 2, 3, 3].item()
    g = pool_features(h, "grid2")
    assert g.shape == (2, 12)
    # channel 1's four regions, in order top-left, top-right, bottom-left, bottom-right
    quads = [h[0, 1, :2, :2], h[0, 1, :2, 2:], h[0, 1, 2:, :2], h[0, 1, 2:, 2:]]
    assert torch.allclose(g[0, 4:8], torch.stack([q.mean() for q in quads]))
    g3 = pool_features(h[:, :, :3, :3], "grid3")  # a 3x3 map on a 3x3 grid: every pixel is a region
    assert torch.equal(g3, h[:, :, :3, :3].flatten(1))
    assert torch.equal(pool_features(h, "flat"), h.flatten(1))
    assert pool_features(h, "grid4").shape == (2, 3 * 16)
    flat = torch.randn(2, 5)  # MLP features pass through whatever the pool
    assert torch.equal(pool_features(flat, "grid2"), flat)


@pytest.mark.parametrize("method,pool,feats", [("df-o", "grid2", 4 * 16), ("lcp", "avgmax", 2 * 16),
                                               ("df-r", "flat", 16 * 14 * 14)])
def test_head_pool_sizes_the_heads(method: str, pool: str, feats: int) -> None:
    net = build_net(make_config(method=method, model="small", width=0.125, head_pool=pool), (1, 28, 28), 10)
    head = net.heads[0]
    w = head.fc.weight if method == "lcp" else head.anchors
    assert w.shape == (10, feats)  # layer 0 has 128 * 0.125 = 16 channels
    x = torch.randn(3, 1, 28, 28)
    h = net.layers[0](net.prepare(x))
    assert head(h).shape == (3, 10)


@pytest.mark.parametrize("method", ["trifecta", "df-o", "lcp"])
def test_tiny_conv_run_learns(method: str, real_small, tmp_path) -> None:
    from fflearn.trainer import train

    cfg = make_config(method=method, model="small", width=0.125, dataset=DATASET, epochs=2, batch_size=50,
                      lr=3e-3, out=str(tmp_path / method), progress=False, crop=0, rotation=0.0)
    s = train(cfg, dataset=real_small)
    assert s["test_accuracy"] > 0.4, s  # chance is 0.1 (2 epochs of 2000 images)
    assert len(s["per_layer_test_accuracy"]) == 6
    lines = (tmp_path / method / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 2 and "per_layer_separation" in json.loads(lines[-1])


def test_ablation_ordering_check() -> None:
    from fflearn.ablate import ordering_violations

    rows = {"ff": 0.17, "symba": 0.21, "symba+apl": 0.24, "symba+bn": 0.25, "trifecta": 0.31}
    res = [{"method": m, "test_accuracy": a} for m, a in rows.items()]
    assert ordering_violations(res) == []
    res[1]["test_accuracy"] = 0.16  # symba below ff
    assert ordering_violations(res) == [("symba", "ff")]
    assert ordering_violations([r for r in res if r["method"] in ("ff", "trifecta")]) == []  # rows not run


def test_ablate_runner_writes_table_csv_and_chart(real_small, tmp_path, monkeypatch) -> None:
    import sys

    from fflearn.ablate import run_ablation, write_outputs

    tr = sys.modules["fflearn.trainer"]
    real = tr.train
    monkeypatch.setattr(tr, "train", lambda cfg, overwrite=False: real(cfg, overwrite, dataset=real_small))
    res = run_ablation(DATASET, 1, "small", tmp_path, rows=["ff", "trifecta"], width=0.1, limit_train=500,
                       batch_size=50, progress=False)
    paths = write_outputs(res, tmp_path, DATASET, 1, "small", width=0.1)
    md = paths[0].read_text()
    assert "| trifecta |" in md and "74.0" in md
    assert "`small` net at width 0.1, 1 epoch," in md
    assert paths[3].stat().st_size > 1000 and paths[3].read_bytes()[:4] == b"\x89PNG"
    assert len(paths[1].read_text().splitlines()) == 3


def test_ablate_df_rows_differ_in_their_ingredient_only(tmp_path) -> None:
    from fflearn.ablate_df import ROW_NAMES, row_configs
    from fflearn.api import make_config

    base = make_config(method="df-o", model="small", width=0.25, time_budget=600, val_split=5000, lr=4e-3)
    plan = {r: c for r, s, c in row_configs(base, ROW_NAMES, 1, tmp_path)}
    for row, cfg in plan.items():  # the optimisation is the base's in every row
        assert (cfg.lr, cfg.schedule, cfg.time_budget, cfg.batch_size, cfg.val_split, cfg.crop) == \
            (base.lr, base.schedule, base.time_budget, base.batch_size, base.val_split, base.crop), row
    assert plan["df-o"].to_dict() | {"out": None, "progress": True} == base.to_dict() | {"out": None, "progress": True}
    diff = {r: {k for k, v in c.to_dict().items() if v != getattr(plan["df-o"], k) and k != "out"}
            for r, c in plan.items()}
    assert diff["dfhead"] == {"margin"} and plan["dfhead"].margin == 0
    assert diff["df-o+lambda"] == {"lam"} and diff["df-o+pairs"] == {"pair_negatives"}
    assert diff["greedy"] == {"block_size"} and diff["df-ff"] == {"label_mode", "head"}
    assert plan["lcp-pool"].head_pool == base.head_pool == "flat" and plan["lcp"].head_pool == "avg"
    assert plan["lcp-nobias"].head_bias is False and plan["df-r"].feedback == "direct"
    assert diff["df-r-fa"] == {"method", "feedback"} and plan["df-r-fa"].feedback == "random"
    (_, _, tri), = row_configs(base, ["trifecta"], 1, tmp_path)  # a reference asked for by name only
    assert "trifecta" not in ROW_NAMES and (tri.method, tri.scheme, tri.norm, tri.lr) == ("trifecta", "apl", "bn", base.lr)


def test_ablate_df_keeps_the_config_files_flags_unless_given(tmp_path) -> None:
    """A boolean flag not on the line must not override the config (bf16 and channels_last of the
    CPU preset were once reset to false by the flags' defaults); one on the line does."""
    from fflearn.ablate import df_base
    from fflearn.cli import build_parser
    from fflearn.config import ConfigError

    preset = str(REPO / "configs" / "cpu" / "df-o-fashion-mnist-10min.yaml")

    def base(*flags: str):
        argv = ["ablate", "df", "--config", preset, *flags]
        return df_base(build_parser(argv).parse_args(argv))

    from fflearn.config import native_bf16

    b = base()  # the preset's bf16: auto, decided for this machine
    assert (b.bf16, b.channels_last, b.val_split, b.width, b.time_budget) == (native_bf16(b.device), True, 5000, 0.5, 600)
    b = base("--bf16", "false", "--val-split", "1000", "--time-budget", "200")
    assert (b.bf16, b.channels_last, b.val_split, b.time_budget) == (False, True, 1000, 200)
    assert base("--bf16", "true").bf16 is True
    # --set reaches any other field (earlier figures name the preset's old block size this way)
    assert base("--set", "block_size=2").block_size == 2 != base().block_size
    with pytest.raises(ConfigError, match="--set needs FIELD=VALUE"):
        base("--set", "block_size")
    argv = ["ablate", "df", "--model", "mlp"]  # no config file: the recipe's, with 5000 held out
    assert df_base(build_parser(argv).parse_args(argv)).val_split == 5000


def test_ablate_df_writes_the_contract(data_root, tmp_path) -> None:
    """Two rows x two seeds through the CLI: the JSON holds, per row, the means and sds the run
    folders' summaries give (recomputed here), and ablation.md the table."""
    import statistics

    from fflearn.cli import main

    out, js = tmp_path / "abl", tmp_path / "abl.json"
    assert main(["ablate", "df", "--dataset", DATASET, "--model", "mlp", "--hidden", "32", "--data-dir", str(data_root),
                 "--limit-train", "1200", "--limit-test", "300", "--epochs", "1", "--val-split", "200", "--seeds", "2",
                 "--rows", "lcp,df-o", "--jobs", "2", "--threads", "1", "--out", str(out), "--json", str(js)]) == 0
    d = json.loads(js.read_text())
    assert d["study"] == "df" and [r["name"] for r in d["rows"]] == ["lcp", "df-o"]
    for r in d["rows"]:
        assert {"name", "seeds", "val_accuracy_mean", "val_accuracy_sd", "test_accuracy_mean", "test_accuracy_sd",
                "train_seconds_mean"} <= set(r) and r["seeds"] == 2
        sums = [json.loads((out / r["name"] / f"seed{s}" / "summary.json").read_text()) for s in (0, 1)]
        assert r["test_accuracy_mean"] == pytest.approx(statistics.fmean(s["test_accuracy"] for s in sums))
        assert r["val_accuracy_sd"] == pytest.approx(statistics.stdev(s["val_accuracy"] for s in sums))
        assert all(s["val_images"] == 200 for s in sums)
    assert "| df-o | df-o |" in (out / "ablation.md").read_text()
    # a second call finds every run finished and trains nothing again
    before = (out / "df-o" / "seed0" / "summary.json").stat().st_mtime_ns
    assert main(["ablate", "df", "--dataset", DATASET, "--model", "mlp", "--hidden", "32", "--data-dir", str(data_root),
                 "--limit-train", "1200", "--limit-test", "300", "--epochs", "1", "--val-split", "200", "--seeds", "2",
                 "--rows", "lcp,df-o", "--out", str(out), "--json", str(js)]) == 0
    assert (out / "df-o" / "seed0" / "summary.json").stat().st_mtime_ns == before


@pytest.mark.parametrize("method", ["df-o", "df-r", "trifecta", "lcp"])
def test_a_bf16_channels_last_step(method: str) -> None:
    """bf16 autocast with channels-last (the CPU presets' setting) trains every head kind."""
    from fflearn.learner import Learner
    from fflearn.schemes import build_scheme

    cfg = make_config(method=method, model="small", width=0.0625, bf16=True, channels_last=True, batch_size=8)
    net = build_net(cfg, (1, 28, 28), 10).to(memory_format=torch.channels_last)
    learner = Learner(net, build_scheme(cfg), cfg, torch.device("cpu"))
    x = torch.randn(8, 1, 28, 28).contiguous(memory_format=torch.channels_last)
    loss = learner.step(x, torch.arange(8) % 10, 0)
    assert torch.isfinite(loss)
