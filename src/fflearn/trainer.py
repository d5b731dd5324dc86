"""The trainer: data on the device, epochs, evaluation, run folder, checkpoints, resume.

It knows nothing of any method: the :class:`~fflearn.learner.Learner` takes the steps. The run
folder holds ``config.yaml`` (resolved), ``metrics.jsonl`` (one line per epoch),
``summary.json`` and ``checkpoint.pt`` (written atomically: a temporary file, then a rename, so
a killed run always leaves the last complete checkpoint).
"""

from __future__ import annotations

import json
import math
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import __version__
from .config import Config, dump_yaml, validate
from .data import Dataset, load_dataset
from .data.augment import Augment
from .errors import ConfigError, FFLearnError, TrainingError
from .learner import Learner, StepStats
from .models import build_net
from .predict import evaluate
from .registry import DATASETS, LOSSES, MODELS
from .schemes import build_scheme

CHECKPOINT = "checkpoint.pt"
RUN_FILES = ("config.yaml", CHECKPOINT, "summary.json")  # any of these marks a folder as a run
# wall-clock figures: they differ between two otherwise identical runs (see docs/reliability.md)
TIMING_KEYS = ("seconds", "samples_per_second", "train_seconds", "eval_seconds")
NO_DOWNLOAD_ENV = "FFLEARN_NO_DOWNLOAD"
# fields a resumed run may not change: they define the network's parameters, what it learns from
# and the data order (method, model and dataset first: the ones a user is most likely to mix up)
RESUME_FIXED = ("method", "model", "dataset", "hidden", "width", "norm", "label_mode", "goodness",
                "anchor_goodness", "head_pool", "negatives", "loss", "scheme", "block_size", "alternate", "feedback",
                "limit_train", "batch_size", "seed")


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"config field 'device' is {name!r} but no CUDA device is available; use --device cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ConfigError(f"config field 'device' is {name!r} but only {torch.cuda.device_count()} CUDA "
                          "device(s) are visible")
    return dev


def lr_at(cfg: Config, progress: float) -> float:
    """Learning rate at a fraction ``progress`` in [0, 1) of training."""
    if cfg.schedule == "cosine":
        return cfg.lr * 0.5 * (1 + math.cos(math.pi * progress))
    if cfg.schedule == "step":
        return cfg.lr * cfg.gamma ** sum(progress >= m for m in cfg.milestones)
    if cfg.schedule == "trifecta500":  # the slides' 500-epoch run: 1e-3 x200, 5e-4 x200, 1e-4 x100
        return cfg.lr * (1.0 if progress < 0.4 else 0.5 if progress < 0.8 else 0.1)
    return cfg.lr


class Normalizer:
    """uint8 (B, C, H, W) -> float, scaled to [0, 1] and standardised per channel."""

    def __init__(self, mean: torch.Tensor, std: torch.Tensor, channels_last: bool = False) -> None:
        self.mean = mean.view(1, -1, 1, 1)
        self.std = std.view(1, -1, 1, 1)
        self.channels_last = channels_last

    def __call__(self, xb: torch.Tensor) -> torch.Tensor:
        x = (xb.float() / 255 - self.mean) / self.std
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def pixel_value(self) -> float:
        """Value of a white pixel after normalisation: the height of Hinton's one-hot overlay."""
        return float(((1 - self.mean) / self.std).max())


def set_seed(seed: int, deterministic: bool) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        # cuBLAS reads this when it starts: set it before anything may touch the GPU
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=False)


def downloads_allowed() -> bool:
    """False when ``$FFLEARN_NO_DOWNLOAD`` is set (offline machines, CI): missing data then
    fails at once with the list of files to fetch, instead of waiting on the network."""
    return os.environ.get(NO_DOWNLOAD_ENV, "").strip().lower() in ("", "0", "false", "no")


def out_dir(cfg: Config) -> Path:
    return Path(cfg.out) if cfg.out else Path("runs") / f"{cfg.method}-{cfg.dataset}-{time.strftime('%Y%m%d-%H%M%S')}"


