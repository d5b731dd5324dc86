#!/usr/bin/env bash
# The DF-O Fashion-MNIST preset on validation, continued (issue 20): larger blocks (blocks of 2
# scored below the preset's 3 in ../../cpu-2026-12-03-s20/fm-val-sweep, so does the trend go on?
# Blocks of 6 are one block over the net's 6 layers: end-to-end gradients into DF's head), and a
# doubled margin. Same protocol as that sweep: exactly 3 epochs, 2 seeds, 1 thread per run, 2 runs
# at a time; plus the preset's seed 0 again, to see whether that sweep's figures reproduce here.
# Run from the repository root: bash results/cpu-2026-12-04-s21/fm-val-sweep2/sweep.sh RUNS_DIR
# Written when the DF-O preset had blocks of 3 (until 2026-12-04): its DF-O commands pass
# --block-size 3 so that they still reproduce these figures.
set -u
R=${1:-runs/fm-val-sweep2}
mkdir -p "$R"
DF="fflearn train --config configs/cpu/df-o-fashion-mnist-10min.yaml --threads 1 --epochs 3 --time-budget 0 --block-size 3"  # the rows' own --block-size comes later and wins
{
  for s in 0 1; do
    echo "$DF --seed $s --out $R/df-o-block4/s$s --block-size 4"
    echo "$DF --seed $s --out $R/df-o-block6/s$s --block-size 6"
    echo "$DF --seed $s --out $R/df-o-margin0.2/s$s --margin 0.2"
  done
  echo "$DF --seed 0 --out $R/df-o-base/s0"
} > "$R/commands.txt"
cat "$R/commands.txt"
xargs -P 2 -I{} sh -c '{} > /dev/null 2>&1 || echo "FAILED: {}"' < "$R/commands.txt"
fflearn report "$R"/*/s? --out "$R/report.md" --json "$R/sweep.json"
