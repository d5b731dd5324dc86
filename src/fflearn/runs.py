"""A trained run, loaded: for evaluation, experiments, prediction and export.

* :func:`load_run` rebuilds a run folder's network from its checkpoint as a :class:`Run` (the
  config, the net, its normaliser, the metrics; the dataset only when asked for), for ``fflearn
  eval`` and the experiments;
* :func:`load` (``fflearn.load``) gives a plain ``torch.nn.Module`` in eval mode, :class:`Model`:
  ``model(x)`` takes images as floats in [0, 1] (torchvision's ``ToTensor`` convention) or uint8,
  shape (B, C, H, W), and returns (B, K) class scores under the run's prediction rule, so
  ``argmax(1)`` is the prediction. It needs no dataset: the checkpoint carries the normalisation
  statistics, the input shape and the class names.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .build import build
from .checkpoint import first_line, read_checkpoint, run_checkpoint, saved_config
from .config import Config, validate
from .data import Dataset, load_dataset
from .data.normalize import Normalizer
from .data.splits import limit, split_validation
from .errors import FFLearnError
from .models import Net
from .plugins import import_plugins
from .predict import ensemble, eval_batch_size, evaluate, select_layers, test_aug_scores
from .runtime import downloads_allowed, resolve_device


class Model(nn.Module):
    """A trained fflearn network as a classifier: normalisation inside, (B, K) scores out."""

    def __init__(self, net: Net, mean: torch.Tensor, std: torch.Tensor, predict: str = "last",
                 classes: list[str] | None = None, input_hw: tuple[int, int] | None = None,
                 test_aug: str = "none") -> None:
        super().__init__()
        self.net = net
        self.input_hw = input_hw  # (H, W) the net was built for
        self.mean: torch.Tensor
        self.std: torch.Tensor
        self.register_buffer("mean", mean.reshape(1, -1, 1, 1).float().clone())
        self.register_buffer("std", std.reshape(1, -1, 1, 1).float().clone())
        self.vote = select_layers(predict, len(net.layers))
        self.test_aug = test_aug  # the run's test-time augmentation (predict.test_aug_scores)
        self.classes = list(classes or [str(i) for i in range(net.num_classes)])
        self.eval()

    def _input(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4:
            raise ValueError(f"expected images of shape (B, C, H, W), got {tuple(x.shape)}")
        if x.dtype == torch.uint8:
            x = x.float() / 255
        return (x.float() - self.mean) / self.std

    def layer_scores(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Every layer's (B, K) class scores (under the run's test-time augmentation)."""
        return test_aug_scores(self.net, self._input(x), self.test_aug)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return ensemble(self.layer_scores(x), self.vote)


@dataclass
class Run:
    """A run folder's trained network and what it was trained with (writes nothing)."""

    cfg: Config
    net: Net
    norm: Normalizer
    device: torch.device
    out: Path
    info: dict[str, Any]  # the checkpoint's "data": name, label, input_shape, num_classes, classes
    metrics: list[dict[str, Any]] = field(default_factory=list)
    epoch: int = 0
    train_seconds: float = 0.0
    data: Dataset | None = None

    def evaluate(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, Any]:
        """Per-layer and voted accuracy on uint8 images ``x`` with labels ``y``."""
        return evaluate(self.net, x, y, self.norm, eval_batch_size(self.net), self.cfg.predict, self.cfg.bf16,
                        self.cfg.test_aug)

    def split(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """The images and labels of ``test``; of ``val``: the validation split the run held out
        (the same seeded draw from the same first ``limit_train`` images); of ``train``: the images
        it trained on (the rest of those)."""
        assert self.data is not None, "load the run with its data"
        if name == "test":
            return self.data.test_x, self.data.test_y
        if name == "train":
            part, _ = split_validation(limit(self.data, self.cfg.limit_train, None), self.cfg.val_split, self.cfg.seed)
            return part.train_x, part.train_y
        if name != "val":
            raise FFLearnError(f"split must be test, val or train, got {name!r}")
        if not self.cfg.val_split:
            raise FFLearnError(f"{self.out} was trained without a validation split (val_split 0): use --split test")
        _, val = split_validation(limit(self.data, self.cfg.limit_train, None), self.cfg.val_split, self.cfg.seed)
        assert val is not None
        return val

    def model(self) -> Model:
        shape = self.info.get("input_shape")
        return Model(self.net, self.norm.mean, self.norm.std, self.cfg.predict, self.info.get("classes"),
                     None if not shape else (int(shape[1]), int(shape[2])), self.cfg.test_aug)


def load_run(run_dir: str | Path, with_data: bool = True, **overrides: Any) -> Run:
    """Rebuild the run in ``run_dir`` from its checkpoint. ``with_data``: also load its dataset
    (``limit_test`` applies); ``overrides`` change machinery such as device, data_dir, predict."""
    run_dir = Path(run_dir)
    path = run_checkpoint(run_dir)
    ck = read_checkpoint(path)
    import_plugins(ck["config"].get("plugins") or [])
    cfg = validate(saved_config(ck, run_dir, **{k: v for k, v in overrides.items() if v is not None}))
    device = resolve_device(cfg.device)
    info = dict(ck.get("data") or {})
    data = None
    if with_data or "normalizer" not in ck or not info:  # checkpoints before fflearn 0.2 carry no statistics
        data = load_dataset(cfg.dataset, cfg.data_dir, download=downloads_allowed())
        data = limit(data, None, cfg.limit_test).to(device)
        info = info or {"name": data.name, "label": data.label, "input_shape": list(data.input_shape),
                        "num_classes": data.num_classes, "classes": list(data.classes)}
    if "normalizer" in ck:
        mean, std = ck["normalizer"]["mean"], ck["normalizer"]["std"]
    else:
        assert data is not None
        mean, std = (t.cpu() for t in _train_stats(data, cfg))
    torch.manual_seed(cfg.seed)  # the initial weights are replaced below; this only keeps build quiet
    parts = build(cfg, tuple(info["input_shape"]), int(info["num_classes"]), mean, std, device, learner=False)
    # a run trained with --ema is evaluated (and used) with its weights' moving average
    state = ck["learner"]["net"] if "ema" not in ck else \
        {k.removeprefix("module."): v for k, v in ck["ema"].items() if k.startswith("module.")}
    try:
        parts.net.load_state_dict(state)
    except (RuntimeError, KeyError) as e:
        raise FFLearnError(f"checkpoint {path} does not fit this network: {first_line(e)}") from None
    parts.net.eval()
    return Run(cfg, parts.net, parts.norm, device, run_dir, info, ck["metrics"], ck["epoch"], ck["train_seconds"], data)


def _train_stats(data: Dataset, cfg: Config) -> tuple[torch.Tensor, torch.Tensor]:
    """The normalisation statistics an older run was trained with (its training images)."""
    part, _ = split_validation(limit(data, cfg.limit_train, None), cfg.val_split, cfg.seed)
    return part.mean_std()


def load(run_dir: str | Path, device: str | torch.device = "cpu") -> Model:
    """A trained run as a ``torch.nn.Module`` in eval mode (see the module docstring); loads on
    ``device`` whatever the device it was trained on, without its dataset."""
    run = load_run(run_dir, with_data=False, device=str(device), compile=False, channels_last=False)
    return run.model()
