"""Train DF-O (Distance-Forward, block-wise local updates) on Fashion-MNIST from Python.

    python examples/train_df_fashion_mnist.py --epochs 5          # the budget: epochs ...
    python examples/train_df_fashion_mnist.py --limit-train 10000  # ... and training images
    python examples/train_df_fashion_mnist.py --tiny               # seconds (CI); or FFLEARN_EXAMPLE_TINY=1

Everything here is the public API: ``fflearn.make_config`` resolves the DF-O recipe (per-layer
class anchors, N-pair margin loss over all wrong classes, blocks of two layers) and any field you
pass overrides it; ``fflearn.train`` runs it and returns the summary that is also written to
``RUN_DIR/summary.json``. The same run from the shell::

    fflearn train --method df-o --dataset fashion-mnist --epochs 5 --out runs/df-fmnist
"""

from __future__ import annotations

import argparse
import os

import fflearn

TINY_ENV = "FFLEARN_EXAMPLE_TINY"


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", "--budget", dest="epochs", type=int, default=5, help="training budget in epochs")
    p.add_argument("--limit-train", type=int, default=None, help="use only the first N training images")
    p.add_argument("--limit-test", type=int, default=None, help="use only the first N test images")
    p.add_argument("--hidden", type=int, nargs="+", default=[1000, 1000, 1000], help="MLP widths")
    p.add_argument("--data-dir", default=None, help="data root (default: $FFLEARN_DATA, then the standard places)")
    p.add_argument("--out", default="runs/examples/df-fashion-mnist", help="run folder (replaced if it exists)")
    p.add_argument("--device", default="auto")
    p.add_argument("--tiny", action="store_true", help=f"a few seconds' run for CI (also ${TINY_ENV}=1)")
    args = p.parse_args(argv)

    if args.tiny or os.environ.get(TINY_ENV) == "1":
        # 1000 images, one epoch, a narrow net: enough to see the layers learn, not to score well
        args.epochs, args.limit_train, args.limit_test, args.hidden = 1, 1000, 500, [200, 200]

    cfg = fflearn.make_config(
        method="df-o",
        dataset="fashion-mnist",
        model="mlp",
        hidden=args.hidden,
        epochs=args.epochs,
        limit_train=args.limit_train,
        limit_test=args.limit_test,
        data_dir=args.data_dir,
        out=args.out,
        device=args.device,
        progress=False,
    )
    print(
        f"DF-O: loss={cfg.loss} ({cfg.npair_form}, margin {cfg.margin}), negatives={cfg.negatives}, "
        f"scheme={cfg.scheme} of {cfg.block_size}, anchors scored by {cfg.anchor_goodness}"
    )
    summary = fflearn.train(cfg, overwrite=True)

    print(f"\n{summary['dataset_label']}: {summary['epochs']} epoch(s), {summary['train_seconds']:.1f} s of training")
    for i, acc in enumerate(summary["per_layer_test_accuracy"]):
        print(f"  layer {i}: {100 * acc:6.2f}% test accuracy")
    print(f"test accuracy (predict={cfg.predict}): {100 * summary['test_accuracy']:.2f}%")
    print(f"run folder: {summary['run_dir']}")
    return summary


if __name__ == "__main__":
    main()
