#!/usr/bin/env bash
# The DF-O Fashion-MNIST preset with blocks of 4 (two blocks, 4 + 2 layers) at its 600 s budget,
# 4 seeds, after ../fm-val-sweep2 found blocks of 4 ahead of the preset's 3 on validation at 3
# epochs. Same protocol as ../fm-600s (1 thread per run, 2 runs at a time, each beside another DF-O
# run), so that its BP and DF-O rows compare with these.
# Run from the repository root: bash results/cpu-2026-12-04-s21/fm-600s-block4/run.sh RUNS_DIR
set -u
R=${1:-runs/fm-600s-block4}
mkdir -p "$R"
for s in 0 1 2 3; do
  echo "fflearn train --config configs/cpu/df-o-fashion-mnist-10min.yaml --threads 1 --seed $s --out $R/df-o-block4/s$s --block-size 4"
done > "$R/commands.txt"
cat "$R/commands.txt"
xargs -P 2 -I{} sh -c '{} > /dev/null 2>&1 || echo "FAILED: {}"' < "$R/commands.txt"
fflearn report "$R"/*/s* --out "$R/report.md" --json "$R/report.json"
