"""The benchmarks on tiny budgets: every subcommand runs on real MNIST and writes the JSON keys
of its contract; the FLOP counter agrees with hand-counted matmul FLOPs of real training steps;
ratio_to_bp of BP is exactly 1; bad input is one line and exit status 2."""

from __future__ import annotations

import contextlib
import io
import json
import runpy
import sys
from pathlib import Path

import pytest
import torch

from conftest import DATASET
from fflearn.api import make_config
from fflearn.bench.mfu import count_flops
from fflearn.cli import main
from fflearn.learner import Learner
from fflearn.models import build_net
from fflearn.schemes import build_scheme

REPO = Path(__file__).resolve().parents[1]
CONTRACT = {"results", "device", "threads", "torch"}


def bench(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(["bench", *argv])
    return rc, out.getvalue(), err.getvalue()


def common(root: Path, json_file: Path, dataset: bool = True) -> list[str]:
    return [*(["--dataset", DATASET] if dataset else []), "--data-dir", str(root), "--device", "cpu",
            "--threads", "1", "--json", str(json_file)]


# --- FLOP counting against hand formulas ---------------------------------------------------
def test_count_ops_counts_each_dispatched_operation() -> None:
    from fflearn.bench.common import count_ops

    x = torch.randn(4, 3)
    assert count_ops(lambda: x.add(1)) == 1
    assert count_ops(lambda: (x * 2).sum()) == 2
    w = torch.randn(3, 2, requires_grad=True)
    # forward mm + sum, backward: ones for sum's gradient expanded, mm for w's gradient, and more:
    # what matters is that backward's operations are counted too
    assert count_ops(lambda: (x @ w).sum().backward()) > count_ops(lambda: (x @ w).sum())


def test_flops_of_one_linear_layer_match_the_hand_formula() -> None:
    b, n_in, n_out = 8, 5, 3
    lin = torch.nn.Linear(n_in, n_out)
    x = torch.randn(b, n_in, requires_grad=True)
    total, per_op = count_flops(lambda: lin(x).sum().backward())
    # forward 2*B*in*out; backward: input gradient 2*B*in*out and weight gradient 2*B*in*out
    assert total == 6 * b * n_in * n_out
    assert per_op == {"addmm": 2 * b * n_in * n_out, "mm": 4 * b * n_in * n_out}
    x_const = torch.randn(b, n_in)  # an input without gradient (a detached layer input): no input gradient
    total, _ = count_flops(lambda: lin(x_const).sum().backward())
    assert total == 4 * b * n_in * n_out


def _learner(method: str, hidden: list[int]) -> Learner:
    cfg = make_config(method=method, model="mlp", hidden=hidden, device="cpu")
    torch.manual_seed(0)
    net = build_net(cfg, (1, 28, 28), 10)
    return Learner(net, build_scheme(cfg), cfg, torch.device("cpu"))


def test_flops_of_a_real_lcp_step_match_the_hand_formula() -> None:
    b, d, h, k = 16, 784, 32, 10
    learner = _learner("lcp", [h])
    x, y = torch.randn(b, 1, 28, 28), torch.randint(0, k, (b,))
    total, _ = count_flops(lambda: learner.step(x, y, 0))
    # layer (its input is the data: weight gradient only) + local linear head (input and weight gradients)
    assert total == 4 * b * d * h + 6 * b * h * k


def test_flops_of_a_real_bp_step_match_the_hand_formula() -> None:
    b, d, h1, h2, k = 16, 784, 24, 16, 10
    learner = _learner("bp", [h1, h2])
    x, y = torch.randn(b, 1, 28, 28), torch.randint(0, k, (b,))
    total, _ = count_flops(lambda: learner.step(x, y, 0))
    expected = (4 * b * d * h1  # layer 0: forward + weight gradient
                + 6 * b * h1 * h2  # layer 1: forward + input and weight gradients (backprop through it)
                + 4 * b * h1 * k  # layer 0's probe head on detached features: forward + weight gradient
                + 6 * b * h2 * k)  # the output head: forward + input and weight gradients
    assert total == expected


# --- each subcommand on a tiny budget ------------------------------------------------------
def test_speed_writes_the_contract_and_bp_ratio_is_one(data_root: Path, tmp_path: Path) -> None:
    f = tmp_path / "speed.json"
    rc, out, _ = bench("speed", "--methods", "df-o,lcp", "--models", "mlp,small", "--width", "0.0625",
                       "--set", "hidden=64,64", "--limit-train", "512", "--batch-size", "64", "--steps", "2",
                       "--warmup", "1", "--repeats", "2", "--channels-last", *common(data_root, f))
    assert rc == 0 and "ratio to BP" in out
    d = json.loads(f.read_text())
    assert CONTRACT <= set(d) and d["device"] == "cpu" and d["threads"] == 1 and d["torch"] == torch.__version__
    rows = {(r["method"], r["model"]): r for r in d["results"]}
    assert set(rows) == {(m, n) for m in ("bp", "df-o", "lcp") for n in ("mlp", "small")}  # BP added for the ratio
    for (_, net), r in rows.items():
        assert {"method", "model", "images_per_second", "ratio_to_bp"} <= set(r)
        assert r["images_per_second"] > 0 and len(r["windows_images_per_second"]) == 2
        assert r["ratio_to_bp"] == pytest.approx(r["images_per_second"] / rows[("bp", net)]["images_per_second"])
        assert r["channels_last"] == (net == "small")  # the flag applies to conv nets only
        assert r["ops_per_step"] > 50  # forward, backward and Adam of 3 layers and their heads
    # BP was measured once per model: each model's rows divide by their own net's BP
    assert [r["model"] for r in d["results"] if r["method"] == "bp"] == ["mlp", "small"]


def test_speed_variants_switch_off_one_gpu_saving_each(data_root: Path, tmp_path: Path) -> None:
    from fflearn.bench.speed import VARIANTS

    learner = _learner("df-o", [16, 16])
    learner.fused = True  # as on a GPU
    VARIANTS["foreach-adam"](learner)
    groups = [g for o in learner.optimizers.values() for g in o.param_groups]
    assert groups and all(g["fused"] is False and g["foreach"] is True for g in groups) and not learner.fused
    learner.check_every = 32
    VARIANTS["nan-check-every-step"](learner)
    assert learner.check_every == 1
    f = tmp_path / "speed.json"
    rc, out, _ = bench("speed", "--methods", "df-o", "--models", "mlp", "--set", "hidden=32",
                       "--limit-train", "256", "--batch-size", "32", "--steps", "1", "--warmup", "1",
                       "--repeats", "1", "--variants", "foreach-adam,nan-check-every-step", *common(data_root, f))
    assert rc == 0 and "foreach-adam" in out
    rows = {(r["method"], r["variant"]): r for r in json.loads(f.read_text())["results"]}
    # "default" is always added (the ratio's denominator), for BP too
    assert set(rows) == {(m, v) for m in ("bp", "df-o") for v in ("default", "foreach-adam", "nan-check-every-step")}
    for r in rows.values():  # every variant divides by BP's default row, not by BP's same variant
        assert r["ratio_to_bp"] == pytest.approx(r["images_per_second"] / rows[("bp", "default")]["images_per_second"])
    rc, _, err = bench("speed", "--variants", "warp-speed", *common(data_root, f))
    assert rc == 2 and "unknown --variants warp-speed" in err and "Traceback" not in err


def test_mfu_writes_flops_peak_and_utilisation(data_root: Path, tmp_path: Path) -> None:
    f = tmp_path / "mfu.json"
    rc, out, _ = bench("mfu", "--methods", "lcp", "--models", "mlp", "--set", "hidden=32", "--limit-train", "256",
                       "--batch-size", "16", "--steps", "2", "--warmup", "1", "--repeats", "1", "--peak-size", "128",
                       "--peak-repeats", "1", *common(data_root, f))
    assert rc == 0 and "MFU" in out
    d = json.loads(f.read_text())
    assert CONTRACT <= set(d) and set(d["peak_flops"]) == {"fp32", "bf16"}
    (r,) = d["results"]
    assert r["step_flops"] == 4 * 16 * 784 * 32 + 6 * 16 * 32 * 10  # the hand formula, through the CLI
    assert r["flops_per_second"] == pytest.approx(r["step_flops"] / r["step_seconds"])
    assert r["peak_flops"] == d["peak_flops"]["fp32"] and r["peak_dtype"] == "fp32"
    assert r["mfu"] == pytest.approx(r["flops_per_second"] / r["peak_flops"]) and 0 < r["mfu"]


def test_tta_reaches_an_easy_target_and_reports_a_missed_one(data_root: Path, tmp_path: Path) -> None:
    f = tmp_path / "tta.json"
    args = ["--methods", "df", "--set", "hidden=64", "--limit-train", "1024", "--limit-test", "300",
            "--eval-every-steps", "3"]
    rc, _, _ = bench("tta", *args, "--target", "0.3", "--max-seconds", "30", *common(data_root, f))
    assert rc == 0
    d = json.loads(f.read_text())
    assert CONTRACT <= set(d)
    (r,) = d["results"]
    assert r["reached"] and r["seconds"] > 0 and r["steps"] % 3 == 0 and r["final_accuracy"] >= 0.3
    assert r["seconds"] == r["curve"][-1][1] and r["eval_seconds"] > 0  # evaluation is not training time
    rc, out, _ = bench("tta", *args, "--target", "1.0", "--max-seconds", "0.01", *common(data_root, f))
    (r,) = json.loads(f.read_text())["results"]
    assert rc == 0 and not r["reached"] and r["seconds"] is None and "not reached" in out


def test_tta_pipeline_trains_local_methods_over_processes_and_bp_in_one(data_root: Path, tmp_path: Path) -> None:
    f = tmp_path / "tta.json"
    rc, out, _ = bench("tta", "--methods", "df,bp", "--set", "hidden=64,64,64,64", "--limit-train", "1024",
                       "--limit-test", "300", "--eval-every-steps", "4", "--target", "0.5", "--max-seconds", "8",
                       "--pipeline", "2", *common(data_root, f)[:-4], "--threads", "2", "--json", str(f))
    assert rc == 0
    df, bp = json.loads(f.read_text())["results"]
    assert (df["method"], df["pipeline"], df["resolution"]) == ("df", 2, "epoch")
    assert (bp["method"], bp["pipeline"], bp["resolution"]) == ("bp", 1, "4 steps")  # one segment: one process
    assert df["reached"], df["curve"]
    accs = [a for _, _, a in df["curve"]]
    hit = next(i for i, a in enumerate(accs) if a >= 0.5)  # the first epoch at the target is the answer
    assert df["epochs"] == hit + 1 and df["seconds"] == df["curve"][hit][1]
    assert all(b[1] > a[1] for a, b in zip(df["curve"][:-1], df["curve"][1:], strict=True))  # cumulative training time
    assert df["steps"] == df["curve"][hit][0] == (hit + 1) * (1024 // 128)
    assert df["stage_share"] and sum(df["stage_share"]) == pytest.approx(1.0)
    if bp["reached"]:
        assert df["ratio_to_bp"] == pytest.approx(df["seconds"] / bp["seconds"]) and bp["ratio_to_bp"] == 1.0
    assert "processes" in out


def test_peers_runs_the_mpezeshki_reimplementation_and_reports_missing_peers(mnist_root: Path, tmp_path: Path) -> None:
    """The peers' recipes are MNIST's: this one needs the real MNIST."""
    data_root = mnist_root
    f = tmp_path / "peers.json"
    rc, out, _ = bench("peers", "--peers", "mpezeshki", "--peer-train", "500", "--peer-steps", "2",
                       "--peer-target", "0.3", "--limit-train", "1024", "--limit-test", "300", "--set", "hidden=64",
                       "--eval-every-steps", "3", "--max-seconds", "30", *common(data_root, f, dataset=False))
    assert rc == 0
    d = json.loads(f.read_text())
    assert CONTRACT <= set(d)
    (r,) = d["results"]
    assert r["status"] == "ok" and r["peer_extrapolated"] and r["fflearn_reached"]
    pr = r["peer_result"]
    assert pr["measured_steps_per_layer"] == 2 and pr["steps_per_layer"] == 1000 and pr["hidden"] == [500, 500]
    assert "re-implementation" in pr["implementation"]
    assert r["peer_seconds"] > pr["measured_seconds"]  # extrapolated from 2 to 1000 steps per layer
    assert r["speedup"] == pytest.approx(r["peer_seconds"] / r["fflearn_seconds"])
    rc, out, _ = bench("peers", "--peers", "mpezeshki,fflib", "--peers-dir", str(tmp_path / "nowhere"),
                       "--limit-test", "100", *common(data_root, f, dataset=False))
    rows = json.loads(f.read_text())["results"]
    assert rc == 0 and [r["status"].split(":")[0] for r in rows] == ["failed", "failed"] and "not found" in out


# --- bad input and the scripts ---------------------------------------------------------------
@pytest.mark.parametrize("argv, words", [
    (["speed", "--methods", "nope"], "unknown method 'nope'"),
    (["speed", "--steps", "-1"], "--steps"),
    (["mfu", "--set", "hidden"], "--set needs FIELD=VALUE"),
    (["tta", "--dataset", "cifar10"], "give --target"),
    (["tta", "--pipeline", "2", "--threads", "1"], "give --threads >= 2"),
    (["peers", "--peers", "mpz"], "unknown peer"),
    (["speed", "--device", "tpu"], "--device"),
])
def test_bad_input_is_one_line_and_exit_2(argv: list[str], words: str, tmp_path: Path) -> None:
    rc, _, err = bench(*argv, "--json", str(tmp_path / "x.json"))
    assert rc == 2 and words in err and err.count("\n") == 1 and err.startswith("fflearn: error:")
    assert not (tmp_path / "x.json").exists()


def test_repo_scripts_call_the_package(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(sys, "argv", ["bench/speed.py", "--help"])
    with pytest.raises(SystemExit) as stop:  # in-process: a second Python would spend seconds importing torch
        runpy.run_path(str(REPO / "bench" / "speed.py"), run_name="__main__")
    assert stop.value.code == 0 and "ratio to BP" in capsys.readouterr().out


def test_df_o_dispatches_at_most_1_1x_bp_operations_per_step() -> None:
    """The GPU step of the conv nets is bound by kernel launches: DF-O on `small` must not dispatch
    more than 1.1x BP's aten operations per training step (a count, the same on every machine)."""
    from fflearn.api import make_config
    from fflearn.bench.common import StepRunner, count_ops
    from fflearn.data import Dataset
    from fflearn.trainer import Trainer

    g = torch.Generator().manual_seed(0)

    def images(n: int) -> torch.Tensor:
        return torch.randint(0, 255, (n, 3, 32, 32), dtype=torch.uint8, generator=g)

    ds = Dataset("fake", images(64), torch.arange(64) % 10, images(16), torch.arange(16) % 10, 10,
                 [str(i) for i in range(10)], "fake")
    ops = {}
    for method in ("bp", "df-o"):
        cfg = make_config(method=method, model="small", width=0.125, batch_size=16, dataset="cifar10", progress=False)
        runner = StepRunner(Trainer(cfg, dataset=ds, write=False, verbose=False))
        runner.steps(2)  # first steps build cached index tensors
        ops[method] = count_ops(lambda r=runner: r.steps(1))
    assert ops["df-o"] <= 1.1 * ops["bp"], ops
