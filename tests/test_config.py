"""Config validation: every bad value, type or combination is one ConfigError naming the field."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest
import torch

from fflearn.api import make_config
from fflearn.config import Config, coerce, dump_yaml, load_yaml, validate
from fflearn.errors import ConfigError
from fflearn.registry import METHODS


def test_defaults_validate_and_round_trip(tmp_path: Path) -> None:
    cfg = validate(Config())
    assert Config.from_dict(cfg.to_dict()) == cfg
    dump_yaml(cfg, tmp_path / "c.yaml")
    assert Config.from_dict(load_yaml(tmp_path / "c.yaml")) == cfg
    assert not list(tmp_path.glob("*.tmp"))


@pytest.mark.parametrize("method", METHODS.names())
@pytest.mark.parametrize("model", ["mlp", "small", "large"])
def test_every_recipe_is_a_valid_config(method: str, model: str) -> None:
    validate(make_config(method=method, model=model))


def test_precedence_defaults_recipe_file_flags(tmp_path: Path) -> None:
    f = tmp_path / "c.yaml"
    f.write_text("method: symba\nlr: 0.01\nepochs: 3\n")
    cfg = make_config(f, epochs=7)
    assert cfg.loss == "symba" and cfg.label_mode == "overlay"  # the file's method's recipe
    assert (cfg.lr, cfg.epochs) == (0.01, 7)  # file over recipe, flag over file
    assert cfg.batch_size == Config().batch_size


def test_unknown_keys_are_named() -> None:
    with pytest.raises(ConfigError, match="unknown config key.*bogus, lerning_rate"):
        Config.from_dict({"lerning_rate": 1, "bogus": 2, "lr": 0.1})


@pytest.mark.parametrize(("field", "value", "expected"), [
    ("epochs", "3", 3), ("epochs", 3.0, 3), ("lr", "1e-3", 1e-3), ("lr", 2, 2.0),
    ("flip", "true", True), ("flip", "no", False), ("hidden", "64,32", [64, 32]),
    ("hidden", ["8", 4], [8, 4]), ("limit_train", None, None), ("data_dir", "/x", "/x"),
])
def test_coerce_accepts(field: str, value: object, expected: object) -> None:
    assert coerce(field, value) == expected


@pytest.mark.parametrize(("field", "value"), [
    ("epochs", "five"), ("epochs", 1.5), ("epochs", True), ("epochs", None), ("batch_size", [1]),
    ("lr", "fast"), ("lr", True), ("lr", None), ("flip", "maybe"), ("flip", 2), ("hidden", 64),
    ("hidden", ["a"]), ("method", 5), ("seed", "x"),
])
def test_coerce_rejects_wrong_types(field: str, value: object) -> None:
    with pytest.raises(ConfigError, match=f"'{field}'"):
        coerce(field, value)


BAD = [  # (field to name, overrides)
    ("lr", {"lr": 0.0}), ("lr", {"lr": -1e-3}), ("lr", {"lr": math.nan}), ("lr", {"lr": math.inf}),
    ("epochs", {"epochs": 0}), ("batch_size", {"batch_size": 0}), ("margin", {"margin": -0.1}),
    ("margin", {"margin": math.nan}), ("tau", {"tau": -1.0}), ("tau", {"tau": math.nan}), ("alpha", {"alpha": -1.0}),
    ("width", {"width": 0.0}), ("gamma", {"gamma": 0.0}), ("npair_scale", {"npair_scale": 0.0}),
    ("weight_decay", {"weight_decay": -1.0}), ("rotation", {"rotation": math.inf}), ("lam", {"lam": -1.0}),
    ("peer_norm", {"peer_norm": -0.1}), ("peer_norm", {"peer_norm": math.nan}),
    ("block_size", {"block_size": 0}), ("eval_every", {"eval_every": 0}), ("crop", {"crop": -1}),
    ("threads", {"threads": -2}), ("checkpoint_every", {"checkpoint_every": -1}),
    ("limit_train", {"limit_train": 0}), ("limit_test", {"limit_test": -5}),
    ("hidden", {"hidden": []}), ("hidden", {"hidden": [64, 0]}),
    ("milestones", {"milestones": [0.8, 0.4]}), ("milestones", {"milestones": [1.5]}),
    ("predict", {"predict": "first"}), ("predict", {"predict": "from:x"}),
    ("device", {"device": "tpu"}), ("seed", {"seed": -1}), ("seed", {"seed": 2**40}),
    ("norm", {"norm": "group"}), ("label_mode", {"label_mode": "pixels"}), ("negatives", {"negatives": "some"}),
    ("hard_mix", {"hard_mix": 1.5}), ("hard_mix", {"hard_mix": -0.1}), ("hard_scale", {"hard_scale": -1.0}),
    ("hard_scale", {"hard_scale": math.nan}), ("goodness", {"goodness": "l1"}), ("feedback", {"feedback": "none"}), ("schedule", {"schedule": "linear"}),
    # incompatible combinations
    ("label_mode", {"label_mode": "channel", "model": "mlp"}),
    ("feedback", {"feedback": "random", "scheme": "greedy"}),
    ("feedback", {"feedback": "random", "scheme": "apl"}),
    ("loss", {"label_mode": "head", "loss": "npair"}),
    ("label_mode", {"label_mode": "anchors", "loss": "ce"}),
    ("channels_last", {"channels_last": True, "model": "mlp"}),
]


@pytest.mark.parametrize(("field", "overrides"), BAD, ids=[f"{f}-{o}" for f, o in BAD])
def test_validate_rejects(field: str, overrides: dict) -> None:
    cfg = dataclasses.replace(Config(), **overrides)
    with pytest.raises(ConfigError) as e:
        validate(cfg)
    msg = str(e.value)
    assert field in msg and "\n" not in msg


def test_yaml_errors_are_one_line(tmp_path: Path) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text("epochs: 2\nlr: [1\n")
    with pytest.raises(ConfigError) as e:
        load_yaml(f)
    assert "\n" not in str(e.value) and "not valid YAML at line" in str(e.value)
    f.write_text("- a list\n- not a mapping\n")
    with pytest.raises(ConfigError, match="must hold a mapping"):
        load_yaml(f)
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_yaml(tmp_path / "missing.yaml")
    f.write_text("")
    assert load_yaml(f) == {}


def test_bf16_auto_follows_the_hardware(monkeypatch, tmp_path, capsys):
    """bf16: auto becomes true or false when the config is read: true where the device computes
    bf16 natively (oneDNN's check on a CPU), false where autocast would be emulated; a YAML file
    and the train flag take it too; other words are refused in one line; an explicit true on a
    CPU without native bf16 is kept but warned about."""
    import fflearn.config as C
    from fflearn.methods import make_config

    native = C.native_bf16("cpu")
    assert native == bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    assert make_config(bf16="auto", device="cpu").bf16 is native
    for value in (True, False):
        monkeypatch.setattr(C, "native_bf16", lambda device, v=value: v)
        assert Config.from_dict({"bf16": "auto", "device": "cpu"}).bf16 is value
        y = tmp_path / "c.yaml"
        y.write_text("bf16: auto\ndevice: cpu\n")
        assert make_config(y).bf16 is value
    assert make_config(bf16="true").bf16 is True  # an explicit choice stays as given
    assert validate(Config(bf16="auto", device="cpu")).bf16 is C.native_bf16("cpu")  # built, not read
    with pytest.raises(ConfigError, match="bf16"):
        validate(Config(bf16="yes please"))  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="must be true, false or auto"):
        Config.from_dict({"bf16": "sometimes"})
    monkeypatch.setattr("fflearn.trainer.native_bf16", lambda device: False)
    monkeypatch.setenv("FFLEARN_NO_DOWNLOAD", "1")
    from fflearn.errors import FFLearnError
    from fflearn.trainer import Trainer

    with pytest.raises(FFLearnError):  # no data there: it stops after the warning
        Trainer(make_config(bf16=True, device="cpu", dataset="mnist", data_dir=str(tmp_path / "none")), write=False)
    assert "bf16 autocast is emulated" in capsys.readouterr().err
