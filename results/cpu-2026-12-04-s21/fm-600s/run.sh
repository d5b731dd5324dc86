#!/usr/bin/env bash
# The Fashion-MNIST presets at their 600 s budget, 1 thread per run and 2 runs at a time (the
# protocol of `fflearn ablate df --jobs 2 --threads 1`): DF-O with weight decay 0.05 (the one change
# the validation sweep ../../cpu-2026-12-03-s20/fm-val-sweep favoured) beside BP, seed by seed, so
# that the two methods of a seed share the machine alike; then the DF-O preset as shipped (no weight
# decay), seeds 0-2, and a fourth seed of DF-O with weight decay to keep the runs in pairs.
# Run from the repository root: bash results/cpu-2026-12-04-s21/fm-600s/run.sh RUNS_DIR
# Written when the DF-O preset had blocks of 3 (until 2026-12-04): its DF-O commands pass
# --block-size 3 so that they still reproduce these figures.
set -u
R=${1:-runs/fm-600s}
mkdir -p "$R"
DF=configs/cpu/df-o-fashion-mnist-10min.yaml
BP=configs/cpu/bp-fashion-mnist-10min.yaml
{
  for s in 0 1 2; do
    echo "fflearn train --config $DF --block-size 3 --threads 1 --seed $s --out $R/df-o-wd/s$s --weight-decay 0.05"
    echo "fflearn train --config $BP --threads 1 --seed $s --out $R/bp/s$s"
  done
  for s in 0 1 2; do echo "fflearn train --config $DF --block-size 3 --threads 1 --seed $s --out $R/df-o/s$s"; done
  echo "fflearn train --config $DF --block-size 3 --threads 1 --seed 3 --out $R/df-o-wd/s3 --weight-decay 0.05"
} > "$R/commands.txt"
cat "$R/commands.txt"
xargs -P 2 -I{} sh -c '{} > /dev/null 2>&1 || echo "FAILED: {}"' < "$R/commands.txt"
fflearn report "$R"/*/s* --out "$R/report.md" --json "$R/report.json"
