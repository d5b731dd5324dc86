"""Multi-process training on CPU with gloo and 2 processes: data parallel, the layer pipeline, a dead rank.

The launched runs train DF-O on a small real-MNIST MLP (first 2000 training / 1000 test images,
hidden 4x256, blocks of 2, batch 128: 15 steps, 1 thread per process) and are compared with the
same run in this process.

Tolerances, and why they can fail:
* pipeline: rank 0 draws the data order and the negatives exactly as one process does, and every
  layer sees the same inputs in the same order, so the pipeline must reproduce the sequential
  per-layer losses (to 1e-5 relative: the same float operations at 1 thread) and accuracy (within
  0.5 points). Wrong labels or activations forwarded to rank 1 change its layers' losses.
* data parallel: DF-O with all K-1 negatives and no augmentation draws nothing at random, so 2
  ranks averaging their shards' gradients compute the sequential step up to float summation order:
  per-layer losses to 1e-3 relative, test accuracy within 1 point. Seed-to-seed noise of this
  setting is several points (4 seeds, 2 epochs at batch 64 gave 65.2-73.0%), far above float
  rounding; ranks that trained alone on half of each batch (no all-reduce) miss the 1e-3 bound.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import DATASET
from fflearn import make_config
from fflearn.cli import main
from fflearn.errors import ConfigError
from fflearn.parallel.data import check_data_parallel
from fflearn.parallel.launch import _watch
from fflearn.parallel.pipeline import check_pipeline, measured_costs, partition, segment_costs

HOOKS = str(Path(__file__).parent / "plugins" / "rank_hooks.py")

HIDDEN = ["256", "256", "256", "256"]
TRAIN = ["train", "--method", "df-o", "--dataset", DATASET, "--model", "mlp", "--hidden", *HIDDEN, "--epochs", "1",
         "--limit-train", "2000", "--limit-test", "1000", "--batch-size", "128", "--threads", "1", "--device", "cpu",
         "--progress", "false", "--dist-timeout", "60", "--schedule", "cosine"]


def _env(data_root: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    env.update(FFLEARN_DATA=str(data_root), OMP_NUM_THREADS="1", FFLEARN_NO_DOWNLOAD="1", **extra)
    return env


def _fflearn(args: list[str], env: dict[str, str], timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "fflearn", *args], env=env, capture_output=True, text=True,
                          timeout=timeout)


def _record(run_dir: Path) -> dict:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 1
    return json.loads(lines[0])


@pytest.fixture(scope="module")
def sequential(tmp_path_factory: pytest.TempPathFactory, real_small) -> dict:
    """The reference: the same run in one process with one thread."""
    from fflearn.trainer import Trainer

    out = tmp_path_factory.mktemp("seq")
    cfg = make_config(method="df-o", dataset=DATASET, model="mlp", hidden=[256] * 4, epochs=1, limit_train=2000,
                      limit_test=1000, batch_size=128, threads=1, device="cpu", progress=False, out=str(out),
                      schedule="cosine")
    before = torch.get_num_threads()
    try:
        Trainer(cfg, dataset=real_small).run()
    finally:
        torch.set_num_threads(before)
    return _record(out)


def _close(a: list[float], b: list[float], rel: float) -> bool:
    return all(abs(x - y) <= rel * abs(y) for x, y in zip(a, b, strict=True))


def test_pipeline_matches_sequential(tmp_path: Path, data_root: Path, sequential: dict) -> None:
    out = tmp_path / "pipe"
    proc = _fflearn([*TRAIN, "--pipeline", "2", "--out", str(out)], _env(data_root))
    assert proc.returncode == 0, proc.stderr[-2000:]
    rec = _record(out)
    assert rec["layers_per_rank"] == [[0, 2], [2, 4]]  # DF-O blocks (0,1) and (2,3): one per rank
    assert _close(rec["per_layer_loss"], sequential["per_layer_loss"], 1e-5), (rec["per_layer_loss"],
                                                                                sequential["per_layer_loss"])
    assert abs(rec["test_accuracy"] - sequential["test_accuracy"]) <= 0.005
    assert rec["test_accuracy"] > 0.3  # it learned (chance is 0.1)
    # the record holds the lr of the last step (cosine: far below the base lr), as in one process
    assert rec["lr"] == pytest.approx(sequential["lr"]) and rec["lr"] < 0.05 * make_config(method="df-o").lr
    # per microbatch rank 0 sends its block's output (128 x 256 float32), y + 9 negatives (128 x 10
    # int64) and its clock and stop flag (2 float64)
    assert rec["bytes_sent_per_step"] == [128 * 256 * 4 + 128 * 10 * 8 + 2 * 8]
    assert len(rec["idle_fraction"]) == 2 and all(0 <= f <= 1 for f in rec["idle_fraction"])
    # the split was weighed by rank 0's timing of each block (the default), and says so
    dist_info = json.loads((out / "summary.json").read_text())["distributed"]
    assert dist_info["balance"] == "measured" and len(dist_info["segment_costs"]) == 2
    assert all(c > 0 for c in dist_info["segment_costs"])
    share = [c / sum(dist_info["segment_costs"]) for c in dist_info["segment_costs"]]
    assert rec["stage_share"] == pytest.approx(share) == dist_info["stage_share"]
    # each rank's checkpoint holds its own layers only; rank 0 merged them into checkpoint.pt
    for r, layers in ((0, {"0", "1"}), (1, {"2", "3"})):
        ck = torch.load(out / f"checkpoint-rank{r}.pt", weights_only=True)
        assert {k.split(".")[1] for k in ck["net"] if k.startswith(("layers.", "heads."))} == layers
        assert set(ck["optimizers"]) == {min(layers)}  # one optimiser per block, keyed by its first layer
    from fflearn.runs import load_run

    t = load_run(out, data_dir=str(data_root))
    res = t.evaluate(t.data.test_x, t.data.test_y)
    assert res["accuracy"] == pytest.approx(rec["test_accuracy"])
    assert res["per_layer"] == pytest.approx(rec["per_layer_test_accuracy"])


def test_data_parallel_matches_one_process(tmp_path: Path, data_root: Path, sequential: dict) -> None:
    out = tmp_path / "dp"
    proc = _fflearn([*TRAIN, "--nproc", "2", "--out", str(out)], _env(data_root))
    assert proc.returncode == 0, proc.stderr[-2000:]
    rec = _record(out)
    assert rec["world_size"] == 2
    assert rec["lr"] == pytest.approx(sequential["lr"])  # the same schedule, step for step
    assert _close(rec["per_layer_loss"], sequential["per_layer_loss"], 1e-3), (rec["per_layer_loss"],
                                                                               sequential["per_layer_loss"])
    assert abs(rec["test_accuracy"] - sequential["test_accuracy"]) <= 0.01
    summary = json.loads((out / "summary.json").read_text())
    assert summary["distributed"]["world_size"] == 2
    # only rank 0 wrote the run folder, and printed the summary once
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint.pt", "config.yaml", "metrics.csv", "metrics.jsonl",
                                                     "summary.json"]
    assert proc.stdout.count("test accuracy:") == 1


def test_dead_rank_stops_the_other(tmp_path: Path, data_root: Path) -> None:
    """Two ranks started as torchrun would (no launcher watching them): rank 1 exits at step 3 (a
    test plugin's callback); rank 0 must fail with a clear message soon after, not wait for it."""
    port = _free_port()
    procs = []
    for r in (0, 1):
        env = _env(data_root, RANK=str(r), LOCAL_RANK=str(r), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1",
                   MASTER_PORT=str(port))
        argv = [*TRAIN, "--out", str(tmp_path / "run"), "--plugin", HOOKS, "--callbacks", "die-at",
                "--die-rank", "1", "--die-step", "3"]
        procs.append(subprocess.Popen([sys.executable, "-m", "fflearn", *argv],
                                      env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    ended: dict[int, float] = {}
    deadline = time.monotonic() + 240
    while len(ended) < 2 and time.monotonic() < deadline:
        for r, p in enumerate(procs):
            if r not in ended and p.poll() is not None:
                ended[r] = time.monotonic()
        time.sleep(0.05)
    for p in procs:
        if p.poll() is None:
            p.kill()
    errs = [p.communicate()[1] for p in procs]
    assert len(ended) == 2, "a rank hung"
    assert procs[1].returncode == 1 and "test hook" in errs[1]
    assert procs[0].returncode != 0
    assert "rank 0: lost contact with another rank" in errs[0], errs[0][-1500:]
    assert "Traceback" not in errs[0]
    assert ended[0] - ended[1] < 20  # well within --dist-timeout 60: the closed connection is seen at once


def _free_port() -> int:
    from fflearn.parallel.launch import free_port

    return free_port()


def test_launcher_stops_the_others_when_one_fails() -> None:
    """launch's watcher: one rank exits with 3 while another would run for a minute."""
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    failing = subprocess.Popen([sys.executable, "-c", "import sys; sys.exit(3)"])
    t0 = time.monotonic()
    code = _watch([sleeper, failing], grace=0.5)
    assert code == 3
    assert sleeper.poll() is not None  # stopped, not left running
    assert time.monotonic() - t0 < 15


@pytest.mark.parametrize("flags, message", [
    (["--method", "trifecta", "--model", "small", "--pipeline", "2"], "static update scheme"),
    (["--method", "bp", "--pipeline", "2"], "single segment"),
    (["--method", "df-o", "--hidden", "100", "100", "--pipeline", "2"], "needs at least 2 segments"),
    (["--method", "df-o", "--nproc", "2", "--pipeline", "2"], "choose one"),
    (["--method", "df-o", "--nproc", "3", "--batch-size", "128"], "divisible by 3"),
    (["--method", "df-o", "--nproc", "2", "--dist-timeout", "0"], "--dist-timeout"),
    (["--method", "df-o", "--nproc", "0"], "--nproc takes a number of processes >= 1"),
    (["--method", "df-o", "--pipeline", "-2"], "--pipeline takes a number of processes >= 1"),
])
def test_bad_requests_fail_before_starting_ranks(flags: list[str], message: str,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", *flags, "--out", "/nonexistent-never-created"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("fflearn: error:") and message in err, err
    assert not Path("/nonexistent-never-created").exists()


def test_partition_minimises_the_slowest_stage() -> None:
    assert partition([1, 1, 1, 1], 2) == [[0, 1], [2, 3]]
    assert partition([5, 1, 1, 1, 1, 1], 2) == [[0], [1, 2, 3, 4, 5]]
    # 4x2000 MLP, greedy: 784*2000*2 and 2000*2000*2 per layer -> 2+2 (max 16M) beats 3+1 (19.1M)
    assert partition([3.136, 8, 8, 8], 2) == [[0, 1], [2, 3]]
    assert partition([1, 2, 3], 3) == [[0], [1], [2]]


def test_segment_costs_by_hand() -> None:
    from fflearn.models import build_net

    cfg = make_config(method="df-o", hidden=[20, 30, 40, 50])
    net = build_net(cfg, (1, 28, 28), 10)
    segs = check_pipeline(cfg, 2)
    # first layer of a block: forward + weight gradient (2x); second: also the input gradient (3x)
    assert segment_costs(net, segs) == [784 * 20 * 2 + 20 * 30 * 3, 30 * 40 * 2 + 40 * 50 * 3]


def test_measured_costs_time_every_segment_and_put_the_learner_back(real_small) -> None:
    """Timing a segment trains it; the learner must come back bit for bit, so that the pipeline
    still computes the sequential run's updates."""
    from fflearn.learner import Learner
    from fflearn.models import build_net
    from fflearn.schemes import build_scheme

    def fresh() -> Learner:
        torch.manual_seed(0)
        cfg = make_config(method="df-o", hidden=[32, 32, 32, 32], norm="bn")  # batch norm: running stats too
        return Learner(build_net(cfg, (1, 28, 28), 10), build_scheme(cfg), cfg, torch.device("cpu"))

    x, y = real_small.train_x[:32].float() / 255, real_small.train_y[:32]
    timed, plain = fresh(), fresh()
    timed.step(x, y, 0)  # optimiser moments exist: they must be put back too
    plain.step(x, y, 0)
    neg = timed.negatives(y, torch.Generator().manual_seed(1))
    segs = timed.scheme.segments(0, 4)
    costs = measured_costs(timed, timed._labelled_input(x, y, neg), y, neg, segs, repeats=2)
    assert len(costs) == len(segs) == 2 and all(c > 0 for c in costs)
    a, b = timed.state_dict(), plain.state_dict()
    assert all(torch.equal(a["net"][k], b["net"][k]) for k in b["net"])
    timed.step(x, y, 1)
    plain.step(x, y, 1)
    assert all(torch.equal(v, plain.net.state_dict()[k]) for k, v in timed.net.state_dict().items())


def test_hard_negatives_are_refused_across_processes() -> None:
    """Their per-sample table lives in one process: both multi-process modes say so up front."""
    cfg = make_config(method="df-o", hidden=[20, 30, 40, 50], negatives="hard")
    with pytest.raises(ConfigError, match="negatives 'hard'"):
        check_pipeline(cfg, 2)
    with pytest.raises(ConfigError, match="negatives 'hard'"):
        check_data_parallel(cfg, 2)
    assert main(["train", "--method", "df-o", "--negatives", "hard", "--nproc", "2", "--out", "/nonexistent-x"]) == 2


def test_grad_sync_hook_sees_each_segments_optimisers(real_small) -> None:
    """The data-parallel hook point: after each segment's backward, before its optimisers step."""
    from fflearn.learner import Learner
    from fflearn.models import build_net
    from fflearn.schemes import build_scheme

    cfg = make_config(method="symba", hidden=[32, 32, 32])
    net = build_net(cfg, (1, 28, 28), 10)
    learner = Learner(net, build_scheme(cfg), cfg, torch.device("cpu"))
    calls = []

    def hook(opts: list[torch.optim.Optimizer]) -> None:
        calls.append([next(k for k, o in learner.optimizers.items() if o is opt) for opt in opts])
        assert all(p.grad is not None for o in opts for g in o.param_groups for p in g["params"])

    learner.grad_sync = hook
    x = real_small.train_x[:16].float() / 255
    learner.step(x, real_small.train_y[:16], 0)
    assert calls == [[0], [1], [2]]
