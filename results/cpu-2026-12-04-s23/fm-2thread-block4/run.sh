#!/usr/bin/env bash
# Fashion-MNIST, 600 s of training on 2 threads, one run at a time: DF-O with blocks of 4 against
# the preset as shipped (blocks of 3) and BP on the same net and budget, seeds 0-2, interleaved so
# that every finished seed has all three rows. Run from the repository root:
#   bash results/cpu-2026-12-04-s23/fm-2thread-block4/run.sh
set -euo pipefail
R=results/cpu-2026-12-04-s23/fm-2thread-block4
export FFLEARN_DATA=${FFLEARN_DATA:-../shared/data} OMP_WAIT_POLICY=PASSIVE
for s in 0 1 2; do
  fflearn train --config configs/cpu/df-o-fashion-mnist-10min.yaml --threads 2 --block-size 4 --seed $s --out $R/df-o-b4/s$s
  fflearn train --config configs/cpu/df-o-fashion-mnist-10min.yaml --threads 2 --block-size 3 --seed $s --out $R/df-o-b3/s$s
  fflearn train --config configs/cpu/bp-fashion-mnist-10min.yaml --threads 2 --seed $s --out $R/bp/s$s
done
