"""Extending fflearn from outside the package: a plugin module registers a loss, a dataset and a
method, and both the Python API and the CLI (``--plugin MODULE``) train with them.

The plugin is written to a temporary folder that is only on ``sys.path`` / ``PYTHONPATH``, as a
user's own module would be; nothing in fflearn knows its names.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

import fflearn
from conftest import DATASET
from fflearn import cli
from fflearn.errors import ConfigError
from fflearn.registry import DATASETS, LOSSES, METHODS

PLUGIN = '''
"""A user's plugin: three digits of the real MNIST, a hardest-negative hinge loss, a recipe."""
from pathlib import Path

import torch

from fflearn.data import Dataset, load_dataset
from fflearn.methods import method_defaults
from fflearn.registry import DATASETS, LOSSES, METHODS

SHAPES = []  # (g_pos, g_neg) shapes the loss was called with, for the test to read


class HardestHinge:
    """relu(margin - (g_pos - max_j g_neg_j)); fflearn builds it with the run's Config."""

    def __init__(self, cfg):
        self.margin = cfg.margin
        self.out = cfg.out

    def __call__(self, g_pos, g_neg):
        if not SHAPES and self.out:  # proof, readable from another process, that fflearn used it
            Path(self.out, "plugin-loss-used").write_text(str(self.margin))
        SHAPES.append((tuple(g_pos.shape), tuple(g_neg.shape)))
        return torch.relu(self.margin - (g_pos - g_neg.max(1).values))


def mnist012(root: Path, download: bool) -> Dataset:
    """Digits 0, 1 and 2 of the real MNIST found under ``root``."""
    full = load_dataset("{DATASET}", root, download=False)
    tr, te = full.train_y < 3, full.test_y < 3
    return Dataset(name="mnist012", train_x=full.train_x[tr][:1500], train_y=full.train_y[tr][:1500],
                   test_x=full.test_x[te][:600], test_y=full.test_y[te][:600], num_classes=3,
                   classes=["0", "1", "2"], label="MNIST 0-2 (plugin)", source=full.source)


