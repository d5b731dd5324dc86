#!/bin/bash
# SymBa's label encodings on the MNIST MLP: Hinton's overlay against the intrinsic class pattern at three heights
export FFLEARN_DATA=/work/shared/data FFLEARN_NO_DOWNLOAD=1 OMP_WAIT_POLICY=PASSIVE
cd /work/runs/icp
jobs=()
for seed in 0 1 2; do
  jobs+=("overlay $seed --label-mode overlay")
  for s in 0.3 1 3; do jobs+=("icp$s $seed --label-mode icp --icp-scale $s"); done
done
printf '%s\n' "${jobs[@]}" | xargs -P 2 -L 1 bash -c 'row=$1; seed=$2; shift 2; fflearn train --method symba --dataset mnist --epochs 3 --val-split 5000 --threads 1 --seed $seed "$@" --out /work/runs/icp/$row/seed$seed --overwrite --progress false > /work/runs/icp/$row-seed$seed.log 2>&1' _
fflearn report /work/runs/icp/*/seed* --out /work/runs/icp/report.md --json /work/runs/icp/report.json > report.log 2>&1
echo ALLDONE
