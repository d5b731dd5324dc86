"""The trainer: data on the device, the one epoch loop, evaluation, checkpoints, resume.

It knows nothing of any method: the :class:`~fflearn.learner.Learner` takes the steps. The same
loop serves one process, the data-parallel and pipeline ranks (:mod:`fflearn.parallel`) and the
benchmarks; what differs between them is a small overridable piece:

* :meth:`Trainer.decide`: the clock and the stop decision of a step (ranks take rank 0's, so
  every rank applies the same learning rate and stops on the same step);
* :meth:`Trainer.take_step`: where a step's batch comes from and what the step does;
* :meth:`Trainer.batch_indices`: which samples of a batch this process takes.

Everything that can be refused is refused before the run folder is touched: the config, the
registry names, the device, the run folder's usability, the data, the batch size.
"""

from __future__ import annotations

import json
import platform
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from . import __version__
from .batchnorm import recalibrate_bn
from .build import build
from .callbacks import Callback, Console, CSVLog
from .checkpoint import check_compatible, first_line, read_checkpoint, resume_config
from .config import Config, dump_yaml, native_bf16, validate
from .data import Dataset, load_dataset
from .data.splits import limit, split_validation
from .errors import ConfigError, FFLearnError, TrainingError
from .learner import StepStats
from .predict import eval_batch_size, evaluate
from .registry import CALLBACKS, construct
from .runfolder import CHECKPOINT, atomic_save, atomic_write_text, check_out, default_out, prepare_out
from .runtime import downloads_allowed, resolve_device, set_seed, set_threads, sync
from .schedule import lr_at, progress

# wall-clock figures: they differ between two otherwise identical runs (see docs/reliability.md)
TIMING_KEYS = ("seconds", "samples_per_second", "train_seconds", "eval_seconds")
TRAIN_ACCURACY_SAMPLES = 5000  # a fixed subset of the training images: train accuracy is an estimate


def git_commit() -> str | None:
    """The commit of the fflearn source when it runs from a git checkout (provenance)."""
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode:
        return None
    return out.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


