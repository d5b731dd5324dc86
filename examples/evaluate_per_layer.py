"""Evaluate a trained run layer by layer, and plot how every layer learned.

    python examples/evaluate_per_layer.py runs/df-fmnist                 # any run folder
    python examples/evaluate_per_layer.py --tiny                          # trains a tiny run first (CI)

Local learning gives every layer its own classifier (its goodness per class), so a run has one
test accuracy per layer, and the prediction rule (``last``, ``all``, ``from:N``) decides which
layers vote. This script rebuilds the run from its checkpoint (``fflearn.runs.load_run``),
scores the test set once per layer and once per rule, and draws two panels:

* the test accuracy of each layer now, with the vote of each rule as a line;
* each layer's test accuracy after every evaluated epoch (from ``metrics.jsonl``).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display needed
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

import fflearn  # noqa: E402
from fflearn.predict import evaluate  # noqa: E402
from fflearn.runs import load_run  # noqa: E402

TINY_ENV = "FFLEARN_EXAMPLE_TINY"


def per_layer_report(run_dir: str | Path, rules: list[str]) -> dict:
    """Test accuracy of each layer and of each prediction rule for the run in ``run_dir``."""
    t = load_run(run_dir)
    x, y = t.data.test_x, t.data.test_y
    by_rule = {}
    per_layer: list[float] = []
    for rule in rules:
        res = evaluate(t.net, x, y, t.norm, rule=rule, bf16=t.cfg.bf16)
        by_rule[rule] = res["accuracy"]
        per_layer = res["per_layer"]  # the same for every rule: only the vote differs
    history = [(m["epoch"], m["per_layer_test_accuracy"]) for m in t.metrics if "per_layer_test_accuracy" in m]
    return {
        "run_dir": str(run_dir),
        "method": t.cfg.method,
        "dataset": t.data.label,
        "epochs": t.epoch,
        "test_images": len(y),
        "per_layer_test_accuracy": per_layer,
        "rules": by_rule,
        "history": history,
    }


def plot(report: dict, path: str | Path) -> None:
    per_layer = report["per_layer_test_accuracy"]
    layers = list(range(len(per_layer)))
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.8))
    a.bar(layers, [100 * v for v in per_layer], color="tab:blue", alpha=0.8)
    for (rule, acc), style in zip(report["rules"].items(), ["-", "--", ":", "-."] * 4, strict=False):
        a.axhline(100 * acc, color="k", linestyle=style, linewidth=1, label=f"predict={rule}: {100 * acc:.2f}%")
    a.set(xlabel="layer", ylabel="test accuracy (%)", xticks=layers, title="per layer, after training")
    a.legend(fontsize=8, loc="lower right")
    for i in layers:
        epochs = [e for e, _ in report["history"]]
        b.plot(epochs, [100 * acc[i] for _, acc in report["history"]], marker="o", label=f"layer {i}")
    b.set(xlabel="epoch", ylabel="test accuracy (%)", title="per layer, during training")
    b.xaxis.set_major_locator(MaxNLocator(integer=True))
    b.legend(fontsize=8)
    fig.suptitle(f"{report['method']} on {report['dataset']}")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run_dir", nargs="?", help="a run folder (holding checkpoint.pt)")
    p.add_argument("--rules", nargs="+", default=["last", "all", "from:1"], help="prediction rules to compare")
    p.add_argument("--plot", help="image file to write (default: RUN_DIR/per_layer.png)")
    p.add_argument("--json", help="also write the figures as JSON")
    p.add_argument("--data-dir", default=None, help="data root for the tiny run")
    p.add_argument("--dataset", default="mnist", help="dataset of the tiny run (default mnist)")
    p.add_argument("--out", default="runs/examples/evaluate-per-layer", help="run folder of the tiny run")
    p.add_argument("--tiny", action="store_true", help=f"train a tiny run first when no RUN_DIR (also ${TINY_ENV}=1)")
    args = p.parse_args(argv)
    tiny = args.tiny or os.environ.get(TINY_ENV) == "1"

    run_dir = args.run_dir
    if run_dir is None:
        if not tiny:
            p.error("give a run folder, or --tiny to train a tiny one first")
        run_dir = args.out
        cfg = fflearn.make_config(
            method="df",
            dataset=args.dataset,
            hidden=[200, 200, 200],
            epochs=2,
            limit_train=1000,
            limit_test=500,
            data_dir=args.data_dir,
            out=run_dir,
            progress=False,
        )
        fflearn.train(cfg, overwrite=True)

    report = per_layer_report(run_dir, args.rules)
    print(
        f"{report['method']} on {report['dataset']}, {report['epochs']} epoch(s), {report['test_images']} test images"
    )
    print("layer  test accuracy")
    for i, acc in enumerate(report["per_layer_test_accuracy"]):
        print(f"{i:5d}  {100 * acc:6.2f}%")
    for rule, acc in report["rules"].items():
        print(f"predict={rule:8s} {100 * acc:6.2f}%")
    out = Path(args.plot) if args.plot else Path(run_dir) / "per_layer.png"
    plot(report, out)
    print(f"plot: {out}")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return report


if __name__ == "__main__":
    main()
