"""Using a trained network outside fflearn's own commands: fflearn.load, export, predict."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import fflearn
from conftest import DATASET
from fflearn.cli import main


@pytest.fixture(scope="module", params=["df", "trifecta"])
def run(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, real_small) -> Path:
    """A one-pass (DF anchors, MLP) and a K-pass (the Trifecta's label channel, conv) run."""
    out = tmp_path_factory.mktemp(request.param) / "run"
    net = {"hidden": [64, 64]} if request.param == "df" else {"model": "small", "width": 0.0625, "crop": 0,
                                                              "rotation": 0.0}
    cfg = fflearn.make_config(method=request.param, dataset=DATASET, epochs=1, batch_size=50, out=str(out),
                              progress=False, **net)
    fflearn.train(cfg, dataset=real_small)
    return out


def test_load_reproduces_the_reported_accuracy_without_the_dataset(run: Path, real_small,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    import fflearn.runs

    def no_data(*a: object, **k: object) -> None:
        raise AssertionError("fflearn.load read the dataset")

    monkeypatch.setattr(fflearn.runs, "load_dataset", no_data)
    model = fflearn.load(run)
    assert isinstance(model, torch.nn.Module) and not model.training
    summary = json.loads((run / "summary.json").read_text())
    x, y = real_small.test_x, real_small.test_y
    with torch.no_grad():
        for images in (x, x.float() / 255):  # uint8, or floats in [0, 1] (torchvision's ToTensor)
            scores = model(images)
            assert scores.shape == (len(y), 10)
            assert (scores.argmax(1) == y).double().mean().item() == summary["test_accuracy"]
        per_layer = [(s.argmax(1) == y).double().mean().item() for s in model.layer_scores(x)]
    assert per_layer == summary["per_layer_test_accuracy"]
    assert model.classes == real_small.classes  # carried by the checkpoint


@pytest.mark.parametrize("fmt", ["torchscript", "exported-program"])
def test_export_runs_in_plain_pytorch(run: Path, real_small, fmt: str, tmp_path: Path) -> None:
    """The exported file, loaded in a process that never imports fflearn, gives the same argmax."""
    out = tmp_path / "model.file"
    assert main(["export", str(run), "--format", fmt, "--out", str(out)]) == 0
    x = real_small.test_x[:300].float() / 255
    torch.save(x, tmp_path / "x.pt")
    code = f"""
import sys, torch
x = torch.load({str(tmp_path / 'x.pt')!r})
if {fmt!r} == "torchscript":
    m = torch.jit.load({str(out)!r})
else:
    m = torch.export.load({str(out)!r}).module()
pred = torch.cat([m(x[:7]), m(x[7:])]).argmax(1)  # two batch sizes: the batch dimension stays free
torch.save(pred, {str(tmp_path / 'pred.pt')!r})
assert "fflearn" not in sys.modules
"""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    with torch.no_grad():
        want = fflearn.load(run)(x).argmax(1)
    assert torch.equal(torch.load(tmp_path / "pred.pt"), want)


def test_predict_prints_class_names(run: Path, real_small, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from PIL import Image

    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(5):
        Image.fromarray(real_small.test_x[i, 0].numpy()).save(folder / f"img{i}.png")
    Image.fromarray(np.asarray(real_small.test_x[5, 0])).save(tmp_path / "single.jpg", quality=100)
    assert main(["predict", str(run), str(folder), str(tmp_path / "single.jpg")]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    model = fflearn.load(run)
    with torch.no_grad():
        pred = model(real_small.test_x[:5]).argmax(1)
    assert [ln.split("\t")[1] for ln in lines[:5]] == [model.classes[i] for i in pred]
    assert lines[5].startswith(str(tmp_path / "single.jpg"))
    assert main(["predict", str(run), str(tmp_path / "missing.png")]) == 2
    assert "no such image file or folder" in capsys.readouterr().err