def check_out(out: Path, overwrite: bool, resume: bool) -> None:
    """Refuse an unusable run folder before any work, without changing anything on disk."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} exists and is not a folder")
    used = out.is_dir() and any((out / f).exists() for f in RUN_FILES)
    if used and not (overwrite or resume):
        raise ConfigError(f"--out {out} already holds a run; pass --overwrite to replace it or --resume {out} to continue it")
    # the nearest existing ancestor must be a folder we can write to (root ignores permissions,
    # but not a regular file standing where a folder should be)
    p = Path(os.path.abspath(out))
    while not p.exists() and p.parent != p:
        p = p.parent
    if not p.is_dir():
        raise ConfigError(f"--out {out} is not writable: {p} is not a folder")
    if not os.access(p, os.W_OK | os.X_OK):
        raise ConfigError(f"--out {out} is not writable: no write permission on {p}")


def prepare_out(out: Path, overwrite: bool, resume: bool) -> Path:
    """Create the run folder (after every check passed); --overwrite removes the old run's files."""
    check_out(out, overwrite, resume)
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise ConfigError(f"--out {out} is not writable: {e.strerror or e}") from None
    if overwrite and not resume:
        for f in (*RUN_FILES, "metrics.jsonl", CHECKPOINT + ".tmp", "summary.json.tmp", "metrics.jsonl.tmp"):
            (out / f).unlink(missing_ok=True)
    return out


