"""Trainer behaviour: learning-rate schedules, the time budget, an end-to-end MNIST run."""

from __future__ import annotations

import json
import math

import pytest
import torch

from conftest import DATASET
from fflearn.api import make_config
from fflearn.schedule import lr_at
from fflearn.trainer import Trainer


def test_schedules_by_hand() -> None:
    cfg = make_config(lr=1e-3, schedule="cosine")
    assert lr_at(cfg, 0.0) == pytest.approx(1e-3)
    assert lr_at(cfg, 0.5) == pytest.approx(0.5e-3)
    assert lr_at(cfg, 0.25) == pytest.approx(1e-3 * 0.5 * (1 + math.cos(math.pi / 4)))
    step = make_config(lr=1e-3, schedule="step", milestones=[0.5, 0.75], gamma=0.1)
    assert [lr_at(step, p) for p in (0.1, 0.5, 0.8)] == pytest.approx([1e-3, 1e-4, 1e-5])
    # the Trifecta slides' 500-epoch run: 1e-3 for 200, 5e-4 for 200, 1e-4 for 100 epochs
    tri = make_config(lr=1e-3, schedule="trifecta500", epochs=500)
    assert [lr_at(tri, e / 500) for e in (0, 199, 200, 399, 400, 499)] == pytest.approx(
        [1e-3, 1e-3, 5e-4, 5e-4, 1e-4, 1e-4])


def test_time_budget_stops_mid_epoch_and_evaluates(real_small, tmp_path) -> None:
    cfg = make_config(method="df", epochs=50, hidden=[64, 64], time_budget=0.5, out=str(tmp_path / "r"),
                      progress=False, schedule="cosine")
    t = Trainer(cfg, dataset=real_small)
    s = t.run()
    assert s["epochs"] < 50
    assert 0.5 <= s["train_seconds"] < 30
    last = json.loads((tmp_path / "r" / "metrics.jsonl").read_text().splitlines()[-1])
    assert "test_accuracy" in last  # the partial last epoch is evaluated
    # the cosine schedule follows the clock: by the end of the budget the lr has annealed
    # (recomputing it from the epoch number, as once logged, gave ~cfg.lr here)
    assert last["lr"] < 0.2 * cfg.lr


def test_mnist_mlp_run_learns_and_writes_a_complete_run_folder(data_root, tmp_path) -> None:
    from fflearn.cli import main

    out = tmp_path / "run"
    # the real MNIST subset through the full CLI path (data found via --data-dir)
    assert main(["train", "--method", "df", "--dataset", DATASET, "--epochs", "2", "--limit-train", "3000",
                 "--limit-test", "1000", "--hidden", "256", "256", "--out", str(out), "--progress", "false",
                 "--data-dir", str(data_root)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    for key in ("method", "dataset", "epochs", "test_accuracy", "per_layer_test_accuracy", "train_seconds"):
        assert key in summary
    assert summary["test_accuracy"] > 0.6  # chance is 0.10; 46 steps on 3000 images
    assert len(summary["per_layer_test_accuracy"]) == 2
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in lines] == [1, 2]
    for key in ("loss", "per_layer_train_accuracy", "per_layer_test_accuracy", "per_layer_g_pos",
                "per_layer_g_neg", "per_layer_separation", "seconds", "samples_per_second"):
        assert key in lines[-1]
    assert (out / "config.yaml").exists() and (out / "checkpoint.pt").exists()

    # `fflearn eval` re-scores the checkpoint, with the run's rule or another one
    js = tmp_path / "eval.json"
    assert main(["eval", str(out), "--data-dir", str(data_root), "--json", str(js)]) == 0
    ev = json.loads(js.read_text())
    assert ev["predict"] == "last" and ev["per_layer_test_accuracy"] == summary["per_layer_test_accuracy"]
    assert ev["test_accuracy"] == ev["per_layer_test_accuracy"][-1]
    assert main(["eval", str(out), "--data-dir", str(data_root), "--predict", "from:0", "--json", str(js)]) == 0
    ev_all = json.loads(js.read_text())
    assert ev_all["predict"] == "from:0" and ev_all["per_layer_test_accuracy"] == ev["per_layer_test_accuracy"]
    assert main(["eval", str(out), "--data-dir", str(data_root), "--predict", "first"]) == 2  # a clear error
    # on a thread count of its own (as on a machine shared with training runs), the same figures
    before = torch.get_num_threads()
    try:
        assert main(["eval", str(out), "--data-dir", str(data_root), "--threads", "1", "--json", str(js)]) == 0
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    assert json.loads(js.read_text())["per_layer_test_accuracy"] == ev["per_layer_test_accuracy"]
    assert main(["eval", str(out), "--data-dir", str(data_root), "--threads", "-1"]) == 2


# --- logs that work on a cluster ----------------------------------------------------------------
def _train_cli(data_root, out, *extra: str):
    import os
    import subprocess
    import sys

    env = {**os.environ, "FFLEARN_NO_DOWNLOAD": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "fflearn", "train", "--method", "df", "--dataset", DATASET,
                           "--data-dir", str(data_root), "--limit-train", "1500", "--limit-test", "300",
                           "--hidden", "32,32", "--batch-size", "50", "--epochs", "2", "--out", str(out), *extra],
                          env=env, capture_output=True, text=True, timeout=120)


