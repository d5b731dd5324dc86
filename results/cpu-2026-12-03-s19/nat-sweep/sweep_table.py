"""Noise-aware training swept over sigma: one table from the sweep's files (sweep.sh wrote them).

python sweep_table.py DIR [--json FILE]: DIR holds nat<sigma>/ablation.json (clean accuracy, 3 seeds)
and noise-nat<sigma>-recal.json (the same runs under noise, batch norm recalibrated on 8 clean
batches, one draw per run on 2,000 test images). Prints, per training sigma and method, mean +- sd
over the 3 runs."""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

# (column, kind, level index 1..5 or 0 for clean) read from the noise file
COLUMNS = [("clean, recalibrated", "weight", 0), ("weight σ 0.1", "weight", 2), ("weight σ 0.3", "weight", 4),
           ("weight σ 0.5", "weight", 5), ("4-bit weights", "quant", 3), ("3-bit weights", "quant", 4),
           ("stuck 5%", "stuck", 3), ("stuck 10%", "stuck", 4)]


def sigma_of(path: Path) -> float:
    return float(path.name.removeprefix("nat"))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("dir", type=Path)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    rows = []
    for folder in sorted((p for p in args.dir.glob("nat*") if p.is_dir()), key=sigma_of):
        if not (folder / "ablation.json").exists() or not (args.dir / f"noise-{folder.name}-recal.json").exists():
            continue  # that sigma has not finished
        ablation = json.loads((folder / "ablation.json").read_text())
        noise = json.loads((args.dir / f"noise-{folder.name}-recal.json").read_text())
        for r in ablation["rows"]:
            row = {"train_weight_noise": sigma_of(folder), "method": r["name"], "seeds": r["seeds"],
                   "val_accuracy_mean": 100 * r["val_accuracy_mean"], "val_accuracy_sd": 100 * r["val_accuracy_sd"],
                   "test_accuracy_mean": 100 * r["test_accuracy_mean"], "test_accuracy_sd": 100 * r["test_accuracy_sd"]}
            for col, kind, level in COLUMNS:
                accs = [100 * x["mean_accuracy"] for x in noise["results"]
                        if x["method"] == r["name"] and x["kind"] == kind and x["level"] == level and x["layers"] is None]
                row[col] = [statistics.fmean(accs), statistics.stdev(accs)]
            rows.append(row)
    head = ["σ trained", "method", "val %", "test %"] + [c for c, _, _ in COLUMNS]
    print("| " + " | ".join(head) + " |\n|" + "---|" * len(head))
    for r in rows:
        pm = lambda m, s: f"{m:.2f}±{s:.2f}"  # noqa: E731
        cells = [f"{r['train_weight_noise']:g}", r["method"], pm(r["val_accuracy_mean"], r["val_accuracy_sd"]),
                 pm(r["test_accuracy_mean"], r["test_accuracy_sd"])] + [pm(*r[c]) for c, _, _ in COLUMNS]
        print("| " + " | ".join(cells) + " |")
    if args.json:
        args.json.write_text(json.dumps({"command": "bash sweep.sh; python sweep_table.py DIR --json FILE",
                                         "columns": {c: {"kind": k, "level": lv} for c, k, lv in COLUMNS},
                                         "rows": rows}, indent=2))
        print(f"figures written to {args.json}")


if __name__ == "__main__":
    main()
