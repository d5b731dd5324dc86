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


@pytest.fixture(scope="module", params=["df", "trifecta", "symba-icp"])
def run(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, real_small) -> Path:
    """A one-pass (DF anchors, MLP) and two K-pass runs: the Trifecta's label channel (conv) and
    SymBa's intrinsic class pattern (a buffer, not a parameter: the checkpoint and export carry it)."""
    out = tmp_path_factory.mktemp(request.param) / "run"
    net: dict[str, object] = {"hidden": [64, 64]}
    if request.param == "trifecta":
        net = {"model": "small", "width": 0.0625, "crop": 0, "rotation": 0.0}
    method = request.param
    if method == "symba-icp":
        method, net = "symba", {**net, "label_mode": "icp", "params": {"icp_seed": 3}}
    cfg = fflearn.make_config(method=method, dataset=DATASET, epochs=1, batch_size=50, out=str(out),
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


def test_flip_test_aug_averages_each_layer_over_the_image_and_its_mirror(run: Path, real_small, tmp_path: Path,
                                                                          capsys: pytest.CaptureFixture[str],
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """test_aug flip: a layer's score is the mean of its log-softmax over the image and the image
    mirrored (recomputed from two plain passes); a mirror-symmetric image scores as without it;
    fflearn eval --test-aug flip and fflearn.load of a flip run give that accuracy."""
    import fflearn.runs
    from fflearn.config import validate
    from fflearn.errors import ConfigError
    from fflearn.predict import ensemble, layer_scores, select_layers, test_aug_scores

    r = fflearn.runs.load_run(run, with_data=False)
    x = r.norm(real_small.test_x[:64])
    got = test_aug_scores(r.net, x, "flip")
    plain, mirror = layer_scores(r.net, x), layer_scores(r.net, torch.flip(x, dims=[3]))
    for g, a, b in zip(got, plain, mirror, strict=True):
        torch.testing.assert_close(g, (a.log_softmax(1) + b.log_softmax(1)) / 2)
    half = x[..., : x.shape[-1] // 2]
    sym = torch.cat([half, half.flip(-1)], -1)  # the left half and its mirror: the same image mirrored
    for g, a in zip(test_aug_scores(r.net, sym, "flip"), layer_scores(r.net, sym), strict=True):
        torch.testing.assert_close(g, a.log_softmax(1))
    assert any(not torch.allclose(g, a.log_softmax(1)) for g, a in zip(got, plain, strict=True))

    monkeypatch.setattr(fflearn.runs, "load_dataset", lambda *a, **k: real_small)
    assert main(["eval", str(run), "--test-aug", "flip", "--json", str(tmp_path / "f.json")]) == 0
    assert f"({r.cfg.predict}, test_aug flip)" in capsys.readouterr().out  # the run's own voting rule
    out = json.loads((tmp_path / "f.json").read_text())
    y = real_small.test_y
    scores = test_aug_scores(r.net, r.norm(real_small.test_x), "flip")
    vote = ensemble(scores, select_layers(r.cfg.predict, len(scores)))
    assert out["test_aug"] == "flip" and out["test_accuracy"] == (vote.argmax(1) == y).double().mean().item()
    flipped = fflearn.runs.load_run(run, with_data=False, test_aug="flip").model()
    with torch.no_grad():
        assert torch.equal(flipped(real_small.test_x).argmax(1), vote.argmax(1))
    with pytest.raises(ConfigError, match="'test_aug' must be one of none, flip"):
        validate(fflearn.make_config(test_aug="mirror"))


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