def atomic_save(obj: Any, path: Path) -> None:
    """torch.save to a temporary file, fsync, rename: a crash leaves the old file or the new one,
    never half of one. A failed write (disk full) keeps the old file and is one clear error."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise FFLearnError(f"cannot write {path}: {e.strerror or e}; the previous checkpoint is kept") from None
    _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    """Make a rename durable (a power cut after it must not bring the old name back)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_text(text: str, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


class Trainer:
    """Builds everything a config describes and runs (or resumes) training.

    Everything that can be refused is refused before the run folder is touched: the config,
    the registry names, the device, the run folder's usability, the data, the batch size.
    """

    def __init__(self, cfg: Config, overwrite: bool = False, resume: bool = False,
                 dataset: Dataset | None = None, readonly: bool = False) -> None:
        self.cfg = validate(cfg)
        DATASETS.get(_canonical(cfg.dataset))  # unknown names -> ConfigError before any work
        MODELS.get(cfg.model)
        LOSSES.get(cfg.loss)
        scheme = build_scheme(cfg)
        self.device = resolve_device(cfg.device)
        self.out = Path(cfg.out or ".") if readonly else out_dir(cfg)
        if not readonly:
            check_out(self.out, overwrite, resume)
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        set_seed(cfg.seed, cfg.deterministic)
        data = dataset if dataset is not None else load_dataset(cfg.dataset, cfg.data_dir, download=downloads_allowed())
        self.data = _limit(data, cfg.limit_train, cfg.limit_test).to(self.device)
        if cfg.batch_size > len(self.data.train_y):
            raise ConfigError(
                f"config field 'batch_size' ({cfg.batch_size}) is larger than the training set "
                f"({len(self.data.train_y)} images)"
            )
        mean, std = self.data.mean_std()
        self.norm = Normalizer(mean.to(self.device), std.to(self.device), cfg.channels_last)
        self.augment = Augment(crop_padding=cfg.crop, rotation=cfg.rotation, flip=cfg.flip)
        in_shape = tuple(self.data.train_x.shape[1:])
        self.net = build_net(cfg, in_shape, self.data.num_classes, self.norm.pixel_value()).to(self.device)  # type: ignore[arg-type]
        if cfg.channels_last:
            self.net = self.net.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        if cfg.compile:
            for layer in self.net.layers:
                layer.compile()
        self.learner = Learner(self.net, scheme, cfg, self.device, num_train=len(self.data.train_y))
        self.gen = torch.Generator(device=self.device).manual_seed(cfg.seed)
        self.epoch = 0  # completed epochs
        self.step_in_epoch = 0  # steps done in the current epoch (mid-epoch checkpoints)
        self.global_step = 0
        self.train_seconds = 0.0
        self.lr = cfg.lr  # the learning rate last set (recorded per epoch)
        self.metrics: list[dict[str, Any]] = []
        self.partial_stats: StepStats | None = None
        self.hooks: list[Any] = []  # callables(trainer, record) after each epoch (e.g. TensorBoard)
        if cfg.tensorboard and not readonly:  # optional extra: ConfigError here if not installed
            from .tensorboard import attach

            attach(self)
        self.checkpointed: str | None = None  # where the last checkpoint stands, for error messages
        if not readonly:
            prepare_out(self.out, overwrite, resume)  # every check passed: now touch the disk

    # --- checkpoints --------------------------------------------------------------------
    def checkpoint(self) -> dict[str, Any]:
        """Everything needed to continue exactly: model, every local optimiser, the RNG states,
        the data order position (epoch, step in epoch; the order itself is a function of seed
        and epoch), the epoch's partial statistics and the metrics so far. Only tensors and
        plain Python values, so it loads with ``torch.load(weights_only=True)``."""
        np_state: Any = np.random.get_state()
        return {
            "fflearn_version": __version__,
            "config": self.cfg.to_dict(),
            "learner": self.learner.state_dict(),
            "epoch": self.epoch,
            "step_in_epoch": self.step_in_epoch,
            "global_step": self.global_step,
            "train_seconds": self.train_seconds,
            "metrics": self.metrics,
            "rng": {"torch": torch.get_rng_state(), "gen": self.gen.get_state(),
                    "python": random.getstate(),
                    "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]]},
            "partial_stats": None if self.partial_stats is None else
            {"sums": self.partial_stats.sums.cpu(), "count": self.partial_stats.count.cpu()},
        }

    def save_checkpoint(self) -> None:
        self.learner.check_losses()  # on a GPU, losses not yet checked by the NaN guard
        # a finite loss can still come with an infinite gradient: never let NaN weights replace
        # the last good checkpoint
        for name, t in self.net.state_dict().items():  # layers, heads (anchors), label maps
            if t.is_floating_point() and not torch.isfinite(t).all():
                parts = name.split(".")
                where = f"layer {parts[1]}" if parts[0] in ("layers", "heads") and parts[1:2] and \
                    parts[1].isdigit() else "the network"
                raise TrainingError(
                    f"{where} has non-finite values in {name} after step {self.global_step} "
                    f"(epoch {self.epoch + (1 if self.step_in_epoch else 0)}); {self._checkpoint_note()}"
                )
        atomic_save(self.checkpoint(), self.out / CHECKPOINT)
        self.checkpointed = (f"epoch {self.epoch}" if not self.step_in_epoch else
                             f"epoch {self.epoch + 1}, step {self.step_in_epoch}")

    def _checkpoint_note(self) -> str:
        ck = self.out / CHECKPOINT
        if self.checkpointed is None and not ck.exists():
            return "no checkpoint was written yet"
        where = f" ({self.checkpointed})" if self.checkpointed else ""
        return f"the last good checkpoint {ck}{where} is kept; continue with --resume {self.out}"

    def load_checkpoint(self, path: Path) -> None:
        ck = read_checkpoint(path, self.device)
        check_compatible(ck["config"], self.cfg, path)
        try:
            self.learner.load_state_dict(ck["learner"])
        except (RuntimeError, KeyError, ValueError) as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise FFLearnError(f"checkpoint {path} does not fit this network: {first}") from None
        self.epoch, self.step_in_epoch = ck["epoch"], ck["step_in_epoch"]
        self.global_step, self.train_seconds = ck["global_step"], ck["train_seconds"]
        self.metrics = ck["metrics"]
        rng = ck["rng"]
        torch.set_rng_state(rng["torch"].cpu())
        self.gen.set_state(rng["gen"].cpu())
        random.setstate(_tuples(rng["python"]))
        st = rng["numpy"]
        np.random.set_state((st[0], st[1].numpy().astype(np.uint32), *st[2:]))
        if ck.get("partial_stats") is not None:
            self.partial_stats = StepStats(len(self.net.layers), self.device)
            self.partial_stats.sums.copy_(ck["partial_stats"]["sums"])
            self.partial_stats.count.copy_(ck["partial_stats"]["count"])
        self.checkpointed = (f"epoch {self.epoch}" if not self.step_in_epoch else
                             f"epoch {self.epoch + 1}, step {self.step_in_epoch}")
        # metrics.jsonl may hold lines written after this checkpoint: rewrite it from the checkpoint
        atomic_write_text("".join(json.dumps(m) + "\n" for m in self.metrics), self.out / "metrics.jsonl")

    # --- training -----------------------------------------------------------------------
    def epoch_order(self, epoch: int) -> torch.Tensor:
        """The data order of an epoch depends only on (seed, epoch), so a resumed run can redo it."""
        g = torch.Generator().manual_seed(self.cfg.seed * 100003 + epoch)
        return torch.randperm(len(self.data.train_y), generator=g).to(self.device)

    def steps_per_epoch(self) -> int:
        return len(self.data.train_y) // self.cfg.batch_size  # drop the last partial batch

    def batch_indices(self, order: torch.Tensor, s: int) -> torch.Tensor:
        """Indices of this process's part of batch ``s`` (a data-parallel rank takes its shard)."""
        return order[s * self.cfg.batch_size : (s + 1) * self.cfg.batch_size]

    def run(self) -> dict[str, Any]:
        cfg = self.cfg
        dump_yaml(cfg, self.out / "config.yaml")
        if not (self.out / "metrics.jsonl").exists():
            (self.out / "metrics.jsonl").write_text("")
        self.net.train()
        while self.epoch < cfg.epochs and not self.out_of_time():
            self._train_epoch()
        summary = self.summary()
        atomic_write_text(json.dumps(summary, indent=2) + "\n", self.out / "summary.json")
        return summary

    def out_of_time(self) -> bool:
        return bool(self.cfg.time_budget) and self.train_seconds >= self.cfg.time_budget

    def progress(self, by_steps: float, unrecorded_seconds: float) -> float:
        """Fraction of training done, for the lr schedule: with a time budget, the schedule
        follows whichever of steps or elapsed time is further along."""
        if not self.cfg.time_budget:
            return by_steps
        return min(0.999999, max(by_steps, (self.train_seconds + unrecorded_seconds) / self.cfg.time_budget))

    def set_lr(self, lr: float) -> None:
        """Set the learning rate of every local optimiser, and remember it for the epoch record."""
        self.lr = lr
        self.learner.set_lr(lr)

    def _train_epoch(self) -> None:
        cfg = self.cfg
        spe = self.steps_per_epoch()
        order = self.epoch_order(self.epoch)
        stats = self.partial_stats or StepStats(len(self.net.layers), self.device)
        self.partial_stats = stats
        bar = _progress(cfg, spe, self.epoch, self.step_in_epoch)
        _sync(self.device)
        t0 = time.perf_counter()
        seconds = 0.0  # this epoch's training time in this process, checkpoint writes excluded
        done_before = self.step_in_epoch
        while self.step_in_epoch < spe:
            s = self.step_in_epoch
            idx = self.batch_indices(order, s)
            x = self.norm(self.augment(self.data.train_x[idx].float(), generator=self.gen).clamp_(0, 255))
            y = self.data.train_y[idx]
            self.set_lr(lr_at(cfg, self.progress((self.epoch * spe + s) / (cfg.epochs * spe), time.perf_counter() - t0)))
            try:
                loss = self.learner.step(x, y, self.global_step, stats, generator=self.gen, idx=idx)
            except TrainingError as e:  # a NaN/inf loss: name where it happened, keep the checkpoint
                if bar is not None:
                    bar.close()
                why = str(e).removesuffix("; the last good checkpoint is kept")  # said precisely below
                raise TrainingError(f"epoch {self.epoch + 1}, batch {s + 1}/{spe}: {why}; "
                                    f"{self._checkpoint_note()}") from None
            self.step_in_epoch += 1
            self.global_step += 1
            if bar is not None:
                bar.update(1)
                if s % 20 == 0:
                    bar.set_postfix(loss=f"{loss:.4f}")
            if cfg.checkpoint_every and self.global_step % cfg.checkpoint_every == 0 and self.step_in_epoch < spe:
                _sync(self.device)
                dt = time.perf_counter() - t0
                seconds += dt
                self.train_seconds += dt
                self.save_checkpoint()
                t0 = time.perf_counter()
            if cfg.time_budget and self.train_seconds + time.perf_counter() - t0 >= cfg.time_budget:
                break  # out of time: end this (partial) epoch with an evaluation
        _sync(self.device)
        dt = time.perf_counter() - t0
        seconds += dt
        self.train_seconds += dt
        if bar is not None:
            bar.close()
        self.epoch += 1
        self.partial_stats = None
        steps_done, self.step_in_epoch = self.step_in_epoch - done_before, 0
        record = self._epoch_record(stats, seconds, steps_done * cfg.batch_size)
        self.metrics.append(record)
        with open(self.out / "metrics.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")
        self.save_checkpoint()
        for hook in self.hooks:
            hook(self, record)
        _print_epoch(cfg, record)

    def _epoch_record(self, stats: StepStats, seconds: float, samples: int) -> dict[str, Any]:
        cfg = self.cfg
        s = stats.summary()
        # the lr of the epoch's last step (with a time budget the schedule follows the clock, so
        # it cannot be recomputed from the epoch number)
        rec: dict[str, Any] = {"epoch": self.epoch, "step": self.global_step, "lr": self.lr}
        losses = [v for v in s["loss"] if v is not None]
        rec["loss"] = sum(losses) / len(losses) if losses else None
        rec["per_layer_loss"] = s["loss"]
        rec["per_layer_g_pos"] = s["g_pos"]
        rec["per_layer_g_neg"] = s["g_neg"]
        rec["per_layer_separation"] = s["separation"]
        if self.epoch % cfg.eval_every == 0 or self.epoch == cfg.epochs or self.out_of_time():
            t0 = time.perf_counter()
            n_tr = min(len(self.data.train_y), 5000)  # fixed subset: train accuracy is an estimate
            tr = self.evaluate(self.data.train_x[:n_tr], self.data.train_y[:n_tr])
            te = self.evaluate(self.data.test_x, self.data.test_y)
            rec["train_accuracy"] = tr["accuracy"]
            rec["per_layer_train_accuracy"] = tr["per_layer"]
            rec["test_accuracy"] = te["accuracy"]
            rec["per_layer_test_accuracy"] = te["per_layer"]
            rec["eval_seconds"] = time.perf_counter() - t0
        rec["seconds"] = seconds
        rec["samples_per_second"] = samples / seconds if seconds > 0 else None
        return rec

    def evaluate(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, Any]:
        bs = 1000 if not self.net.conditions_input else max(100, 1000 // self.data.num_classes)
        return evaluate(self.net, x, y, self.norm, bs, self.cfg.predict, self.cfg.bf16)

    def summary(self) -> dict[str, Any]:
        last: dict[str, Any] = next((m for m in reversed(self.metrics) if "test_accuracy" in m), {})
        return {
            "method": self.cfg.method,
            "dataset": self.cfg.dataset,
            "dataset_label": self.data.label,
            "model": self.cfg.model,
            "epochs": self.epoch,
            "test_accuracy": last.get("test_accuracy"),
            "per_layer_test_accuracy": last.get("per_layer_test_accuracy"),
            "train_accuracy": last.get("train_accuracy"),
            "train_seconds": self.train_seconds,
            "parameters": sum(p.numel() for p in self.net.parameters()),
            "device": str(self.device),
            "seed": self.cfg.seed,
            "run_dir": str(self.out),
            "fflearn_version": __version__,
        }


def _canonical(name: str) -> str:
    aliases = {"fmnist": "fashion-mnist", "fashion_mnist": "fashion-mnist", "cifar-10": "cifar10",
               "cifar-100": "cifar100"}
    return aliases.get(name, name)


def _limit(data: Dataset, n_train: int | None, n_test: int | None) -> Dataset:
    import dataclasses

    return dataclasses.replace(
        data,
        train_x=data.train_x[:n_train], train_y=data.train_y[:n_train],
        test_x=data.test_x[:n_test], test_y=data.test_y[:n_test],
    )


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _progress(cfg: Config, total: int, epoch: int, start: int) -> Any:
    if not cfg.progress:
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=start, desc=f"epoch {epoch + 1}/{cfg.epochs}", leave=False,
                file=sys.stderr, dynamic_ncols=True)


def _fmt(v: float | None) -> str:
    return "  -  " if v is None else f"{100 * v:5.2f}"


def _print_epoch(cfg: Config, rec: dict[str, Any]) -> None:
    if not cfg.progress:
        return
    msg = f"epoch {rec['epoch']:3d}/{cfg.epochs}  loss {rec['loss']:.4f}  {rec['seconds']:.1f}s"
    if "test_accuracy" in rec:
        layers = " ".join(_fmt(a) for a in rec["per_layer_test_accuracy"])
        msg += f"  test {_fmt(rec['test_accuracy'])}%  per layer [{layers}]"
    print(msg, flush=True)


def train(cfg: Config, overwrite: bool = False, dataset: Dataset | None = None) -> dict[str, Any]:
    """Train a model as ``cfg`` describes; returns the summary (also written to the run folder)."""
    return Trainer(cfg, overwrite=overwrite, dataset=dataset).run()


def read_checkpoint(path: Path, device: torch.device | str = "cpu") -> dict[str, Any]:
    """Load a checkpoint safely (``weights_only``: no arbitrary code from a pickle) and check
    that it is one of ours; any damage is one FFLearnError naming the file."""
    try:
        ck = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise FFLearnError(f"no checkpoint at {path}") from None
    except Exception as e:  # torch raises many kinds for a damaged or foreign file
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise FFLearnError(f"cannot read checkpoint {path} (damaged, or not written by fflearn): {first}") from None
    need = ("config", "learner", "epoch", "step_in_epoch", "global_step", "train_seconds", "metrics", "rng")
    if not isinstance(ck, dict) or any(k not in ck for k in need) or not isinstance(ck["config"], dict):
        raise FFLearnError(f"{path} is not an fflearn checkpoint")
    return ck


def check_compatible(old: dict[str, Any], cfg: Config, path: Path) -> None:
    """Refuse to continue a checkpoint under a config that changes what it is (RESUME_FIXED)."""
    for key in RESUME_FIXED:
        was, now = old.get(key), getattr(cfg, key)
        if key == "dataset" and isinstance(was, str):
            was, now = _canonical(was), _canonical(now)
        if was != now:
            raise ConfigError(
                f"checkpoint {path} was made with {key}={old.get(key)!r}, not {getattr(cfg, key)!r}: "
                "resume with the same method, model and dataset, or start a new run with --out"
            )


def _tuples(v: Any) -> Any:
    """random.setstate needs tuples where a round trip may have produced lists."""
    return tuple(_tuples(x) for x in v) if isinstance(v, (list, tuple)) else v


def _run_config(ck: dict[str, Any], run_dir: Path, **overrides: Any) -> Config:
    """The config saved in a checkpoint, writing to ``run_dir``, with ``overrides`` applied."""
    return Config.from_dict({**ck["config"], "out": str(run_dir), **overrides})


def resume(run_dir: str | Path, epochs: int | None = None, **overrides: Any) -> dict[str, Any]:
    """Continue the run in ``run_dir`` from its checkpoint (optionally to more epochs).

    ``overrides`` may change the machinery (device, threads, data_dir, progress, checkpointing,
    evaluation) and the optimisation (lr, schedule, ...), not the fields in RESUME_FIXED."""
    run_dir = Path(run_dir)
    ck_path = run_dir / CHECKPOINT
    if not ck_path.exists():
        raise FFLearnError(f"no checkpoint in {run_dir}: nothing to resume (expected {ck_path})")
    ck = read_checkpoint(ck_path)
    cfg = _run_config(ck, run_dir, **overrides, **({} if epochs is None else {"epochs": epochs}))
    check_compatible(ck["config"], cfg, ck_path)  # before the data is loaded
    if cfg.epochs < ck["epoch"]:
        raise ConfigError(f"config field 'epochs' ({cfg.epochs}) is below the {ck['epoch']} epochs "
                          f"already done in {run_dir}")
    t = Trainer(cfg, resume=True)
    t.load_checkpoint(ck_path)
    return t.run()


def load_run(run_dir: str | Path, **overrides: Any) -> Trainer:
    """A trained run, rebuilt from its checkpoint for evaluation or experiments (writes nothing)."""
    run_dir = Path(run_dir)
    ck_path = run_dir / CHECKPOINT
    if not ck_path.exists():
        raise FFLearnError(f"{run_dir} is not a run folder: {ck_path} is missing")
    ck = read_checkpoint(ck_path)
    t = Trainer(_run_config(ck, run_dir, **overrides), readonly=True)
    try:
        t.learner.load_state_dict(ck["learner"])
    except (RuntimeError, KeyError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise FFLearnError(f"checkpoint {ck_path} does not fit this network: {first}") from None
    t.metrics = ck["metrics"]
    t.epoch = ck["epoch"]
    t.train_seconds = ck["train_seconds"]
    return t
