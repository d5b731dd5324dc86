"""The DF reconstruction sweep: which label mode, margin, lambda, loss form and block size.

Each row trains DF on MNIST with the 3x1000 MLP for ``--epochs`` epochs (default 5) and prints
the test accuracy after each epoch; docs/distance-forward.md records the figures that chose
fflearn's defaults. Usage:

    python bench/df_sweep.py [--device cuda] [--epochs 5] [--rows NAME,...] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from fflearn.api import make_config
from fflearn.trainer import Trainer

ROWS: dict[str, dict[str, Any]] = {
    "default (blocks of 2, softplus, m=0.1)": {},
    "greedy (block size 1)": {"scheme": "greedy"},
    "lr 2e-3": {"lr": 2e-3},
    "lr 2e-3 cosine": {"lr": 2e-3, "schedule": "cosine"},
    "batch norm": {"norm": "bn"},
    "cosine anchor goodness (s=10)": {"anchor_goodness": "cosine", "npair_scale": 10.0},
    "hinge": {"npair_form": "hinge"},
    "lambda 0.1": {"lam": 0.1},
    "margin 0.5": {"margin": 0.5},
    "batch 64": {"batch_size": 64},
    "alternating blocks": {"alternate": True},
    "DF-R (random feedback)": {"method": "df-r"},
    "4x2000": {"hidden": [2000, 2000, 2000, 2000]},
    "label at the input (overlay, K passes)": {"label_mode": "overlay", "negatives": "all",
                                               "goodness": "mean_squares"},
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="mnist")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--device", default="auto")
    p.add_argument("--rows", help="comma-separated row names (default: all)")
    p.add_argument("--limit-train", type=int)
    p.add_argument("--json", metavar="FILE")
    a = p.parse_args()
    names = a.rows.split(",") if a.rows else list(ROWS)
    results = []
    print(f"{'row':42s} {'test accuracy per epoch (%)':40s} train s")
    for name in names:
        kw = {"method": "df", "dataset": a.dataset, "epochs": a.epochs, "device": a.device, "progress": False,
              "limit_train": a.limit_train, "out": f"runs/df-sweep/{len(results)}", **ROWS[name]}
        t = Trainer(make_config(**kw), overwrite=True)
        t.run()
        accs = [round(100 * m["test_accuracy"], 2) for m in t.metrics]
        results.append({"row": name, "overrides": ROWS[name], "test_accuracy_per_epoch": accs,
                        "train_seconds": t.train_seconds})
        print(f"{name:42s} {' '.join(f'{x:5.2f}' for x in accs):40s} {t.train_seconds:.0f}", flush=True)
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"results": results, "epochs": a.epochs, "dataset": a.dataset}, f, indent=2)


if __name__ == "__main__":
    main()
