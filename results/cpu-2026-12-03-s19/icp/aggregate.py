"""SymBa's label encodings on the MNIST MLP, mean and sd over 3 seeds: Hinton's overlay against the
intrinsic class pattern (label_mode icp) at four heights. Reads the runs that run.sh and run2.sh
trained (python aggregate.py RUNS_DIR [--json FILE]); prints the table, writes the figures."""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import sys
from pathlib import Path

import torch

from fflearn.bench.common import machine_info

ROWS = ["overlay", "icp0.1", "icp0.3", "icp1", "icp3"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("runs", type=Path)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    rows = []
    for name in ROWS:
        sums = [json.loads(p.read_text()) for p in sorted((args.runs / name).glob("seed*/summary.json"))]
        if not sums:
            continue
        layers = list(zip(*(s["per_layer_test_accuracy"] for s in sums), strict=True))
        pct = lambda xs: (100 * statistics.fmean(xs), 100 * statistics.stdev(xs) if len(xs) > 1 else 0.0)  # noqa: E731
        val, test = pct([s["val_accuracy"] for s in sums]), pct([s["test_accuracy"] for s in sums])
        rows.append({"name": name, "label_mode": "overlay" if name == "overlay" else "icp",
                     "icp_scale": None if name == "overlay" else float(name[3:]), "seeds": len(sums),
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
        out = {"command": "fflearn train --method symba --dataset mnist --epochs 3 --val-split 5000 --threads 1 "
                          "--seed S {--label-mode overlay | --label-mode icp --icp-scale H} (run.sh, run2.sh: 2 at a time)",
               "aggregate": " ".join(["python"] + sys.argv), "machine": machine_info(torch.device("cpu")),
               "torch": torch.__version__, "date": datetime.date.today().isoformat(), "rows": rows}
        args.json.write_text(json.dumps(out, indent=2))
        print(f"figures written to {args.json}")


if __name__ == "__main__":
    main()
