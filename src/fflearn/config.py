"""The run configuration: one dataclass, a comment per field, validated before any work.

A method (see :mod:`fflearn.methods`) is a named set of defaults for these fields; the user's
config file and command-line flags override them. The fully resolved config is written to the
run folder as ``config.yaml``, and a checkpoint stores it too so that ``--resume`` can refuse a
checkpoint of another method, model or dataset.
"""

from __future__ import annotations

import dataclasses
import math
import os
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError


@dataclass
class Config:
    # --- what to train -------------------------------------------------------------------
    method: str = "df"  # named recipe from fflearn.methods (df, df-o, df-r, ff, symba, trifecta, ...)
    dataset: str = "mnist"  # registered dataset name (mnist, fashion-mnist, cifar10, ...)
    data_dir: str | None = None  # data root; None: $FFLEARN_DATA, then the standard places
    limit_train: int | None = None  # use only the first N training images (quick runs, tests)
    limit_test: int | None = None  # use only the first N test images
    # --- network -------------------------------------------------------------------------
    model: str = "mlp"  # mlp | small | large (Trifecta conv nets) | any registered model
    hidden: list[int] = field(default_factory=lambda: [1000, 1000, 1000])  # MLP widths
    width: float = 1.0  # channel scale factor of the conv nets
    norm: str = "unit"  # pre-norm of each layer's input: unit (L2 length), ln, bn, none
    # --- local learning ingredients ------------------------------------------------------
    label_mode: str = "anchors"  # overlay (Hinton one-hot pixels), channel (Trifecta), anchors (DF one pass), head (LCP/BP classifier)
    goodness: str = "mean_squares"  # goodness of activations: mean_squares | sum_squares (input-label modes)
    anchor_goodness: str = "neg_sqdist"  # score of a sample for class c in anchor mode: neg_sqdist | cosine
    head_pool: str = "avg"  # conv map -> vector for anchor/classifier heads: avg | avgmax | grid2 | grid3 | grid4 (NxN regions) | flat
    negatives: str = "all"  # one (a random wrong label per sample) | all (the K-1 wrong labels) | hard (one, towards the labels hardest for that sample)
    hard_mix: float = 0.5  # negatives 'hard': share of draws spread uniformly over the wrong labels (exploration)
    hard_scale: float = 1.0  # negatives 'hard': a wrong label's weight is exp(scale * its last margin g_neg - g_pos)
    loss: str = "npair"  # ff | symba | npair | ce
    tau: float = 2.0  # FF threshold on the goodness
    alpha: float = 4.0  # SymBa scale of the goodness gap
    margin: float = 0.1  # DF margin m between positive and negative goodness
    lam: float = 0.0  # DF weight of the largest negative goodness (the lambda regulariser)
    npair_form: str = "softplus"  # DF margin form: hinge (mean over negatives) | softplus (smooth max)
    npair_scale: float = 100.0  # DF softplus sharpness s: (1/s) log(1 + sum exp(s (m - gap)))
    peer_norm: float = 0.0  # weight of Hinton's peer normalisation (keeps every unit in use; 0 = off)
    # --- update scheme -------------------------------------------------------------------
    scheme: str = "greedy"  # greedy | blocks (DF-O) | apl (Trifecta) | e2e (BP)
    block_size: int = 2  # layers per update block of the blocks scheme (1 = greedy)
    alternate: bool = False  # shift block boundaries every other batch (overlapping pairs)
    feedback: str = "backprop"  # backprop | random: the cross-layer signal inside a block (DF-R)
    # --- optimisation --------------------------------------------------------------------
    epochs: int = 5  # passes over the training set
    batch_size: int = 128  # samples per step
    lr: float = 1e-3  # Adam learning rate
    weight_decay: float = 0.0  # Adam (decoupled, AdamW) weight decay
    schedule: str = "constant"  # constant | cosine | step | trifecta500 (1e-3/5e-4/1e-4 at 40%/80%)
    milestones: list[float] = field(default_factory=lambda: [0.4, 0.8])  # step: fractions of epochs
    gamma: float = 0.5  # step: lr factor at each milestone
    time_budget: float = 0.0  # stop after this many seconds of training (0 = none); the lr schedule then follows time
    # --- data pipeline -------------------------------------------------------------------
    crop: int = 0  # random-crop padding in pixels (0 = off)
    rotation: float = 0.0  # random rotation range in degrees (0 = off)
    flip: bool = False  # random horizontal flips
    # --- prediction ----------------------------------------------------------------------
    predict: str = "last"  # which layers vote at test time: last | all | from:N (layers N..)
    # --- machinery -----------------------------------------------------------------------
    seed: int = 0  # seeds torch (data order, init, augmentation, negatives)
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    bf16: bool = False  # bf16 autocast for forward passes (CPU and GPU)
    channels_last: bool = False  # channels_last memory format for conv nets
    compile: bool = False  # torch.compile each layer
    deterministic: bool = False  # torch deterministic algorithms (bitwise repeatable on CPU)
    threads: int = 0  # torch CPU threads; 0 = torch's default
    out: str | None = None  # run folder; None: runs/<method>-<dataset>-<time>
    checkpoint_every: int = 0  # also checkpoint every N steps (0 = only at epoch ends)
    eval_every: int = 1  # evaluate the test set every N epochs (and always after the last)
    progress: bool = True  # show a progress bar
    tensorboard: bool = False  # also log to TensorBoard (needs the tensorboard extra)

    # ------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Config:
        """Build a config from a mapping, rejecting unknown keys and wrong types by name."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ConfigError(f"unknown config key(s): {', '.join(unknown)}")
        cfg = cls()
        for k, v in d.items():
            setattr(cfg, k, coerce(k, v))
        return cfg

    def replace(self, **kw: Any) -> Config:
        d = self.to_dict()
        d.update(kw)
        return Config.from_dict(d)


_HINTS = typing.get_type_hints(Config)


def coerce(name: str, value: Any) -> Any:
    """Check ``value`` against the declared type of field ``name`` (ints become floats)."""
    hint = _HINTS[name]
    args = typing.get_args(hint)
    optional = type(None) in args
    if value is None:
        if optional:
            return None
        raise ConfigError(f"config field '{name}' must not be empty")
    base = next((a for a in args if a is not type(None)), hint) if optional else hint
    origin = typing.get_origin(base)
    if origin is list:
        if not isinstance(value, (list, tuple)):
            if isinstance(value, str):
                value = [v for v in value.replace(",", " ").split() if v]
            else:
                raise ConfigError(f"config field '{name}' must be a list, got {value!r}")
        (item,) = typing.get_args(base)
        return [_scalar(name, item, v) for v in value]
    return _scalar(name, base, value)


def _scalar(name: str, typ: Any, value: Any) -> Any:
    if typ is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        raise ConfigError(f"config field '{name}' must be true or false, got {value!r}")
    if typ is int:
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise ConfigError(f"config field '{name}' must be an integer, got {value!r}")
        try:
            return int(value)
        except ValueError:
            raise ConfigError(f"config field '{name}' must be an integer, got {value!r}") from None
    if typ is float:
        if isinstance(value, bool):
            raise ConfigError(f"config field '{name}' must be a number, got {value!r}")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"config field '{name}' must be a number, got {value!r}") from None
    if typ is str:
        if not isinstance(value, str):
            raise ConfigError(f"config field '{name}' must be a string, got {value!r}")
        return value
    return value


CHOICES: dict[str, tuple[str, ...]] = {
    "norm": ("unit", "ln", "bn", "none"),
    "label_mode": ("overlay", "channel", "anchors", "head"),
    "goodness": ("mean_squares", "sum_squares"),
    "anchor_goodness": ("neg_sqdist", "cosine"),
    "head_pool": ("avg", "avgmax", "grid2", "grid3", "grid4", "flat"),
    "negatives": ("one", "all", "hard"),
    "npair_form": ("hinge", "softplus"),
    "feedback": ("backprop", "random"),
    "schedule": ("constant", "cosine", "step", "trifecta500"),
}


def validate(cfg: Config) -> Config:
    """Reject out-of-range values and incompatible combinations, naming the field.

    Registry names (method, dataset, model, loss, scheme) are checked where they are looked up,
    which also happens before any training work.
    """

    def bad(field_name: str, why: str) -> ConfigError:
        return ConfigError(f"config field '{field_name}' {why}")

    for name, choices in CHOICES.items():
        if getattr(cfg, name) not in choices:
            raise bad(name, f"must be one of {', '.join(choices)}; got {getattr(cfg, name)!r}")
    for name in ("lr", "tau", "alpha", "npair_scale", "width", "gamma"):
        v = getattr(cfg, name)
        if not math.isfinite(v) or v <= 0:
            raise bad(name, f"must be a positive finite number; got {v}")
    for name in ("margin", "lam", "peer_norm", "weight_decay", "rotation", "time_budget"):
        v = getattr(cfg, name)
        if not math.isfinite(v) or v < 0:
            raise bad(name, f"must be a finite number >= 0; got {v}")
    if not 0 <= cfg.hard_mix <= 1:
        raise bad("hard_mix", f"must be between 0 and 1; got {cfg.hard_mix}")
    if not math.isfinite(cfg.hard_scale) or cfg.hard_scale < 0:
        raise bad("hard_scale", f"must be a finite number >= 0; got {cfg.hard_scale}")
    for name in ("epochs", "batch_size", "block_size", "eval_every"):
        if getattr(cfg, name) < 1:
            raise bad(name, f"must be at least 1; got {getattr(cfg, name)}")
    for name in ("crop", "threads", "checkpoint_every"):
        if getattr(cfg, name) < 0:
            raise bad(name, f"must be >= 0; got {getattr(cfg, name)}")
    if not 0 <= cfg.seed < 2**32:  # numpy and the per-epoch order generators need it in range
        raise bad("seed", f"must be between 0 and 2**32-1; got {cfg.seed}")
    for name in ("limit_train", "limit_test"):
        v = getattr(cfg, name)
        if v is not None and v < 1:
            raise bad(name, f"must be at least 1 when given; got {v}")
    if not cfg.hidden or any(h < 1 for h in cfg.hidden):
        raise bad("hidden", f"must be a non-empty list of positive widths; got {cfg.hidden}")
    if any(not 0 < m < 1 for m in cfg.milestones) or cfg.milestones != sorted(cfg.milestones):
        raise bad("milestones", f"must be increasing fractions in (0, 1); got {cfg.milestones}")
    if not (cfg.predict in ("last", "all") or cfg.predict.startswith("from:")):
        raise bad("predict", f"must be last, all or from:N; got {cfg.predict!r}")
    if cfg.predict.startswith("from:"):
        try:
            int(cfg.predict[5:])
        except ValueError:
            raise bad("predict", f"from:N needs an integer N; got {cfg.predict!r}") from None
    if not (cfg.device in ("auto", "cpu", "cuda") or cfg.device.startswith("cuda:")):
        raise bad("device", f"must be auto, cpu, cuda or cuda:N; got {cfg.device!r}")
    # combinations
    if cfg.label_mode == "channel" and cfg.model == "mlp":
        raise ConfigError(
            "label_mode 'channel' (the Trifecta's learned label map) needs a conv model: "
            "use --model small or --model large, or label_mode overlay for the MLP"
        )
    if cfg.label_mode == "head" and cfg.loss != "ce":
        raise bad("loss", f"must be 'ce' with label_mode 'head' (a classifier head); got {cfg.loss!r}")
    if cfg.loss == "ce" and cfg.label_mode != "head":
        raise bad("label_mode", "must be 'head' with loss 'ce'")
    if cfg.feedback == "random" and cfg.scheme not in ("blocks",):
        raise bad("feedback", "'random' (DF-R) needs scheme 'blocks'")
    if cfg.channels_last and cfg.model == "mlp":
        raise bad("channels_last", "applies to conv models only (--model small/large)")
    return cfg


def parse_overrides(items: typing.Sequence[str]) -> dict[str, Any]:
    """``FIELD=VALUE`` strings (the ``--set`` flags of bench and experiment commands) -> fields;
    values are type-checked later by Config.from_dict."""
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"--set needs FIELD=VALUE, got {item!r}")
        k, v = item.split("=", 1)
        out[k.strip().replace("-", "_")] = v.strip()
    return out


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML config file into a mapping, with clear errors for unreadable files."""
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as e:
        raise ConfigError(f"cannot read config file {p}: {e.strerror or e}") from None
    try:
        d = yaml.safe_load(text)
    except yaml.YAMLError as e:  # its str() spans several lines: keep the problem and where
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).strip().splitlines()[0]
        raise ConfigError(f"config file {p} is not valid YAML{where}: {problem}") from None
    if d is None:
        return {}
    if not isinstance(d, dict):
        raise ConfigError(f"config file {p} must hold a mapping of field: value")
    return d


def dump_yaml(cfg: Config, path: str | Path) -> None:
    """Write the resolved config atomically (a temporary file, then a rename)."""
    p = Path(path)
    tmp = p.with_name(p.name + ".tmp")
    tmp.write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    os.replace(tmp, p)
