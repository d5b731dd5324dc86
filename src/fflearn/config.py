"""The run configuration: one dataclass, a comment per field, validated before any work.

A method (see :mod:`fflearn.methods`) is a named set of defaults for these fields; the user's
config file and command-line flags override them. The fully resolved config is written to the
run folder as ``config.yaml``, and a checkpoint stores it too so that ``--resume`` can refuse a
checkpoint of another method, model or dataset.

Each field's comment is its documentation: ``fflearn train --help`` shows it, grouped by the
section comments (:func:`field_help`, :func:`field_groups`). Fields that name an ingredient are
validated against that ingredient's registry, so a plugin's registered name is as valid as a
built-in one; plugin ingredients' own hyperparameters live in ``params``.
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

from . import registry as R
from .errors import ConfigError


@dataclass
class Config:
    # --- data ----------------------------------------------------------------------------
    dataset: str = "mnist"  # registered dataset name: mnist, fashion-mnist, cifar10, cifar100, svhn, imagenette (aliases such as fmnist accepted)
    data_dir: str | None = None  # data root; when given, the dataset must be there (None: $FFLEARN_DATA, the cache, system places)
    limit_train: int | None = None  # use only the first N training images (quick runs, tests)
    limit_test: int | None = None  # use only the first N test images
    val_split: int = 0  # hold out N training images (a seeded draw) as a validation set: choose settings on it, not on test
    crop: int = 0  # random-crop padding in pixels (0 = off)
    rotation: float = 0.0  # random rotation range in degrees (0 = off)
    flip: bool = False  # random horizontal flips
    # --- model ---------------------------------------------------------------------------
    model: str = "mlp"  # mlp | small | large (the Trifecta's conv nets) | any registered model
    hidden: list[int] = field(default_factory=lambda: [1000, 1000, 1000])  # MLP layer widths
    width: float = 1.0  # channel scale factor of the conv nets
    norm: str = "unit"  # pre-norm of each layer's input: unit (L2 length, Hinton), ln, bn, none
    # --- method ingredients --------------------------------------------------------------
    method: str = "df"  # named recipe that sets the defaults of the other fields: df (= df-o), df-r, ff, symba, trifecta, lcp, bp, ...
    label_mode: str = "anchors"  # how the label enters: overlay (Hinton one-hot pixels), channel (Trifecta map), icp (SymBa's class pattern over the image, --icp-scale), anchors (DF one pass), head (LCP/BP classifier)
    head: str = "auto"  # per-layer scoring head: auto (the label mode's own) | goodness | anchors | linear | a registered head
    goodness: str = "mean_squares"  # goodness of activations (input-label modes): mean_squares | sum_squares
    anchor_goodness: str = "neg_sqdist"  # score of a sample for class c in anchor mode: neg_sqdist | cosine
    head_pool: str = "avg"  # conv map -> vector for anchor and linear heads: avg | avgmax | grid2 | grid3 | grid4 (NxN regions) | flat
    head_bias: bool = True  # linear heads: a bias per class (false: a bias-free projection, as Mono-Forward)
    negatives: str = "all"  # wrong labels per sample: one (uniform) | all (the K-1) | hard (one, towards the sample's hardest)
    hard_mix: float = 0.5  # negatives 'hard': share of draws spread uniformly over the wrong labels (exploration)
    hard_scale: float = 1.0  # negatives 'hard': a wrong label's weight is exp(scale * its last margin g_neg - g_pos)
    loss: str = "npair"  # local loss: ff | symba | npair | ce
    tau: float = 2.0  # FF threshold on the goodness
    alpha: float = 4.0  # SymBa scale of the goodness gap
    margin: float = 0.1  # DF margin m between positive and negative goodness
    lam: float = 0.0  # DF weight of the largest negative goodness (the lambda regulariser)
    npair_form: str = "softplus"  # DF margin form: hinge (mean over negatives) | softplus (smooth max)
    npair_scale: float = 100.0  # DF softplus sharpness s: (1/s) log(1 + sum exp(s (m - gap)))
    pair_negatives: int = 0  # DF sample-level N-pair mining: the P closest other-class samples of the batch join each sample's negatives (0 = class anchors only)
    peer_norm: float = 0.0  # weight of Hinton's peer normalisation (keeps every unit in use; 0 = off)
    relu_grad: str = "exact"  # ReLU's backward: exact | full (straight through whatever the sign: loeweX's FF)
    scheme: str = "greedy"  # update scheme: greedy | blocks (DF-O) | apl (Trifecta) | e2e (BP)
    block_size: int = 2  # layers per update block of the blocks scheme (1 = greedy)
    block_partition: str = "size"  # blocks scheme: size (every block_size layers) | memory (no block saves more than the heaviest layer: it stands alone)
    alternate: bool = False  # shift block boundaries every other batch (overlapping pairs)
    apl_parity: str = "epoch"  # scheme apl: pairs alternate on the batch index within the epoch (as the reference) | global (a step count)
    apl_last_alone: bool = False  # scheme apl: a last block left without its pair trains alone (false: no update that step, as the reference)
    apl_label_shared: bool = False  # scheme apl: block 1's optimiser also holds the label embedding (false: block 0's only, as the reference)
    feedback: str = "backprop"  # the cross-layer signal inside a block: backprop | direct (DF-R: each layer from the block's error through a fixed random matrix) | random (feedback alignment, layer by layer)
    predict: str = "last"  # which layers vote at test time: last | all | from:N (layers N..)
    test_aug: str = "none"  # test-time augmentation of every evaluation: none | flip (each layer's log-softmax averaged over the image and its mirror; for data trained with flips)
    # --- optimisation --------------------------------------------------------------------
    epochs: int = 5  # passes over the training set
    batch_size: int = 128  # samples per step
    lr: float = 1e-3  # Adam learning rate
    weight_decay: float = 0.0  # decoupled (AdamW) weight decay; 0 = plain Adam
    schedule: str = "constant"  # lr schedule: constant | cosine | step | trifecta500 (1e-3/5e-4/1e-4 at 40%/80%)
    milestones: list[float] = field(default_factory=lambda: [0.4, 0.8])  # schedule 'step': fractions of training
    gamma: float = 0.5  # schedule 'step': lr factor at each milestone
    time_budget: float = 0.0  # stop after this many seconds of training (0 = none); the lr schedule then follows time
    ema: float = 0.0  # evaluate (and save for fflearn.load) an exponential moving average of the weights, this decay per step (0 = off; e.g. 0.999)
    ema_bn_batches: int = 16  # with ema on a batch-norm net: clean training batches its batch-norm statistics are measured on again before each evaluation, as averaged statistics do not fit the averaged weights (0 = keep them averaged)
    train_weight_noise: float = 0.0  # noise-aware training: every weight array is w (1 + sigma eps), a fresh draw each step, for the step's passes; the update goes to the clean weights (0 = off)
    seed: int = 0  # seeds torch (data order, init, augmentation, negatives, validation split)
    # --- run and output ------------------------------------------------------------------
    out: str | None = None  # run folder; None: runs/<method>-<dataset>-<time>
    checkpoint_every: int = 0  # also checkpoint every N steps (0 = only at epoch ends)
    eval_every: int = 1  # evaluate every N epochs (and always after the last)
    eval_test: bool = False  # with val_split: also score the test set at every evaluation, not only at the end
    progress: bool = True  # a progress bar on a terminal (plain progress lines elsewhere); false: epoch lines only
    log_every: float = 30.0  # seconds between progress lines when the output is not a terminal (0 = none)
    tensorboard: bool = False  # also log to TensorBoard (needs the tensorboard extra)
    callbacks: list[str] = field(default_factory=list)  # registered callbacks to attach (plugins add their own)
    plugins: list[str] = field(default_factory=list)  # modules imported before the run (recorded, so eval/resume/load import them too)
    params: dict[str, Any] = field(default_factory=dict)  # hyperparameters that plugin ingredients declare (name: value)
    # --- devices -------------------------------------------------------------------------
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    threads: int = 0  # torch CPU threads; 0 = torch's default
    bf16: bool = False  # bf16 autocast for forward passes (CPU and GPU); auto: only where the hardware computes bf16 natively, decided when the config is read
    channels_last: bool = False  # channels_last memory format for conv nets
    compile: bool = False  # torch.compile each layer
    deterministic: bool = False  # torch deterministic algorithms (bitwise repeatable on CPU)
    pipeline_balance: str = "measured"  # how --pipeline weighs segments to split them over ranks: measured (rank 0 times each segment's step) | macs (counted multiply-adds)

    # ------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Config:
        """Build a config from a mapping, rejecting unknown keys and wrong types by name.

        A key that is not a field but a hyperparameter some registered ingredient declares
        (:func:`fflearn.registry.declared_params`) goes into ``params``, as do the entries of a
        ``params`` mapping."""
        names = {f.name for f in dataclasses.fields(cls)}
        declared = R.declared_params(names)
        extra = {k: v for k, v in d.items() if k not in names}
        unknown = sorted(k for k in extra if k not in declared)
        if unknown:
            hint = "; a plugin's hyperparameter needs its plugin imported first (--plugin MODULE)"
            raise ConfigError(f"unknown config key(s): {', '.join(unknown)}{hint if len(declared) else ''}")
        cfg = cls()
        for k, v in d.items():
            if k in names and k != "params":
                setattr(cfg, k, coerce(k, v))
        given = d.get("params") or {}
        if not isinstance(given, dict):
            raise ConfigError(f"config field 'params' must be a mapping of name: value, got {given!r}")
        params = {**given, **extra}
        cfg.params = {k: _param(k, v, declared) for k, v in sorted(params.items())}
        return resolve_bf16(cfg)

    def replace(self, **kw: Any) -> Config:
        d = self.to_dict()
        d.update(kw)
        return Config.from_dict(d)


_HINTS = typing.get_type_hints(Config)


def native_bf16(device: str) -> bool:
    """Whether ``device`` (a config device name; auto: CUDA where available) computes bf16
    natively: a CUDA GPU that supports it, or a CPU whose oneDNN has bf16 kernels (AVX-512 BF16,
    AMX). Elsewhere bf16 autocast is emulated, and slower than fp32 (a CPU with AVX2 only)."""
    import torch

    cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    try:
        if cuda:
            return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # an older torch without the check: assume emulated
        return False


def resolve_bf16(cfg: Config) -> Config:
    """``bf16: auto`` -> true or false for the config's device (:func:`native_bf16`), in place."""
    if isinstance(cfg.bf16, str) and cfg.bf16.strip().lower() == "auto":
        cfg.bf16 = native_bf16(cfg.device)
    return cfg


