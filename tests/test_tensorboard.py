"""Optional TensorBoard logging: the event files hold exactly the numbers of metrics.jsonl."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest

import fflearn
from conftest import DATASET
from fflearn import cli
from fflearn.errors import ConfigError
from fflearn.tensorboard import scalars


def test_scalars_flattens_a_record_by_hand() -> None:
    rec = {
        "epoch": 3,
        "loss": 0.25,
        "lr": 1e-3,
        "per_layer_loss": [0.5, None, 2],
        "test_accuracy": 1,
        "flag": True,
        "name": "x",
        "bad": float("nan"),
        "per_layer_g_neg": [float("inf"), -1.5],
    }
    assert scalars(rec) == {
        "loss": 0.25,
        "lr": 1e-3,
        "per_layer_loss/layer0": 0.5,
        "per_layer_loss/layer2": 2.0,
        "test_accuracy": 1.0,
        "per_layer_g_neg/layer1": -1.5,
    }


def test_run_writes_the_epoch_records(tmp_path: Path, real_small) -> None:
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "run"
    cfg = fflearn.make_config(
        method="df",
        hidden=[64, 64],
        epochs=2,
        limit_train=600,
        limit_test=300,
        out=str(out),
        progress=False,
        device="cpu",
        tensorboard=True,
    )
    fflearn.train(cfg, dataset=real_small)
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2]
    acc = EventAccumulator(str(out / "tb"))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    expected = {
        "loss",
        "test_accuracy",
        "train_accuracy",
        "seconds",
        "per_layer_test_accuracy/layer0",
        "per_layer_test_accuracy/layer1",
        "per_layer_separation/layer1",
        "per_layer_g_pos/layer0",
    }
    assert expected <= tags
    for tag in expected:
        events = acc.Scalars(tag)
        assert [e.step for e in events] == [1, 2]
        for e, rec in zip(events, records, strict=True):
            want = scalars(rec)[tag]
            assert math.isclose(e.value, want, rel_tol=1e-6, abs_tol=1e-6), (tag, e.value, want)


def test_missing_tensorboard_is_one_clear_error(tmp_path: Path, real_small, data_root, monkeypatch, capsys) -> None:
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import now fails
    cfg = fflearn.make_config(
        method="df", hidden=[32], epochs=1, out=str(tmp_path / "r"), progress=False, device="cpu", tensorboard=True
    )
    with pytest.raises(ConfigError, match=r"pip install fflearn\[tensorboard\]"):
        fflearn.train(cfg, dataset=real_small)
    assert not (tmp_path / "r" / "config.yaml").exists()  # refused before the run started
    # the CLI prints that as one line and exits 2
    code = cli.main(
        [
            "train",
            "--tensorboard",
            "--dataset",
            DATASET,
            "--data-dir",
            str(data_root),
            "--limit-train",
            "200",
            "--out",
            str(tmp_path / "c"),
            "--progress",
            "false",
        ]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("fflearn: error: config field 'tensorboard'")
    assert "pip install fflearn[tensorboard]" in err[0]
