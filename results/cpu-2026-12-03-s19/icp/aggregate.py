"""SymBa's label encodings, mean and sd over seeds: the recipe's own (Hinton's overlay on the MLP,
the Trifecta's label channel on conv nets) against the intrinsic class pattern (label_mode icp,
rows icp<height>). Reads the runs a run.sh beside the runs trained (python aggregate.py RUNS_DIR
[--json FILE]: RUNS_DIR/<row>/seed<k>/); prints the table, writes the figures."""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import sys
from pathlib import Path

import torch

from fflearn.bench.common import machine_info


def row_order(name: str) -> tuple[int, float]:
    return (1, float(name[3:])) if name.startswith("icp") else (0, 0.0)  # the recipe's own encoding first


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("runs", type=Path)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    rows = []
    names = sorted({p.parent.parent.name for p in args.runs.glob("*/seed*/summary.json")}, key=row_order)
    for name in names:
        sums = [json.loads(p.read_text()) for p in sorted((args.runs / name).glob("seed*/summary.json"))]
        if not sums:
            continue
        layers = list(zip(*(s["per_layer_test_accuracy"] for s in sums), strict=True))
        pct = lambda xs: (100 * statistics.fmean(xs), 100 * statistics.stdev(xs) if len(xs) > 1 else 0.0)  # noqa: E731
        val, test = pct([s["val_accuracy"] for s in sums]), pct([s["test_accuracy"] for s in sums])
        rows.append({"name": name, "label_mode": "icp" if name.startswith("icp") else name,
                     "icp_scale": float(name[3:]) if name.startswith("icp") else None, "seeds": len(sums),
                     "val_accuracy_mean": val[0], "val_accuracy_sd": val[1],
                     "test_accuracy_mean": test[0], "test_accuracy_sd": test[1],
                     "per_layer_test_accuracy_mean": [100 * statistics.fmean(col) for col in layers],
                     "train_seconds_mean": statistics.fmean(s["train_seconds"] for s in sums)})
    print(f"{'row':8} {'seeds':>5} {'val %':>13} {'test %':>13}  per-layer test %")
    for r in rows:
        print(f"{r['name']:8} {r['seeds']:5d} {r['val_accuracy_mean']:7.2f}±{r['val_accuracy_sd']:.2f} "
              f"{r['test_accuracy_mean']:7.2f}±{r['test_accuracy_sd']:.2f}  "
              + " / ".join(f"{a:.1f}" for a in r["per_layer_test_accuracy_mean"]))
    if args.json:
        out = {"command": "the fflearn train commands of the run.sh (and run2.sh) beside the runs, 2 at a time",
               "aggregate": " ".join(["python"] + sys.argv), "machine": machine_info(torch.device("cpu")),
               "torch": torch.__version__, "date": datetime.date.today().isoformat(), "rows": rows}
        args.json.write_text(json.dumps(out, indent=2))
        print(f"figures written to {args.json}")


if __name__ == "__main__":
    main()