def coerce(name: str, value: Any) -> Any:
    """Check ``value`` against the declared type of field ``name`` (ints become floats)."""
    if name == "bf16" and isinstance(value, str) and value.strip().lower() == "auto":
        return "auto"  # Config.from_dict decides it for the config's device
    hint = _HINTS[name]
    args = typing.get_args(hint)
    optional = type(None) in args
    if value is None:
        if optional:
            return None
        raise ConfigError(f"config field '{name}' must not be empty")
    base = next((a for a in args if a is not type(None)), hint) if optional else hint
    origin = typing.get_origin(base)
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"config field '{name}' must be a mapping, got {value!r}")
        return dict(value)
    if origin is list:
        if not isinstance(value, (list, tuple)):
            if isinstance(value, str):
                value = [v for v in value.replace(",", " ").split() if v]
            else:
                raise ConfigError(f"config field '{name}' must be a list, got {value!r}")
        (item,) = typing.get_args(base)
        return [_scalar(name, item, v) for v in value]
    return _scalar(name, base, value)


def _param(name: str, value: Any, declared: dict[str, tuple[Any, Any, str]]) -> Any:
    """A plugin hyperparameter, checked against the declaring constructor's annotation (kept as
    given when its plugin is not imported: a saved config can still be read and shown)."""
    if name not in declared:
        return value
    typ, _, owner = declared[name]
    try:
        return _scalar(name, typ, value)
    except ConfigError as e:
        raise ConfigError(f"{e} (a hyperparameter of {owner})") from None


