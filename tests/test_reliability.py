"""Reliability of training runs: checkpoints, exact resume after SIGKILL, determinism, NaN guards.

Real (small) MNIST runs on the CPU: 3000 training images, a 64-64 MLP, batches of 100, so one
run takes well under a second of training. The kill test is the only one that starts a process.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from conftest import DATASET
from fflearn.checkpoint import read_checkpoint, resume_config
from fflearn.cli import main
from fflearn.errors import FFLearnError, TrainingError
from fflearn.learner import Learner
from fflearn.registry import LOSSES
from fflearn.runfolder import CHECKPOINT
from fflearn.runs import load_run
from fflearn.trainer import TIMING_KEYS, Trainer

REPO = Path(__file__).resolve().parents[1]

# 3000 images / batches of 100 = 30 steps per epoch; a checkpoint every 7 steps lands mid-epoch
RUN = ["--method", "df", "--dataset", DATASET, "--model", "mlp", "--hidden", "64", "64", "--epochs", "2",
       "--batch-size", "100", "--limit-train", "3000", "--limit-test", "500", "--progress", "false",
       "--device", "cpu", "--threads", "1", "--deterministic", "true", "--seed", "3",
       "--crop", "2"]  # random crops: the run draws from its generator, so resume must restore it


@pytest.fixture(autouse=True)
def _restore_determinism():
    """--deterministic switches a process-wide torch flag: give other tests the state they had."""
    was = torch.are_deterministic_algorithms_enabled()
    threads = torch.get_num_threads()
    yield
    torch.use_deterministic_algorithms(was)
    torch.set_num_threads(threads)


def cli(*argv: str) -> tuple[int, str]:
    """Run the CLI in this process; (exit status, stderr)."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        rc = main(list(argv))
    return rc, err.getvalue()


def metrics(run: Path) -> list[dict]:
    """metrics.jsonl without the wall-clock keys (they differ between identical runs)."""
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if k not in TIMING_KEYS} for line in lines]


def train(data_root: Path, out: Path, *extra: str) -> Path:
    rc, err = cli("train", *RUN, "--data-dir", str(data_root), "--out", str(out), *extra)
    assert rc == 0, err
    return out


