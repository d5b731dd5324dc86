"""Write your own local loss, register it, and train with it: no change to fflearn needed.

    python examples/custom_loss.py            # trains DF's recipe with the loss below
    python examples/custom_loss.py --tiny     # seconds (CI); or FFLEARN_EXAMPLE_TINY=1

A local loss gets, for each sample of the batch, the goodness of the true class ``g_pos`` (B,)
and of M negative classes ``g_neg`` (B, M), and returns one loss per sample (B,). fflearn picks
the negatives (config ``negatives``), computes the goodness (``label_mode``, ``goodness``,
``anchor_goodness``), averages your loss over the batch and back-propagates it inside the update
scheme's segment only. A registered *class* is built by filling its constructor's parameters
from the run's config by name: ``margin`` is the config's field, and ``hinge_power``, which no
config field has, is a hyperparameter this plugin declares. It becomes a flag and a YAML key,
is type-checked, saved in the run's config.yaml and restored on resume.

This file is also a plugin: the CLI imports it with ``--plugin`` before parsing, so

    fflearn train --plugin examples/custom_loss.py --method df --loss sq-hinge --margin 0.5 --hinge-power 3
"""

from __future__ import annotations

import argparse
import os

import torch

import fflearn
from fflearn.registry import LOSSES

TINY_ENV = "FFLEARN_EXAMPLE_TINY"


class PowerHingeLoss:
    """Hinge to a power over every negative: mean_j relu(m - (g_pos - g_neg_j)) ** p.

    Like DF's hinge N-pair loss, only the support pairs (those inside the margin) carry gradient,
    but with p > 1 a pair's pull grows with how far inside the margin it is.
    """

    def __init__(self, margin: float = 0.1, hinge_power: float = 2.0) -> None:
        if hinge_power < 1:
            raise ValueError(f"hinge_power must be >= 1, got {hinge_power}")
        self.margin, self.power = margin, hinge_power

    def __call__(self, g_pos: torch.Tensor, g_neg: torch.Tensor) -> torch.Tensor:
        gap = g_pos.unsqueeze(1) - g_neg  # (B, M)
        return torch.relu(self.margin - gap).pow(self.power).mean(1)


# overwrite=True: importing this file twice (as a script and as a plugin) must not fail
LOSSES.register("sq-hinge", PowerHingeLoss, overwrite=True)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--method", default="df", help="recipe whose other ingredients are kept (df: anchors, all negatives)"
    )
    p.add_argument("--dataset", default="mnist")
    p.add_argument("--margin", type=float, default=0.5)
    p.add_argument("--hinge-power", type=float, default=2.0)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--limit-train", type=int, default=None)
    p.add_argument("--limit-test", type=int, default=None)
    p.add_argument("--data-dir", default=None)
    p.add_argument("--out", default="runs/examples/custom-loss")
    p.add_argument("--tiny", action="store_true", help=f"a few seconds' run for CI (also ${TINY_ENV}=1)")
    args = p.parse_args(argv)
    hidden = [1000, 1000, 1000]
    if args.tiny or os.environ.get(TINY_ENV) == "1":
        args.epochs, args.limit_train, args.limit_test, hidden = 1, 1000, 500, [200, 200]

    # the loss is chosen by name, like any built-in one (loss="npair", "symba", ...)
    cfg = fflearn.make_config(
        method=args.method,
        dataset=args.dataset,
        loss="sq-hinge",
        margin=args.margin,
        hinge_power=args.hinge_power,
        hidden=hidden,
        epochs=args.epochs,
        limit_train=args.limit_train,
        limit_test=args.limit_test,
        data_dir=args.data_dir,
        out=args.out,
        progress=False,
    )
    summary = fflearn.train(cfg, overwrite=True)
    print(f"{cfg.method} with loss {cfg.loss!r} (hinge power {cfg.params['hinge_power']:g}) on {summary['dataset_label']}, {summary['epochs']} epoch(s)")
    for i, acc in enumerate(summary["per_layer_test_accuracy"]):
        print(f"  layer {i}: {100 * acc:6.2f}% test accuracy")
    print(f"test accuracy: {100 * summary['test_accuracy']:.2f}%   run folder: {summary['run_dir']}")
    return summary


if __name__ == "__main__":
    main()