def _scalar(name: str, typ: Any, value: Any) -> Any:
    if typ is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        allowed = "true, false or auto" if name == "bf16" else "true or false"
        raise ConfigError(f"config field '{name}' must be {allowed}, got {value!r}")
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


# fields with a fixed set of values (the others that name an ingredient use REGISTRY_FIELDS)
CHOICES: dict[str, tuple[str, ...]] = {
    "npair_form": ("hinge", "softplus"),
    "feedback": ("backprop", "random", "direct"),
    "apl_parity": ("epoch", "global"),
    "block_partition": ("size", "memory"),
    "relu_grad": ("exact", "full"),
    "pipeline_balance": ("measured", "macs"),
    "test_aug": ("none", "flip"),
}

# fields that name a registered ingredient: validated against the registry, so plugins count
REGISTRY_FIELDS: dict[str, R.Registry[Any]] = {
    "method": R.METHODS, "dataset": R.DATASETS, "model": R.MODELS, "norm": R.NORMS, "label_mode": R.LABELS,
    "goodness": R.GOODNESS, "anchor_goodness": R.ANCHOR_GOODNESS, "head_pool": R.POOLS, "negatives": R.NEGATIVES,
    "loss": R.LOSSES, "scheme": R.SCHEMES, "schedule": R.SCHEDULES,
}


def choices(name: str) -> list[str]:
    """The values field ``name`` accepts today (registered names included), [] for free values."""
    if name in CHOICES:
        return list(CHOICES[name])
    if name == "head":
        return ["auto", *R.HEADS.names()]
    if name in REGISTRY_FIELDS:
        return REGISTRY_FIELDS[name].names()
    return []


