#!/usr/bin/env bash
# Does the block-size trend go on locally? DF-O with blocks of 5 (5 + 1 layers) on the Fashion-MNIST
# preset, 600 s on 2 threads, seeds 0-2, one run at a time, right after ../fm-2thread-block4/ on the
# same machine (its blocks-of-4 and BP rows are the comparison). Decided beforehand: the preset takes
# blocks of 5 only if they score higher on validation on every seed. Run from the repository root:
#   bash results/cpu-2026-12-04-s23/fm-2thread-block5/run.sh
set -euo pipefail
R=results/cpu-2026-12-04-s23/fm-2thread-block5
export FFLEARN_DATA=${FFLEARN_DATA:-../shared/data} OMP_WAIT_POLICY=PASSIVE
for s in 0 1 2; do
  fflearn train --config configs/cpu/df-o-fashion-mnist-10min.yaml --threads 2 --block-size 5 --seed $s --out $R/df-o-b5/s$s
done