def test_logs_outside_a_terminal_are_plain_lines(data_root, tmp_path) -> None:
    """Piped to a file: no \\r frames; an epoch line each epoch and a progress line every
    log_every seconds (here: every step) with the current loss; metrics.csv beside metrics.jsonl."""
    proc = _train_cli(data_root, tmp_path / "run", "--log-every", "1e-6")
    assert proc.returncode == 0, proc.stderr
    assert "\r" not in proc.stdout and "\r" not in proc.stderr
    epoch_lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("epoch ")]
    assert len(epoch_lines) == 2 and "test" in epoch_lines[-1]
    progress = [ln for ln in proc.stderr.splitlines() if ln.startswith("epoch 1/2  step ")]
    assert len(progress) >= 25 and all("loss " in ln for ln in progress)
    losses = [float(ln.split("loss ")[1].split()[0]) for ln in progress]
    assert losses[-1] < losses[0]  # the current loss, not one frozen at the first step
    import csv

    rows = list(csv.DictReader((tmp_path / "run" / "metrics.csv").open()))
    records = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and float(rows[1]["test_accuracy"]) == records[1]["test_accuracy"]
    assert float(rows[0]["per_layer_loss/layer1"]) == records[0]["per_layer_loss"][1]


def test_progress_false_keeps_the_epoch_lines_and_summary_has_provenance(data_root, tmp_path) -> None:
    import torch

    proc = _train_cli(data_root, tmp_path / "run", "--progress", "false", "--log-every", "1e-6")
    assert proc.returncode == 0, proc.stderr
    assert len([ln for ln in proc.stdout.splitlines() if ln.startswith("epoch ")]) == 2
    assert "step " not in proc.stderr  # no progress lines
    prov = json.loads((tmp_path / "run" / "summary.json").read_text())["provenance"]
    assert prov["torch"] == torch.__version__ and prov["plugins"] == []
    assert prov["command"][1:3] == ["train", "--method"]
    assert prov["git_commit"] is None or len(prov["git_commit"].split("+")[0]) == 40


# --- the validation split -----------------------------------------------------------------------
def test_split_validation_by_hand(real_small) -> None:
    from fflearn.data import split_validation

    rest, (vx, vy) = split_validation(real_small, 300, seed=3)
    again, (vx2, _) = split_validation(real_small, 300, seed=3)
    other, (vx3, _) = split_validation(real_small, 300, seed=4)
    assert len(vy) == 300 and len(rest.train_y) == len(real_small.train_y) - 300
    assert torch_equal(vx, vx2) and not torch_equal(vx, vx3)  # seeded
    # disjoint, and together the whole training set (as a multiset of images)
    key = lambda x: sorted(hash(bytes(im.numpy().tobytes())) for im in x)  # noqa: E731
    assert key(list(vx) + list(rest.train_x)) == key(list(real_small.train_x))
    assert torch_equal(rest.test_x, real_small.test_x)  # the test set is never touched


def torch_equal(a, b) -> bool:
    import torch

    return a.shape == b.shape and bool(torch.equal(a, b))