def validate(cfg: Config) -> Config:
    """Reject out-of-range values and incompatible combinations, naming the field.

    Fields naming an ingredient are checked against its registry (REGISTRY_FIELDS), so the
    names of registered plugins are valid too.
    """

    resolve_bf16(cfg)  # a Config built directly, not read: Config(bf16="auto")

    def bad(field_name: str, why: str) -> ConfigError:
        return ConfigError(f"config field '{field_name}' {why}")

    for name, allowed in CHOICES.items():
        if getattr(cfg, name) not in allowed:
            raise bad(name, f"must be one of {', '.join(allowed)}; got {getattr(cfg, name)!r}")
    for name, reg in REGISTRY_FIELDS.items():
        if getattr(cfg, name) not in reg:
            raise bad(name, f"must be one of {', '.join(reg.names()) or '(none registered)'}; got {getattr(cfg, name)!r}")
    if cfg.head != "auto" and cfg.head not in R.HEADS:
        raise bad("head", f"must be auto or one of {', '.join(R.HEADS.names())}; got {cfg.head!r}")
    for cb in cfg.callbacks:
        if cb not in R.CALLBACKS:
            raise bad("callbacks", f"names an unknown callback {cb!r}; registered: {', '.join(R.CALLBACKS.names()) or '(none)'}")
    for name in ("lr", "alpha", "npair_scale", "width", "gamma"):
        v = getattr(cfg, name)
        if not math.isfinite(v) or v <= 0:
            raise bad(name, f"must be a positive finite number; got {v}")
    # tau 0 is the natural threshold of an offset goodness (sum_squares_minus_width, loeweX's)
    for name in ("margin", "tau", "lam", "peer_norm", "weight_decay", "rotation", "time_budget", "log_every",
                 "train_weight_noise"):
        v = getattr(cfg, name)
        if not math.isfinite(v) or v < 0:
            raise bad(name, f"must be a finite number >= 0; got {v}")
    if not isinstance(cfg.bf16, bool):
        raise bad("bf16", f"must be true, false or auto, got {cfg.bf16!r}")
    if not 0 <= cfg.ema < 1:
        raise bad("ema", f"must be in [0, 1): the decay of the weights' moving average; got {cfg.ema}")
    if cfg.ema_bn_batches < 0:
        raise bad("ema_bn_batches", f"must be >= 0: clean batches the average's batch-norm statistics are measured on; got {cfg.ema_bn_batches}")
    if not 0 <= cfg.hard_mix <= 1:
        raise bad("hard_mix", f"must be between 0 and 1; got {cfg.hard_mix}")
    if not math.isfinite(cfg.hard_scale) or cfg.hard_scale < 0:
        raise bad("hard_scale", f"must be a finite number >= 0; got {cfg.hard_scale}")
    for name in ("epochs", "batch_size", "block_size", "eval_every"):
        if getattr(cfg, name) < 1:
            raise bad(name, f"must be at least 1; got {getattr(cfg, name)}")
    for name in ("crop", "threads", "checkpoint_every", "val_split", "pair_negatives"):
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
    if cfg.feedback == "direct" and cfg.label_mode in ("overlay", "channel", "icp"):
        raise bad("feedback", "'direct' takes the block's error at its top layer's class scores: it needs a one-pass "
                  "head (label_mode anchors or head), not label copies")
    if cfg.feedback in ("random", "direct") and cfg.scheme not in ("blocks",):
        raise bad("feedback", f"{cfg.feedback!r} (DF-R) needs scheme 'blocks'")
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


def _field_comments() -> tuple[dict[str, str], dict[str, str]]:
    """Each field's trailing comment and its section (the ``# --- name ---`` line above it),
    read from this file's source, so the docs, ``--help`` and the code cannot disagree."""
    import inspect
    import re

    helps: dict[str, str] = {}
    groups: dict[str, str] = {}
    section = ""
    for line in inspect.getsource(Config).splitlines():
        head = re.match(r"\s*# --- (.+?) -+\s*$", line)
        if head:
            section = head.group(1)
            continue
        m = re.match(r"\s{4}(\w+): [^=]+=.*?#\s*(.+)$", line)
        if m:
            helps[m.group(1)] = m.group(2).strip()
            groups[m.group(1)] = section
    return helps, groups


FIELD_HELP, FIELD_GROUP = _field_comments()


def field_groups() -> dict[str, list[str]]:
    """Section name -> the fields in it, in declaration order."""
    out: dict[str, list[str]] = {}
    for f in dataclasses.fields(Config):
        out.setdefault(FIELD_GROUP.get(f.name, "other"), []).append(f.name)
    return out
