"""The CLI refuses bad input before any work: one line on stderr naming the field, exit status 2,
no run folder touched. Also missing, unwritable and corrupt data, and the run folder's safety."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import os
import shutil
import subprocess
import sys
import typing
from pathlib import Path

import pytest
import torch

from conftest import DATASET
from fflearn.cli import build_parser, main
from fflearn.config import Config
from fflearn.data import locate

REPO = Path(__file__).resolve().parents[1]
QUICK = ["train", "--method", "df", "--dataset", DATASET, "--model", "mlp", "--hidden", "32", "--epochs", "1",
         "--batch-size", "100", "--limit-train", "500", "--limit-test", "200", "--progress", "false",
         "--device", "cpu"]


@pytest.fixture(autouse=True)
def _isolate(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No network, and no data found by accident outside the folders a test names."""
    monkeypatch.setenv("FFLEARN_NO_DOWNLOAD", "1")
    monkeypatch.delenv("FFLEARN_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(locate, "STANDARD_ROOTS", [])
    monkeypatch.chdir(tmp_path)  # a default runs/ folder would land here


def cli(*argv: str) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        rc = main(list(argv))
    return rc, err.getvalue()


def one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("fflearn: error: "), err
    return lines[0]


FIXED_CHOICES = {"method": ["df", "lcp"], "dataset": ["mnist", "cifar10"], "model": ["mlp", "small"]}


def _sample_value(name: str) -> tuple[list[str], object]:
    """Flag words that set field ``name`` to a value other than its default, and that value."""
    from fflearn.config import choices

    typ = typing.get_type_hints(Config)[name]
    default = getattr(Config(), name)
    allowed = FIXED_CHOICES.get(name) or choices(name)
    if typ is bool:
        return ["false" if default else "true"], not default
    if name == "milestones":
        return ["0.3,0.7"], [0.3, 0.7]  # the comma form of a list
    if name == "hidden":
        return ["7", "9"], [7, 9]
    if typing.get_origin(typ) is list:
        return ["a", "b"], ["a", "b"]
    if allowed:
        value = next(v for v in allowed if v != default)
        return [value], value
    if typ is float:
        return ["0.25"], 0.25
    if typ in (int, int | None):
        return ["7"], 7
    return ["something"], "something"


def test_every_config_field_is_a_flag_that_sets_it() -> None:
    """Parse a flag for every field and check that the field got the value: a field without a
    flag, a flag writing another field, or a value lost on the way fails."""
    from fflearn.cli import given_fields

    p = build_parser()
    for f in dataclasses.fields(Config):
        if f.name == "params":  # set through the plugins' own flags (test_plugins)
            continue
        words, want = _sample_value(f.name)
        got = given_fields(p.parse_args(["train", "--" + f.name.replace("_", "-"), *words]))
        assert set(got) == {f.name}, (f.name, got)
        assert getattr(Config.from_dict(got), f.name) == want, (f.name, got, want)


CONFIG_FILES = {
    "unknown.yaml": ("epochs: 1\nlerning_rate: 0.1\n", "lerning_rate"),
    "type.yaml": ("tau: many\n", "'tau'"),  # fields the QUICK flags do not override
    "list.yaml": ("milestones: 0.5\n", "'milestones'"),
    "yaml.yaml": ("lr: [0.1\n", "not valid YAML"),
    "range.yaml": ("margin: -1\n", "margin"),
}

BAD_FLAGS = [  # (flags, text the one line must contain)
    (["--lr", "0"], "'lr'"), (["--lr", "-0.5"], "'lr'"), (["--lr", "nan"], "'lr'"), (["--lr", "fast"], "'lr'"),
    (["--epochs", "0"], "'epochs'"), (["--epochs", "1.5"], "'epochs'"), (["--batch-size", "0"], "'batch_size'"),
    (["--margin", "-0.1"], "'margin'"), (["--hidden", "64", "x"], "'hidden'"), (["--seed", "-3"], "'seed'"),
    (["--deterministic", "maybe"], "'deterministic'"), (["--checkpoint-every", "-1"], "'checkpoint_every'"),
    (["--milestones", "0.9", "0.1"], "'milestones'"), (["--device", "tpu"], "'device'"),
    (["--label-mode", "channel"], "label_mode"), (["--feedback", "random", "--scheme", "greedy"], "feedback"),
    (["--label-mode", "head"], "'loss'"), (["--loss", "ce"], "'label_mode'"),
    (["--method", "nope"], "unknown method 'nope'"),
    (["--dataset", "nope"], "config field 'dataset' must be one of cifar10, cifar100, fashion-mnist"),
    (["--model", "nope"], "config field 'model' must be one of large, mlp, small; got 'nope'"),
    (["--loss", "nope"], "config field 'loss' must be one of ce, ff, npair, symba; got 'nope'"),
    (["--scheme", "nope"], "config field 'scheme' must be one of apl, blocks, e2e, greedy; got 'nope'"),
    (["--negatives", "two"], "config field 'negatives' must be one of all, hard, one; got 'two'"),
    (["--head", "nope"], "config field 'head' must be auto or one of anchors, goodness, label-anchors, linear"),
    *[(["--config", name], text) for name, (_, text) in CONFIG_FILES.items()],
    (["--config", "missing.yaml"], "cannot read config file"),
]


@pytest.mark.parametrize(("flags", "text"), BAD_FLAGS, ids=[" ".join(f) for f, _ in BAD_FLAGS])
def test_bad_input_is_one_line_exit_2_and_no_work(tmp_path: Path, flags: list[str], text: str) -> None:
    for name, (body, _) in CONFIG_FILES.items():
        (tmp_path / name).write_text(body)
    out = tmp_path / "run"
    rc, err = cli(*QUICK, "--data-dir", str(tmp_path / "nodata"), "--out", str(out), *flags)
    assert rc == 2
    assert text in one_line(err)
    assert not out.exists() and not (tmp_path / "runs").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_a_gpu(tmp_path: Path) -> None:
    rc, err = cli(*QUICK, "--device", "cuda", "--out", str(tmp_path / "run"))
    assert rc == 2 and "'device'" in one_line(err) and not (tmp_path / "run").exists()


def test_batch_larger_than_the_data_keeps_an_existing_run(tmp_path: Path, data_root: Path) -> None:
    """Checked after loading the data, still before the run folder is touched (even --overwrite)."""
    out = tmp_path / "run"
    out.mkdir()
    for f in ("config.yaml", "metrics.jsonl", "checkpoint.pt"):
        (out / f).write_text(f"old {f}")
    rc, err = cli(*QUICK, "--data-dir", str(data_root), "--out", str(out), "--overwrite", "--limit-train", "50")
    assert rc == 2 and "'batch_size'" in one_line(err) and "50 images" in err
    assert all((out / f).read_text() == f"old {f}" for f in ("config.yaml", "metrics.jsonl", "checkpoint.pt"))


def test_the_real_entry_point_exits_2(tmp_path: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")])}
    p = subprocess.run([sys.executable, "-m", "fflearn", *QUICK, "--lr", "0", "--out", str(tmp_path / "run")],
                       env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 2
    assert "'lr'" in one_line(p.stderr) and "Traceback" not in p.stderr
    assert not (tmp_path / "run").exists()


# --- data ------------------------------------------------------------------------------------------

def test_missing_data_without_download(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    rc, err = cli(*QUICK, "--data-dir", str(empty), "--out", str(tmp_path / "run"))
    assert rc == 2
    first = err.splitlines()[0]
    label = "MNIST" if DATASET == "mnist" else "Fashion-MNIST"
    assert first.startswith(f"fflearn: error: {label} data not found") and str(empty) in first
    assert "Downloading was disabled" in err and "Traceback" not in err
    assert not (tmp_path / "run").exists() and list(empty.iterdir()) == []


def test_unwritable_data_folders_are_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Downloads allowed, but every place a download could go is under a regular file (root
    ignores permissions, not that): refused before any network access."""
    monkeypatch.delenv("FFLEARN_NO_DOWNLOAD")
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker / "cache"))
    rc, err = cli(*QUICK, "--data-dir", str(blocker / "data"), "--out", str(tmp_path / "run"))
    assert rc == 2 and "not writable" in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()


def test_corrupt_data_file_is_named(tmp_path: Path, data_root: Path) -> None:
    from fflearn.data import find_data_dir

    raw = tmp_path / "data" / ("mnist/raw" if DATASET == "mnist" else "fashion-mnist")
    raw.mkdir(parents=True)
    folder = find_data_dir(DATASET, data_root)
    assert folder is not None
    for f in folder.glob("*-ubyte.gz"):
        shutil.copy(f, raw / f.name)
    bad = raw / "train-labels-idx1-ubyte.gz"
    bad.write_bytes(bad.read_bytes()[: bad.stat().st_size // 2])  # a truncated download
    rc, err = cli(*QUICK, "--data-dir", str(tmp_path / "data"), "--out", str(tmp_path / "run"))
    assert rc == 2
    assert "train-labels-idx1-ubyte.gz" in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()


# --- the run folder --------------------------------------------------------------------------------

def test_existing_run_needs_overwrite(tmp_path: Path, data_root: Path) -> None:
    out = tmp_path / "run"
    rc, err = cli(*QUICK, "--data-dir", str(data_root), "--out", str(out))
    assert rc == 0, err
    first = (out / "checkpoint.pt").read_bytes()
    rc, err = cli(*QUICK, "--data-dir", str(data_root), "--out", str(out), "--seed", "1")
    assert rc == 2 and "--overwrite" in one_line(err) and "--resume" in err
    assert (out / "checkpoint.pt").read_bytes() == first
    rc, err = cli(*QUICK, "--data-dir", str(data_root), "--out", str(out), "--seed", "1", "--overwrite")
    assert rc == 0, err
    assert (out / "checkpoint.pt").read_bytes() != first
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 1  # not appended to the old run's


@pytest.mark.parametrize("where", ["file", "under-file"])
def test_unwritable_out_fails_before_any_work(tmp_path: Path, where: str) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("keep")
    out = blocker if where == "file" else blocker / "runs" / "x"
    # no data folder at all: a refusal that came after loading the data would name the data
    rc, err = cli(*QUICK, "--data-dir", str(tmp_path / "nodata"), "--out", str(out))
    assert rc == 2 and "--out" in one_line(err)
    assert blocker.read_text() == "keep"
