"""The examples/ scripts run, on a tiny budget, exactly as a user would run them.

Each runs in its own process (``python examples/X.py``) from a scratch folder, so a script that
only works from the repository root, or only when fflearn was imported some other way, fails
here. The tiny budget is selected once by ``--tiny`` and once by ``$FFLEARN_EXAMPLE_TINY``, the
two ways CI may use.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import DATASET

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def run_example(name: str, args: list[str], cwd: Path, data_root: Path, tiny_env: bool = False) -> str:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "FFLEARN_DATA": str(data_root), "MPLBACKEND": "Agg"}
    env.pop("FFLEARN_EXAMPLE_TINY", None)
    if tiny_env:
        env["FFLEARN_EXAMPLE_TINY"] = "1"
    else:
        args = [*args, "--tiny"]
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, f"{name} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def test_train_df_fashion_mnist(tmp_path: Path, data_root: Path) -> None:
    from fflearn.data import find_data_dir

    if find_data_dir("fashion-mnist", data_root) is None and find_data_dir("fashion-mnist") is None:
        pytest.skip("Fashion-MNIST is not installed (scripts/setup.sh installs it)")
    out = tmp_path / "run"
    stdout = run_example("train_df_fashion_mnist.py", ["--out", str(out)], tmp_path, data_root)
    summary = json.loads((out / "summary.json").read_text())
    cfg = yaml.safe_load((out / "config.yaml").read_text())
    assert (cfg["method"], cfg["dataset"], cfg["scheme"], cfg["block_size"]) == ("df-o", "fashion-mnist", "blocks", 2)
    assert (cfg["epochs"], cfg["limit_train"], cfg["hidden"]) == (1, 1000, [200, 200])  # the tiny budget
    assert summary["dataset_label"] == "Fashion-MNIST"
    assert len(summary["per_layer_test_accuracy"]) == 2
    # one epoch on 1000 images: well above chance (10%), far from converged
    assert summary["test_accuracy"] > 0.3, summary
    assert f"test accuracy (predict=last): {100 * summary['test_accuracy']:.2f}%" in stdout


def test_custom_loss(tmp_path: Path, data_root: Path) -> None:
    out = tmp_path / "run"
    stdout = run_example("custom_loss.py", ["--out", str(out), "--dataset", DATASET], tmp_path, data_root, tiny_env=True)
    cfg = yaml.safe_load((out / "config.yaml").read_text())
    assert cfg["loss"] == "sq-hinge" and cfg["margin"] == 0.5
    summary = json.loads((out / "summary.json").read_text())
    assert summary["test_accuracy"] > 0.3, summary  # the custom loss trains, not just runs
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert all(v is not None and v >= 0 for v in metrics[-1]["per_layer_loss"])  # a squared hinge
    assert "with loss 'sq-hinge'" in stdout


def test_evaluate_per_layer(tmp_path: Path, data_root: Path) -> None:
    out, fig, js = tmp_path / "run", tmp_path / "layers.png", tmp_path / "layers.json"
    stdout = run_example(
        "evaluate_per_layer.py", ["--out", str(out), "--plot", str(fig), "--json", str(js), "--dataset", DATASET],
        tmp_path, data_root
    )
    report = json.loads(js.read_text())
    per_layer = report["per_layer_test_accuracy"]
    assert len(per_layer) == 3 and set(report["rules"]) == {"last", "all", "from:1"}
    # re-evaluating the checkpoint gives what the trainer measured after its last epoch
    assert report["history"][-1] == [2, per_layer]
    assert report["rules"]["last"] == per_layer[-1]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["per_layer_test_accuracy"] == per_layer
    assert fig.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and fig.stat().st_size > 10_000
    assert f"predict=last     {100 * per_layer[-1]:6.2f}%" in stdout
