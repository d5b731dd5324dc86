#!/bin/bash
# the intrinsic class pattern at height 0.1 (after 0.3, 1 and 3 of run.sh)
export FFLEARN_DATA=/work/shared/data FFLEARN_NO_DOWNLOAD=1 OMP_WAIT_POLICY=PASSIVE
cd /work/runs/icp
printf '%s\n' "icp0.1 0 --label-mode icp --icp-scale 0.1" "icp0.1 1 --label-mode icp --icp-scale 0.1" "icp0.1 2 --label-mode icp --icp-scale 0.1" | xargs -P 2 -L 1 bash -c 'row=$1; seed=$2; shift 2; fflearn train --method symba --dataset mnist --epochs 3 --val-split 5000 --threads 1 --seed $seed "$@" --out /work/runs/icp/$row/seed$seed --overwrite --progress false > /work/runs/icp/$row-seed$seed.log 2>&1' _
echo ALLDONE
