#!/bin/bash
# SymBa on the small conv net (width 0.25), Fashion-MNIST, 1 epoch: the Trifecta's learned label channel (the recipe's default on conv nets) against the intrinsic class pattern
export FFLEARN_DATA=/work/shared/data FFLEARN_NO_DOWNLOAD=1 OMP_WAIT_POLICY=PASSIVE
cd /work/runs/icpconv
jobs=()
for seed in 0 1 2; do
  jobs+=("channel $seed --label-mode channel")
  for s in 0.1 0.3; do jobs+=("icp$s $seed --label-mode icp --icp-scale $s"); done
done
printf '%s\n' "${jobs[@]}" | xargs -P 2 -L 1 bash -c 'row=$1; seed=$2; shift 2; fflearn train --method symba --dataset fashion-mnist --model small --width 0.25 --epochs 1 --val-split 5000 --threads 1 --seed $seed "$@" --out /work/runs/icpconv/$row/seed$seed --overwrite --progress false > /work/runs/icpconv/$row-seed$seed.log 2>&1' _
echo ALLDONE