@pytest.fixture(scope="module")
def reference(data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One uninterrupted run, with mid-epoch checkpoints as the killed run has."""
    was = torch.are_deterministic_algorithms_enabled()
    threads = torch.get_num_threads()
    try:
        return train(data_root, tmp_path_factory.mktemp("ref") / "run", "--checkpoint-every", "7")
    finally:
        torch.use_deterministic_algorithms(was)
        torch.set_num_threads(threads)


# --- determinism ---------------------------------------------------------------------------------

def test_same_seed_same_metrics(reference: Path, data_root: Path, tmp_path: Path) -> None:
    again = train(data_root, tmp_path / "again", "--checkpoint-every", "7")
    first, second = metrics(reference), metrics(again)
    assert len(first) == 2
    # the timing keys really are there (and were left out above), and are all that differs
    raw = json.loads((reference / "metrics.jsonl").read_text().splitlines()[0])
    assert {"seconds", "samples_per_second", "eval_seconds"} <= set(raw)
    assert first == second
    # bitwise: the final weights and every optimiser's state
    a, b = read_checkpoint(reference / CHECKPOINT), read_checkpoint(again / CHECKPOINT)
    for k, t in a["learner"]["net"].items():
        assert torch.equal(t, b["learner"]["net"][k]), k


def test_other_seed_other_metrics(reference: Path, data_root: Path, tmp_path: Path) -> None:
    """The comparison above can fail: a different seed changes the figures."""
    other = train(data_root, tmp_path / "other", "--seed", "4", "--epochs", "1")
    assert metrics(other)[0]["loss"] != metrics(reference)[0]["loss"]


def test_checkpoint_every_keeps_epoch_seconds(reference: Path) -> None:
    """Mid-epoch checkpoints must not cut the epoch's timing down to the last stretch."""
    for line in (reference / "metrics.jsonl").read_text().splitlines():
        rec = json.loads(line)
        assert rec["samples_per_second"] == pytest.approx(3000 / rec["seconds"])
    summary = json.loads((reference / "summary.json").read_text())
    total = sum(json.loads(x)["seconds"] for x in (reference / "metrics.jsonl").read_text().splitlines())
    assert total == pytest.approx(summary["train_seconds"], rel=1e-9)  # the epochs' times add up


# --- what a checkpoint holds --------------------------------------------------------------------

def resumed(run: Path) -> Trainer:
    """A trainer continuing ``run``, its checkpoint loaded (nothing trained yet)."""
    cfg, path, ck = resume_config(run)
    t = Trainer(cfg, resume=True, verbose=False)
    t.load_checkpoint(path, ck)
    return t


def test_checkpoint_contents(reference: Path) -> None:
    ck = read_checkpoint(reference / CHECKPOINT)  # weights_only: plain tensors and values
    assert ck["config"]["method"] == "df" and ck["config"]["hidden"] == [64, 64]
    assert (ck["epoch"], ck["step_in_epoch"], ck["global_step"]) == (2, 0, 60)
    assert len(ck["metrics"]) == 2 and ck["metrics"][-1]["epoch"] == 2
    assert set(ck["rng"]) == {"torch", "gen", "python", "numpy"}
    t = load_run(reference)
    opts = ck["learner"]["optimizers"]
    assert set(opts) == {str(i) for i in resumed(reference).learner.optimizers}  # every local optimiser
    for state in opts.values():
        assert state["state"], "an optimiser without state after 60 steps"
        assert all(int(s["step"]) == 60 for s in state["state"].values())
    # the rebuilt run predicts what the run reported
    res = t.evaluate(t.data.test_x, t.data.test_y)
    assert res["accuracy"] == ck["metrics"][-1]["test_accuracy"]


def test_failed_checkpoint_write_keeps_the_old_one(reference: Path, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    run = tmp_path / "run"
    shutil.copytree(reference, run)
    before = (run / CHECKPOINT).read_bytes()
    t = resumed(run)

    def disk_full(obj: object, f: io.BufferedWriter) -> None:
        f.write(b"PK\x03\x04 half a checkpoint")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", disk_full)
    with pytest.raises(FFLearnError, match="No space left on device"):
        t.save_checkpoint()
    assert (run / CHECKPOINT).read_bytes() == before
    assert not (run / (CHECKPOINT + ".tmp")).exists()


def test_nonfinite_weights_never_replace_a_good_checkpoint(reference: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(reference, run)
    before = (run / CHECKPOINT).read_bytes()
    t = resumed(run)
    with torch.no_grad():
        next(t.net.layers[1].parameters()).view(-1)[5] = math.inf
    with pytest.raises(TrainingError, match="layer 1 has non-finite values"):
        t.save_checkpoint()
    assert (run / CHECKPOINT).read_bytes() == before


# --- kill and resume ----------------------------------------------------------------------------

SLOW_PLUGIN = """
    # Paces training so a test can kill it mid-epoch; sleeping does not change any number.
    import time
    from fflearn.learner import Learner

    _step = Learner.step

    def step(self, *args, **kwargs):
        time.sleep(0.05)
        return _step(self, *args, **kwargs)

    Learner.step = step
"""


def test_sigkill_mid_epoch_then_resume_is_exact(reference: Path, data_root: Path, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "slowsteps.py").write_text(textwrap.dedent(SLOW_PLUGIN))
    monkeypatch.syspath_prepend(str(tmp_path))  # the run records its plugin: the resume imports it too
    monkeypatch.setattr(Learner, "step", Learner.step)  # undo the plugin's pacing after the test
    run = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "FFLEARN_NO_DOWNLOAD": "1",
           "PYTHONPATH": os.pathsep.join([str(tmp_path), str(REPO / "src"), os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, "-m", "fflearn", "--plugin", "slowsteps", "train", *RUN,
           "--data-dir", str(data_root), "--out", str(run), "--checkpoint-every", "7"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while not (run / CHECKPOINT).exists():  # written atomically: it exists = it is complete
            if proc.poll() is not None:
                pytest.fail(f"training exited ({proc.returncode}) before its first checkpoint: "
                            f"{proc.stderr.read().decode()[-2000:] if proc.stderr else ''}")
            assert time.monotonic() < deadline, "no checkpoint after 120 s"
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(30)
        if proc.stderr:
            proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    assert not (run / "summary.json").exists()
    ck = read_checkpoint(run / CHECKPOINT)
    assert ck["epoch"] == 0 and ck["step_in_epoch"] % 7 == 0 and 0 < ck["step_in_epoch"] < 30, \
        "the kill did not land mid-epoch"

    rc, err = cli("train", "--resume", str(run), "--progress", "false")
    assert rc == 0, err
    assert read_checkpoint(run / CHECKPOINT)["config"]["plugins"] == ["slowsteps"]
    assert metrics(run) == metrics(reference)
    a, b = read_checkpoint(reference / CHECKPOINT), read_checkpoint(run / CHECKPOINT)
    for k, t in a["learner"]["net"].items():
        assert torch.equal(t, b["learner"]["net"][k]), k
    for i, opt in a["learner"]["optimizers"].items():
        for p, st in opt["state"].items():
            other = b["learner"]["optimizers"][i]["state"][p]
            assert all(torch.equal(st[k], other[k]) for k in ("exp_avg", "exp_avg_sq")), (i, p)


def test_resume_to_more_epochs_and_of_a_finished_run(reference: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(reference, run)
    rc, err = cli("train", "--resume", str(run), "--progress", "false")  # already finished
    assert rc == 0, err
    assert metrics(run) == metrics(reference)
    rc, err = cli("train", "--resume", str(run), "--epochs", "3", "--progress", "false")
    assert rc == 0, err
    m = metrics(run)
    assert [r["epoch"] for r in m] == [1, 2, 3] and m[:2] == metrics(reference)
    assert read_checkpoint(run / CHECKPOINT)["global_step"] == 90


def test_hard_negatives_train_and_resume_exactly(data_root: Path, tmp_path: Path) -> None:
    """negatives 'hard': a real run fills its per-sample margin table, and the table is part of the
    checkpoint, so a run stopped after epoch 1 and resumed ends exactly as one that never stopped."""
    hard = ("--negatives", "hard", "--hard-scale", "2")
    ref = train(data_root, tmp_path / "ref", *hard)
    part = train(data_root, tmp_path / "part", *hard, "--epochs", "1")
    rc, err = cli("train", "--resume", str(part), "--epochs", "2", "--progress", "false")
    assert rc == 0, err
    assert metrics(part) == metrics(ref)
    a, b = read_checkpoint(ref / CHECKPOINT)["learner"], read_checkpoint(part / CHECKPOINT)["learner"]
    table = a["negatives"]["table"]
    assert torch.equal(table, b["negatives"]["table"])
    assert table.shape == (3000, 10)
    # 2 epochs x 3000 samples, one negative each: at most 6000 entries, at least the 3000 of
    # epoch 2's draws (a revisited entry overwrites); a margin of exactly 0 is (almost) never measured
    from fflearn.data import limit as _limit
    from fflearn.data import load_dataset

    y = _limit(load_dataset(DATASET, data_root, download=False), 3000, 500).train_y.long()
    assert 3000 <= int(table.count_nonzero()) <= 6000
    assert (table.gather(1, y.unsqueeze(1)) == 0).all()  # the true label is never a negative


@pytest.mark.parametrize(("flag", "value", "field"), [
    ("--method", "symba", "method"),
    ("--model", "small", "model"),
    ("--dataset", "fashion-mnist" if DATASET == "mnist" else "mnist", "dataset"),
    ("--hidden", "32", "hidden"),
    ("--batch-size", "50", "batch_size"),
])
def test_resume_refuses_another_run_kind(reference: Path, flag: str, value: str, field: str) -> None:
    before = (reference / CHECKPOINT).read_bytes(), (reference / "metrics.jsonl").read_text()
    rc, err = cli("train", "--resume", str(reference), flag, value)
    assert rc == 2
    assert len(err.strip().splitlines()) == 1 and f"{field}=" in err and "checkpoint" in err
    assert ((reference / CHECKPOINT).read_bytes(), (reference / "metrics.jsonl").read_text()) == before


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_resume_of_a_damaged_or_missing_checkpoint(tmp_path: Path) -> None:
    rc, err = cli("train", "--resume", str(tmp_path))
    assert rc == 2 and "nothing to resume" in err and len(err.strip().splitlines()) == 1
    (tmp_path / CHECKPOINT).write_bytes(b"\x80\x04 not a checkpoint")
    rc, err = cli("train", "--resume", str(tmp_path))
    assert rc == 2 and "cannot read checkpoint" in err and len(err.strip().splitlines()) == 1
    torch.save({"weights": torch.zeros(2)}, tmp_path / CHECKPOINT)
    rc, err = cli("train", "--resume", str(tmp_path))
    assert rc == 2 and "not an fflearn checkpoint" in err


# --- numerical guards ---------------------------------------------------------------------------

NAN_PLUGIN = """
    # A loss that turns NaN at one call: the N-pair loss otherwise. With df's blocks of two
    # layers it is called for layer 0 then layer 1 at every step.
    import math
    from fflearn.losses import NPairMarginLoss
    from fflearn.registry import LOSSES

    class NanAt:
        def __init__(self, cfg):
            self.inner = NPairMarginLoss(cfg.margin, cfg.lam, cfg.npair_form, cfg.npair_scale)
            self.calls = 0

        def __call__(self, g_pos, g_neg):
            self.calls += 1
            out = self.inner(g_pos, g_neg)
            return out * math.nan if self.calls == {call} else out

    LOSSES.register("nan-at", NanAt, overwrite=True)
"""


@pytest.mark.parametrize(("step", "layer"), [(13, 1), (4, 0)])
def test_nan_loss_stops_naming_layer_and_step(data_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               step: int, layer: int) -> None:
    module = f"nanloss_{step}_{layer}"
    (tmp_path / f"{module}.py").write_text(textwrap.dedent(NAN_PLUGIN).replace("{call}", str(2 * step + layer + 1)))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(LOSSES, "_items", dict(LOSSES._items))  # the plugin's entry goes with the test
    run = tmp_path / "run"
    # 1000 images / 100 = 10 steps per epoch: global step 13 is batch 4 of epoch 2
    rc, err = cli("--plugin", module, "train", *RUN, "--limit-train", "1000", "--loss", "nan-at",
                  "--data-dir", str(data_root), "--out", str(run))
    assert rc == 2
    assert len(err.strip().splitlines()) == 1
    assert f"loss of layer {layer} is nan at step {step}" in err
    assert f"epoch {step // 10 + 1}, batch {step % 10 + 1}/10" in err
    assert not (run / "summary.json").exists()
    if step < 10:  # epoch 1: nothing to keep, and the message must not pretend otherwise
        assert "no checkpoint was written yet" in err and not (run / CHECKPOINT).exists()
        return
    assert f"{run / CHECKPOINT} (epoch 1) is kept" in err
    t = load_run(run)  # the epoch-1 checkpoint still loads, and is sound
    assert t.epoch == 1 and len(t.metrics) == 1 and len(metrics(run)) == 1
    assert all(torch.isfinite(p).all() for p in t.net.parameters())
    assert t.evaluate(t.data.test_x, t.data.test_y)["accuracy"] == t.metrics[0]["test_accuracy"]
    # what the message suggests: continue from there with a lower learning rate (the plugin's
    # call counter restarts with the resumed run, so the NaN does not come back)
    rc, err = cli("--plugin", module, "train", "--resume", str(run), "--lr", "1e-4")
    assert rc == 0, err
    assert [r["epoch"] for r in metrics(run)] == [1, 2]
    assert read_checkpoint(run / CHECKPOINT)["config"]["lr"] == 1e-4


def test_deferred_nan_check_names_the_first_bad_step_and_layer() -> None:
    """On a GPU the NaN guard reads the losses every ``check_every`` steps (a host read stalls
    the GPU); it must still name the step and layer where the first non-finite loss appeared."""
    from fflearn.api import make_config
    from fflearn.learner import Learner
    from fflearn.models import build_net
    from fflearn.schemes import build_scheme

    cfg = make_config(method="symba", model="mlp", hidden=[8, 8, 8])
    net = build_net(cfg, (1, 4, 4), num_classes=3)
    learner = Learner(net, build_scheme(cfg), cfg, torch.device("cpu"))
    learner.check_every = 4  # the GPU policy, on the CPU: read every 4 segments' losses
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(6, 1, 4, 4, generator=g), torch.randint(0, 3, (6,), generator=g)
    calls = {"n": 0}
    inner = learner.loss_fn

    def loss_fn(g_pos: torch.Tensor, g_neg: torch.Tensor) -> torch.Tensor:
        calls["n"] += 1  # greedy over 3 layers: call 3*step + layer + 1
        out = inner(g_pos, g_neg)
        return out * math.nan if calls["n"] == 3 * 5 + 2 + 1 else out

    learner.loss_fn = loss_fn
    for step in range(5):  # steps 0-4 are finite
        assert math.isfinite(float(learner.step(x, y, step)))
    with pytest.raises(TrainingError, match="loss of layer 2 is nan at step 5"):
        for step in range(5, 12):
            learner.step(x, y, step)
    # 3 segments per step: the bad record is the 18th; the reads come after records 16 and 20,
    # so it is noticed during step 6, one step late, and still named exactly
    assert step == 6