class Trainer:
    """Builds everything a config describes and runs (or resumes) training.

    ``write``: this process owns the run folder (False: the other ranks of a multi-process run,
    benchmarks and evaluations, which never touch it). ``verbose``: print progress and epoch
    lines. ``callbacks``: extra :class:`~fflearn.callbacks.Callback` objects; they run in every
    process (a callback that writes files checks ``trainer.write``).
    """

    def __init__(self, cfg: Config, overwrite: bool = False, resume: bool = False,
                 dataset: Dataset | None = None, write: bool = True, verbose: bool = True,
                 callbacks: list[Any] | None = None) -> None:
        self.cfg = validate(cfg)
        self.write = write
        self.device = resolve_device(cfg.device)
        if verbose and cfg.bf16 and not native_bf16(str(self.device)):
            print("fflearn: warning: bf16 autocast is emulated on this device (no native bf16: a CPU without "
                  "AVX-512 BF16 or AMX) and slower than fp32; set bf16: auto or false", file=sys.stderr)
        self.out = Path(cfg.out) if cfg.out else default_out(cfg.method, cfg.dataset)
        if write:
            check_out(self.out, overwrite, resume)
        set_threads(cfg.threads)
        set_seed(cfg.seed, cfg.deterministic)
        data = dataset if dataset is not None else load_dataset(cfg.dataset, cfg.data_dir, download=downloads_allowed())
        data = limit(data, cfg.limit_train, cfg.limit_test).to(self.device)
        self.data, self.val = split_validation(data, cfg.val_split, cfg.seed)
        if cfg.batch_size > len(self.data.train_y):
            raise ConfigError(f"config field 'batch_size' ({cfg.batch_size}) is larger than the training set "
                              f"({len(self.data.train_y)} images)")
        mean, std = self.data.mean_std()
        parts = build(cfg, self.data.input_shape, self.data.num_classes, mean, std, self.device,
                      num_train=len(self.data.train_y))
        assert parts.learner is not None
        self.net, self.learner, self.norm, self.augment = parts.net, parts.learner, parts.norm, parts.augment
        self.gen = torch.Generator(device=self.device).manual_seed(cfg.seed)
        # the weights' moving average (torch.optim.swa_utils), evaluated instead of the live weights
        self.ema = AveragedModel(self.net, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema), use_buffers=True) \
            if cfg.ema else None
        self.epoch = 0  # completed epochs
        self.step_in_epoch = 0  # steps done in the current epoch (mid-epoch checkpoints)
        self.global_step = 0
        self.train_seconds = 0.0
        self.lr = cfg.lr  # the learning rate last set (recorded per epoch)
        self.metrics: list[dict[str, Any]] = []
        self.partial_stats: StepStats | None = None
        self._order: torch.Tensor | None = None  # the current epoch's data order
        self.console = Console() if verbose else None
        self.callbacks: list[Any] = [] if self.console is None else [self.console]
        if write:
            self.callbacks.append(CSVLog(self.out / "metrics.csv"))
        self.callbacks += [construct(CALLBACKS, name, cfg) for name in cfg.callbacks]
        self.callbacks += list(callbacks or [])
        if cfg.tensorboard and write:  # optional extra: ConfigError here if not installed
            from .tensorboard import attach

            attach(self)
        self.checkpointed: str | None = None  # where the last checkpoint stands, for error messages
        if write:
            prepare_out(self.out, overwrite, resume)  # every check passed: now touch the disk

    def _call(self, hook: str, *args: Any) -> None:
        for cb in self.callbacks:
            fn = getattr(cb, hook, None)
            if fn is not None:
                fn(self, *args)

    # --- checkpoints --------------------------------------------------------------------
    def checkpoint(self) -> dict[str, Any]:
        """Everything needed to continue exactly: model, every local optimiser, the sampler's
        state, the RNG states, the data order position (epoch, step in epoch; the order itself is
        a function of seed and epoch), the epoch's partial statistics and the metrics so far; and
        what using the model needs without the dataset (input shape, classes, normalisation).
        Only tensors and plain Python values, so it loads with ``torch.load(weights_only=True)``."""
        np_state: Any = np.random.get_state()
        return {
            "fflearn_version": __version__,
            "config": self.cfg.to_dict(),
            "learner": self.learner.state_dict(),
            "normalizer": self.norm.state_dict(),
            "data": {"name": self.data.name, "label": self.data.label, "input_shape": list(self.data.input_shape),
                     "num_classes": self.data.num_classes, "classes": list(self.data.classes)},
            "epoch": self.epoch,
            "step_in_epoch": self.step_in_epoch,
            "global_step": self.global_step,
            "train_seconds": self.train_seconds,
            "metrics": self.metrics,
            "rng": {"torch": torch.get_rng_state(), "gen": self.gen.get_state(),
                    "python": random.getstate(),
                    "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]]},
            "partial_stats": None if self.partial_stats is None else self.partial_stats.state_dict(),
            **({} if self.ema is None else {"ema": self.ema.state_dict()}),
        }

    def check_finite(self) -> None:
        """Raise before a checkpoint could replace the last good one with NaN weights (a finite
        loss can still come with an infinite gradient)."""
        self.learner.check_losses()  # on a GPU, losses not yet checked by the NaN guard
        for name, t in self.net.state_dict().items():  # layers, heads (anchors), label maps
            if t.is_floating_point() and not torch.isfinite(t).all():
                parts = name.split(".")
                where = f"layer {parts[1]}" if parts[0] in ("layers", "heads") and parts[1:2] and \
                    parts[1].isdigit() else "the network"
                raise TrainingError(
                    f"{where} has non-finite values in {name} after step {self.global_step} "
                    f"(epoch {self.epoch + (1 if self.step_in_epoch else 0)}); {self._checkpoint_note()}"
                )

    def save_checkpoint(self) -> None:
        self.check_finite()
        atomic_save(self.checkpoint(), self.out / CHECKPOINT)
        self.checkpointed = self._position()

    def _position(self) -> str:
        return f"epoch {self.epoch}" if not self.step_in_epoch else f"epoch {self.epoch + 1}, step {self.step_in_epoch}"

    def _checkpoint_note(self) -> str:
        ck = self.out / CHECKPOINT
        if self.checkpointed is None and not ck.exists():
            return "no checkpoint was written yet"
        where = f" ({self.checkpointed})" if self.checkpointed else ""
        return f"the last good checkpoint {ck}{where} is kept; continue with --resume {self.out}"

    def load_checkpoint(self, path: Path, ck: dict[str, Any] | None = None) -> dict[str, Any]:
        """Continue from the checkpoint at ``path`` (``ck``: that checkpoint, already read)."""
        ck = ck if ck is not None else read_checkpoint(path)
        check_compatible(ck["config"], self.cfg, path)
        self.load_learner(ck["learner"], path)
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
            self.partial_stats = self.learner.new_stats()
            self.partial_stats.load_state_dict(ck["partial_stats"])
        if self.ema is not None:
            if "ema" not in ck:
                raise FFLearnError(f"checkpoint {path} has no weight average: resume without --ema, or start a new run")
            self.ema.load_state_dict(ck["ema"])
        self.checkpointed = self._position()
        if self.write:  # metrics.jsonl may hold lines written after this checkpoint: rewrite it
            atomic_write_text("".join(json.dumps(m) + "\n" for m in self.metrics), self.out / "metrics.jsonl")
        return ck

    def load_learner(self, state: dict[str, Any], path: Path) -> None:
        try:
            self.learner.load_state_dict(state)
        except (RuntimeError, KeyError, ValueError) as e:
            raise FFLearnError(f"checkpoint {path} does not fit this network: {first_line(e)}") from None

    # --- the one epoch loop -------------------------------------------------------------
    def epoch_order(self, epoch: int) -> torch.Tensor:
        """The data order of an epoch depends only on (seed, epoch), so a resumed run can redo it."""
        g = torch.Generator().manual_seed(self.cfg.seed * 100003 + epoch)
        return torch.randperm(len(self.data.train_y), generator=g).to(self.device)

    def steps_per_epoch(self) -> int:
        return len(self.data.train_y) // self.cfg.batch_size  # drop the last partial batch

    def batch_indices(self, order: torch.Tensor, s: int) -> torch.Tensor:
        """Indices of this process's part of batch ``s`` (a data-parallel rank takes its shard)."""
        return order[s * self.cfg.batch_size : (s + 1) * self.cfg.batch_size]

    def batch(self, s: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Batch ``s`` of the current epoch: augmented and normalised images, labels, indices."""
        if self._order is None:
            self._order = self.epoch_order(self.epoch)
        idx = self.batch_indices(self._order, s)
        x = self.norm(self.augment(self.data.train_x[idx].float(), generator=self.gen).clamp_(0, 255))
        return x, self.data.train_y[idx], idx

    def decide(self, s: int, elapsed: float) -> tuple[float, bool]:
        """The training clock for step ``s`` and whether to stop before it: this process's own
        here; the ranks of a multi-process run take rank 0's (:mod:`fflearn.parallel`)."""
        return elapsed, bool(self.cfg.time_budget) and elapsed >= self.cfg.time_budget

    def scheme_step(self) -> int:
        """The step count the update scheme alternates on (its ``counter``)."""
        return self.step_in_epoch if getattr(self.learner.scheme, "counter", "global") == "epoch" else self.global_step

    def take_step(self, s: int, stats: StepStats) -> torch.Tensor:
        """One training step on batch ``s``; returns its loss (a 0-d device tensor)."""
        x, y, idx = self.batch(s)
        return self.learner.step(x, y, self.scheme_step(), stats, generator=self.gen, idx=idx)

    def set_lr(self, lr: float) -> None:
        """Set the learning rate of every local optimiser, and remember it for the epoch record."""
        self.lr = lr
        self.learner.set_lr(lr)

    def train_steps(self, limit: int | None = None) -> int:
        """Train the current epoch's steps from ``step_in_epoch`` until the epoch ends, the agreed
        stop, or ``limit`` steps; returns the steps taken. Checkpoint writes are not training time."""
        cfg = self.cfg
        spe = self.steps_per_epoch()
        stats = self.partial_stats = self.partial_stats or self.learner.new_stats()
        sync(self.device)
        t0 = time.perf_counter()
        done = 0
        try:
            while self.step_in_epoch < spe and (limit is None or done < limit):
                s = self.step_in_epoch
                clock, stop = self.decide(s, self.train_seconds + time.perf_counter() - t0)
                if stop:
                    break
                by_steps = min(0.999999, (self.epoch * spe + s) / (cfg.epochs * spe))
                self.set_lr(lr_at(cfg, progress(cfg, by_steps, clock)))
                try:
                    loss = self.take_step(s, stats)
                except TrainingError as e:  # a NaN/inf loss: name where it happened, keep the checkpoint
                    why = str(e).removesuffix("; the last good checkpoint is kept")  # said precisely below
                    raise TrainingError(f"epoch {self.epoch + 1}, batch {s + 1}/{spe}: {why}; "
                                        f"{self._checkpoint_note()}") from None
                self.step_in_epoch += 1
                self.global_step += 1
                done += 1
                if self.ema is not None:
                    self.ema.update_parameters(self.net)
                self._call("on_step", loss)
                if cfg.checkpoint_every and self.global_step % cfg.checkpoint_every == 0 and self.step_in_epoch < spe:
                    sync(self.device)
                    now = time.perf_counter()
                    self.train_seconds += now - t0
                    self.save_checkpoint()
                    t0 = time.perf_counter()
        finally:
            sync(self.device)
            self.train_seconds += time.perf_counter() - t0
        return done

    def train_epoch(self) -> None:
        """One epoch (or what is left of it): the steps, then the epoch's record, checkpoint and callbacks."""
        seconds_before, steps_before = self.train_seconds, self.step_in_epoch
        if self.console is not None:
            self.console.on_epoch_start(self)
        try:
            self.train_steps()
        finally:
            if self.console is not None:
                self.console.close()
        self.train_seconds = self.agree_seconds(self.train_seconds)
        seconds = self.train_seconds - seconds_before
        stats = self.partial_stats or self.learner.new_stats()
        samples = (self.step_in_epoch - steps_before) * self.cfg.batch_size
        self.next_epoch()
        self.end_epoch(self._epoch_record(stats, seconds, samples))

    def next_epoch(self) -> None:
        """Count the epoch as done (also after a stop mid-epoch): the next starts at its first step."""
        self.epoch += 1
        self.step_in_epoch = 0
        self.partial_stats = None
        self._order = None

    def agree_seconds(self, seconds: float) -> float:
        """The training time every rank counts at an epoch's end (its own in one process)."""
        return seconds

    def end_epoch(self, record: dict[str, Any]) -> None:
        self.metrics.append(record)
        if self.write:
            with open(self.out / "metrics.jsonl", "a") as f:
                f.write(json.dumps(record) + "\n")
        self.save_checkpoint()
        self._call("on_epoch", record)

    def run(self) -> dict[str, Any]:
        cfg = self.cfg
        if self.write:
            dump_yaml(cfg, self.out / "config.yaml")
            if not (self.out / "metrics.jsonl").exists():
                (self.out / "metrics.jsonl").write_text("")
        self._call("on_start")
        self.net.train()
        while self.epoch < cfg.epochs and not self.out_of_time():
            self.train_epoch()
        summary = self.summary()
        if self.write:
            atomic_write_text(json.dumps(summary, indent=2) + "\n", self.out / "summary.json")
        self._call("on_end", summary)
        return summary

    def out_of_time(self) -> bool:
        return bool(self.cfg.time_budget) and self.train_seconds >= self.cfg.time_budget

    # --- evaluation and records ---------------------------------------------------------
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
        if self.learner.margin is not None:
            rec["per_layer_support_fraction"] = s["support"]
        last = self.epoch == cfg.epochs or self.out_of_time()
        if self.epoch % cfg.eval_every == 0 or last:
            t0 = time.perf_counter()
            if self.ema is not None:  # the average's own batch-norm statistics, before it is scored or saved
                recalibrate_bn(self.ema.module, self.norm, self.data.train_x, self.data.train_y, cfg.ema_bn_batches,
                               cfg.batch_size, cfg.seed)
            n_tr = min(len(self.data.train_y), TRAIN_ACCURACY_SAMPLES)
            tr = self.evaluate(self.data.train_x[:n_tr], self.data.train_y[:n_tr])
            rec["train_accuracy"] = tr["accuracy"]
            rec["per_layer_train_accuracy"] = tr["per_layer"]
            if self.val is not None:
                va = self.evaluate(*self.val)
                rec["val_accuracy"] = va["accuracy"]
                rec["per_layer_val_accuracy"] = va["per_layer"]
            if self.val is None or last or cfg.eval_test:
                te = self.evaluate(self.data.test_x, self.data.test_y)
                rec["test_accuracy"] = te["accuracy"]
                rec["per_layer_test_accuracy"] = te["per_layer"]
            if last and self.ema is not None:
                # the live weights too, once: one run then measures what the average adds
                rec.update(self._raw_accuracies())
            rec["eval_seconds"] = time.perf_counter() - t0
        rec["seconds"] = seconds
        rec["samples_per_second"] = samples / seconds if seconds > 0 else None
        return rec

    def evaluate(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, Any]:
        return self._evaluate(self.net if self.ema is None else self.ema.module, x, y)

    def _evaluate(self, net: Any, x: torch.Tensor, y: torch.Tensor) -> dict[str, Any]:
        return evaluate(net, x, y, self.norm, eval_batch_size(self.net), self.cfg.predict, self.cfg.bf16,
                        self.cfg.test_aug)

    def _raw_accuracies(self) -> dict[str, float]:
        """The live weights' accuracies (a run with ema evaluates the average everywhere else)."""
        out = {"raw_test_accuracy": self._evaluate(self.net, self.data.test_x, self.data.test_y)["accuracy"]}
        if self.val is not None:
            out["raw_val_accuracy"] = self._evaluate(self.net, *self.val)["accuracy"]
        return out

    def summary(self) -> dict[str, Any]:
        def last(key: str) -> dict[str, Any]:
            return next((m for m in reversed(self.metrics) if key in m), {})

        te, va = last("test_accuracy"), last("val_accuracy")
        return {
            "method": self.cfg.method,
            "dataset": self.cfg.dataset,
            "dataset_label": self.data.label,
            "model": self.cfg.model,
            "epochs": self.epoch,
            "test_accuracy": te.get("test_accuracy"),
            "per_layer_test_accuracy": te.get("per_layer_test_accuracy"),
            "val_accuracy": va.get("val_accuracy"),
            "per_layer_val_accuracy": va.get("per_layer_val_accuracy"),
            "val_images": 0 if self.val is None else len(self.val[1]),
            # with ema: the live (not averaged) weights' figures at the end, for the same run
            **{k: te[k] for k in ("raw_val_accuracy", "raw_test_accuracy") if k in te},
            "train_accuracy": te.get("train_accuracy", va.get("train_accuracy")),
            "train_seconds": self.train_seconds,
            "parameters": sum(p.numel() for p in self.net.parameters()),
            "device": str(self.device),
            "seed": self.cfg.seed,
            "run_dir": str(self.out),
            "fflearn_version": __version__,
            "provenance": {
                "torch": torch.__version__,
                "python": platform.python_version(),
                "device_name": torch.cuda.get_device_name(self.device) if self.device.type == "cuda"
                else (platform.processor() or platform.machine()),
                "threads": torch.get_num_threads(),
                "git_commit": git_commit(),
                "command": list(sys.argv),
                "plugins": list(self.cfg.plugins),
                "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            },
        }


def _tuples(v: Any) -> Any:
    """random.setstate needs tuples where a round trip may have produced lists."""
    return tuple(_tuples(x) for x in v) if isinstance(v, (list, tuple)) else v


def train(cfg: Config, overwrite: bool = False, dataset: Dataset | None = None,
          callbacks: list[Callback] | None = None) -> dict[str, Any]:
    """Train a model as ``cfg`` describes; returns the summary (also written to the run folder)."""
    return Trainer(cfg, overwrite=overwrite, dataset=dataset, callbacks=callbacks).run()


def resume(run_dir: str | Path, epochs: int | None = None, **overrides: Any) -> dict[str, Any]:
    """Continue the run in ``run_dir`` from its checkpoint (optionally to more epochs).

    ``overrides`` may change the machinery (device, threads, data_dir, progress, checkpointing,
    evaluation) and the optimisation (lr, schedule, ...), not the fields in RESUME_FIXED."""
    cfg, path, ck = resume_config(run_dir, {**overrides, "epochs": epochs})
    t = Trainer(cfg, resume=True)
    t.load_checkpoint(path, ck)
    return t.run()