def test_val_split_reports_validation_each_epoch_and_test_at_the_end(real_small, tmp_path) -> None:
    cfg = make_config(method="df", hidden=[32], epochs=3, batch_size=50, val_split=500, out=str(tmp_path / "r"),
                      progress=False)
    t = Trainer(cfg, dataset=real_small, verbose=False)
    assert len(t.data.train_y) == len(real_small.train_y) - 500 and len(t.val[1]) == 500
    s = t.run()
    recs = [json.loads(x) for x in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    assert all("val_accuracy" in r and len(r["per_layer_val_accuracy"]) == 1 for r in recs)
    assert ["test_accuracy" in r for r in recs] == [False, False, True]
    assert s["val_accuracy"] == recs[-1]["val_accuracy"] and s["test_accuracy"] == recs[-1]["test_accuracy"]
    assert s["val_images"] == 500 and recs[0]["samples_per_second"] > 0
    assert recs[0]["step"] == (len(real_small.train_y) - 500) // 50  # trained on the rest only
    every = make_config(method="df", hidden=[32], epochs=2, batch_size=50, val_split=500, eval_test=True,
                        out=str(tmp_path / "e"), progress=False)
    Trainer(every, dataset=real_small, verbose=False).run()
    recs = [json.loads(x) for x in (tmp_path / "e" / "metrics.jsonl").read_text().splitlines()]
    assert all("test_accuracy" in r for r in recs)


def test_ema_is_what_is_evaluated_saved_and_resumed(real_small, tmp_path) -> None:
    """--ema D: the reported accuracy is the weights' moving average's, fflearn.load gives that net,
    the summary's raw_test_accuracy is the live weights' (as a run without the average), and a run resumed after epoch 1 ends exactly as one that never stopped."""
    import torch

    import fflearn

    base = dict(method="df", hidden=[32], batch_size=50, progress=False, ema=0.9)
    full = make_config(**base, epochs=2, out=str(tmp_path / "full"))
    s = Trainer(full, dataset=real_small, verbose=False).run()
    model = fflearn.load(tmp_path / "full")
    with torch.no_grad():
        acc = (model(real_small.test_x).argmax(1) == real_small.test_y).double().mean().item()
    assert acc == s["test_accuracy"]
    live = make_config(**{**base, "ema": 0.0}, epochs=2, out=str(tmp_path / "live"))
    live_acc = Trainer(live, dataset=real_small, verbose=False).run()["test_accuracy"]
    assert live_acc != s["test_accuracy"]
    assert s["raw_test_accuracy"] == live_acc  # the average does not change the live weights' path
    part = make_config(**base, epochs=1, out=str(tmp_path / "part"))
    Trainer(part, dataset=real_small, verbose=False).run()
    from fflearn.checkpoint import resume_config

    cfg, path, ck = resume_config(tmp_path / "part", {"epochs": 2})
    t = Trainer(cfg, resume=True, dataset=real_small, verbose=False)
    t.load_checkpoint(path, ck)
    assert t.run()["test_accuracy"] == s["test_accuracy"]


def test_ema_on_a_batch_norm_net_measures_its_statistics_again(real_small, tmp_path) -> None:
    """With ema on a batch-norm net, the average's batch-norm statistics are measured again on
    ema_bn_batches clean training batches before it is scored and saved: the saved average holds
    the statistics recalibrate_bn gives the averaged weights, not the averaged statistics
    (ema_bn_batches 0), and the weights themselves are the same either way."""
    from fflearn.batchnorm import recalibrate_bn
    from fflearn.data.splits import split_validation
    from fflearn.runs import load_run

    base = dict(method="df", hidden=[32, 32], norm="bn", batch_size=50, epochs=1, progress=False, ema=0.9)
    Trainer(make_config(**base, out=str(tmp_path / "measured")), dataset=real_small, verbose=False).run()
    Trainer(make_config(**base, ema_bn_batches=0, out=str(tmp_path / "averaged")), dataset=real_small,
            verbose=False).run()
    measured, averaged = load_run(tmp_path / "measured", with_data=False), load_run(tmp_path / "averaged", with_data=False)
    stats = ("running_mean", "running_var")
    for (name, a), (_, b) in zip(measured.net.state_dict().items(), averaged.net.state_dict().items(), strict=True):
        if not name.endswith(stats + ("num_batches_tracked",)):
            assert torch.equal(a, b), name  # the statistics change no weight
    bns = [n for n in measured.net.state_dict() if n.endswith(stats)]
    assert len(bns) == 4 and all(not torch.equal(measured.net.state_dict()[n], averaged.net.state_dict()[n])
                                  for n in bns)
    part, _ = split_validation(real_small, averaged.cfg.val_split, averaged.cfg.seed)  # the images the run trained on
    assert recalibrate_bn(averaged.net, averaged.norm, part.train_x, part.train_y, 16, 50, seed=0) == 2  # by hand
    for n in bns:
        assert torch.allclose(measured.net.state_dict()[n], averaged.net.state_dict()[n], atol=1e-5), n


def test_eval_on_the_held_out_validation_split(real_small, tmp_path, capsys, monkeypatch) -> None:
    """fflearn eval --split val rebuilds the run's own validation split and reproduces its figure."""
    from fflearn.cli import main
    from fflearn.data import Dataset

    cfg = make_config(method="df", hidden=[32], epochs=1, batch_size=50, val_split=300, out=str(tmp_path / "r"),
                      progress=False)
    s = Trainer(cfg, dataset=real_small, verbose=False).run()
    import fflearn.runs

    def subset(*a: object, **k: object) -> Dataset:  # the run trained on this subset: eval reads the same
        return real_small

    monkeypatch.setattr(fflearn.runs, "load_dataset", subset)
    assert main(["eval", str(tmp_path / "r"), "--split", "val", "--json", str(tmp_path / "v.json")]) == 0
    assert json.loads((tmp_path / "v.json").read_text())["val_accuracy"] == s["val_accuracy"]
    assert "val accuracy (last)" in capsys.readouterr().out
    run = fflearn.runs.load_run(tmp_path / "r")  # the training part is the rest of the same images
    (_, ty), (_, vy) = run.split("train"), run.split("val")
    assert (len(ty), len(vy)) == (1700, 300)
    assert torch.equal(torch.cat([ty, vy]).sort().values, real_small.train_y.sort().values)