LOSSES.register("hardest-hinge", HardestHinge)
DATASETS.register("mnist012", mnist012)
METHODS.register("plugin-df", lambda model: {**method_defaults("df", model), "loss": "hardest-hinge", "margin": 0.5})
'''.replace("{DATASET}", DATASET)

NAMES = {LOSSES: "hardest-hinge", DATASETS: "mnist012", METHODS: "plugin-df"}


@pytest.fixture
def plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Write the plugin module outside the package; unregister its names afterwards."""
    name = f"fflearn_user_plugin_{uuid.uuid4().hex[:8]}"
    folder = tmp_path / "plugins"
    folder.mkdir()
    (folder / f"{name}.py").write_text(PLUGIN)
    monkeypatch.syspath_prepend(str(folder))
    saved = {reg: dict(reg._items) for reg in NAMES}
    yield name
    for reg, items in saved.items():
        reg._items.clear()
        reg._items.update(items)
    sys.modules.pop(name, None)


def common(data_root: Path, out: Path) -> dict:
    return {
        "dataset": "mnist012",
        "data_dir": str(data_root),
        "hidden": [200, 200],
        "epochs": 1,
        "batch_size": 100,
        "out": str(out),
        "progress": False,
        "device": "cpu",
    }


def test_names_are_unknown_before_the_plugin_is_imported() -> None:
    for reg, name in NAMES.items():
        assert name not in reg
    with pytest.raises(ConfigError, match="unknown loss 'hardest-hinge'; choose one of: .*npair"):
        LOSSES.get("hardest-hinge")


def test_plugin_through_the_api(plugin: str, data_root: Path, tmp_path: Path) -> None:
    import importlib

    mod = importlib.import_module(plugin)
    assert {"hardest-hinge"} <= set(LOSSES) and "mnist012" in DATASETS and "plugin-df" in METHODS
    out = tmp_path / "api-run"
    cfg = fflearn.make_config(method="df", loss="hardest-hinge", margin=0.5, **common(data_root, out))
    summary = fflearn.train(cfg)
    assert summary["dataset_label"] == "MNIST 0-2 (plugin)"
    # the public name stays the function after training has loaded the trainer module
    assert fflearn.train is fflearn.api.train
    assert (out / "plugin-loss-used").read_text() == "0.5"
    # 15 steps x 2 layers, each call with (B,) positives and all K-1 = 2 negatives of 3 classes
    assert len(mod.SHAPES) == 15 * 2 and set(mod.SHAPES) == {((100,), (100, 2))}
    # a working loss gets far above chance (1/3) in one short epoch (0.85 measured)
    assert summary["test_accuracy"] > 0.6, summary


def test_plugin_through_the_cli(plugin: str, data_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "cli-run"
    args = ["--plugin", plugin, "train", "--method", "plugin-df"]
    for k, v in common(data_root, out).items():
        args += [f"--{k.replace('_', '-')}", *(map(str, v) if isinstance(v, list) else [str(v)])]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(tmp_path / "plugins")}
    proc = subprocess.run(
        [sys.executable, "-m", "fflearn", *args], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    cfg = yaml.safe_load((out / "config.yaml").read_text())
    assert (cfg["method"], cfg["loss"], cfg["dataset"], cfg["margin"]) == (
        "plugin-df",
        "hardest-hinge",
        "mnist012",
        0.5,
    )
    assert (out / "plugin-loss-used").exists()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["dataset_label"] == "MNIST 0-2 (plugin)" and summary["test_accuracy"] > 0.6
    assert "MNIST 0-2 (plugin)" in proc.stdout


def test_plugin_flag_forms_and_errors(plugin: str, capsys: pytest.CaptureFixture[str]) -> None:
    # --plugin=MODULE also works, and a run with a missing plugin is one clear line, exit 2
    with pytest.raises(SystemExit) as e:
        cli.main([f"--plugin={plugin}", "--version"])
    assert e.value.code == 0 and "mnist012" in DATASETS
    capsys.readouterr()
    assert cli.main(["--plugin", "no_such_fflearn_plugin_module", "train"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "fflearn: error: cannot import plugin 'no_such_fflearn_plugin_module': "
        "No module named 'no_such_fflearn_plugin_module' (give a module on the Python path or a path to a .py file)"
    ]


# --- one plugin of each ingredient kind, with a hyperparameter of its own -----------------------
KINDS_FILE = str(Path(__file__).resolve().parents[1] / "examples" / "plugin_kinds.py")
KINDS = [  # (flags selecting the ingredient and setting its hyperparameter, name, hyperparameter, value)
    (["--method", "symba", "--loss", "focal-symba", "--focal-gamma", "1.5"], "focal-symba", "focal_gamma", 1.5),
    (["--method", "df", "--negatives", "n-random", "--n-negatives", "3"], "n-random", "n_negatives", 3),
    (["--method", "df", "--scheme", "first-alone", "--tail-block", "1"], "first-alone", "tail_block", 1),
    (["--method", "symba", "--goodness", "power-mean", "--goodness-power", "3"], "power-mean", "goodness_power", 3.0),
    (["--method", "symba", "--model", "small", "--width", "0.0625", "--label-mode", "random-pattern",
      "--pattern-scale", "2"], "random-pattern", "pattern_scale", 2.0),
    (["--method", "lcp", "--head", "cosine-linear", "--head-temperature", "5"], "cosine-linear", "head_temperature", 5.0),
]


@pytest.mark.parametrize(("flags", "name", "param", "value"), KINDS, ids=[k[1] for k in KINDS])
def test_each_ingredient_kind_as_a_plugin_with_its_own_hyperparameter(
        flags: list[str], name: str, param: str, value: float, data_root: Path, tmp_path: Path) -> None:
    """Registered from outside the package, selected by name, its hyperparameter set by a flag:
    it trains, the value reaches the constructor, config.yaml records it, a resume keeps it, and
    a fresh process evaluates the run (importing the recorded plugin) to the reported accuracy."""
    from fflearn.plugins import import_plugin

    kinds = import_plugin(KINDS_FILE)
    kinds.BUILT.clear()
    run = tmp_path / "run"
    base = ["train", "--plugin", KINDS_FILE, *flags, "--dataset", DATASET, "--data-dir", str(data_root),
            "--limit-train", "600", "--limit-test", "300", "--batch-size", "50", "--hidden", "32,32",
            "--epochs", "1", "--progress", "false", "--threads", "1", "--out", str(run)]
    assert cli.main(base) == 0
    assert (name, {param: value}) in kinds.BUILT  # the flag's value reached the ingredient
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["params"] == {param: value} and saved["plugins"] == [KINDS_FILE]
    kinds.BUILT.clear()
    assert cli.main(["train", "--resume", str(run), "--epochs", "2", "--progress", "false"]) == 0
    assert (name, {param: value}) in kinds.BUILT  # restored on resume
    summary = json.loads((run / "summary.json").read_text())
    assert summary["epochs"] == 2 and summary["test_accuracy"] > 0.15  # above chance (0.1; 300 test images)
    env = {**os.environ, "FFLEARN_NO_DOWNLOAD": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "fflearn", "eval", str(run), "--data-dir", str(data_root),
                           "--json", str(tmp_path / "eval.json")], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert json.loads((tmp_path / "eval.json").read_text())["test_accuracy"] == summary["test_accuracy"]


def test_a_plugin_hyperparameter_is_validated(data_root: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["train", "--plugin", KINDS_FILE, "--method", "df", "--negatives", "n-random", "--dataset", DATASET,
            "--data-dir", str(data_root),
            "--out", str(tmp_path / "run")]
    assert cli.main([*argv, "--n-negatives", "many"]) == 2
    err = capsys.readouterr().err
    assert "'n_negatives' must be an integer" in err and "negative sampler 'n-random'" in err
    assert cli.main([*argv, "--n-negatives", "10"]) == 2  # the constructor's own check, as one line
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "n_negatives must be in [1, 9]" in err
    assert not (tmp_path / "run").exists()


def test_contributing_loss_example_runs(data_root: Path, tmp_path: Path) -> None:
    """CONTRIBUTING.md's plugin example, as written there: its file, then its command (on a tiny
    budget), in a fresh process."""
    text = (Path(__file__).resolve().parents[1] / "CONTRIBUTING.md").read_text()
    code = text.split("```python\n# myloss.py\n", 1)[1].split("```", 1)[0]
    command = text.split("```bash\nfflearn train --plugin myloss.py", 1)[1].split("\n", 1)[0].split()
    (tmp_path / "myloss.py").write_text(code)
    env = {**os.environ, "FFLEARN_NO_DOWNLOAD": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "fflearn", "train", "--plugin", "myloss.py", *command,
                           "--dataset", DATASET, "--data-dir", str(data_root), "--limit-train", "500", "--limit-test", "200", "--hidden", "32",
                           "--epochs", "1", "--out", str(tmp_path / "run"), "--progress", "false"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert saved["loss"] == "focal-symba" and saved["params"] == {"focal_gamma": 1.5}


def test_plugin_anywhere_and_file_plugins_fail_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["train", "--plugin", str(tmp_path / "missing.py"), "--print-config"]) == 2
    assert capsys.readouterr().err.strip() == f"fflearn: error: cannot import plugin {str(tmp_path / 'missing.py')!r}: " \
        f"no such file {tmp_path / 'missing.py'}"
    broken = tmp_path / "broken.py"
    broken.write_text("raise RuntimeError('boom')\n")
    assert cli.main(["--plugin", str(broken), "train", "--print-config"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "failed while importing: RuntimeError: boom" in err and "Traceback" not in err
    # after the subcommand, and recorded in the resolved config
    assert cli.main(["train", "--plugin", KINDS_FILE, "--loss", "focal-symba", "--print-config"]) == 0
    cfg = yaml.safe_load(capsys.readouterr().out)
    assert cfg["plugins"] == [KINDS_FILE] and cfg["loss"] == "focal-symba"
