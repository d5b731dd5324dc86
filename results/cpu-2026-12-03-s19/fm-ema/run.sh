#!/bin/bash
# the DF-O Fashion-MNIST preset with the weight average, after the fix: the saved average's batch-norm statistics are measured again
# Written when the DF-O preset had blocks of 3 (until 2026-12-04): its DF-O commands pass
# --block-size 3 so that they still reproduce these figures.
export FFLEARN_DATA=/work/shared/data FFLEARN_NO_DOWNLOAD=1 OMP_WAIT_POLICY=PASSIVE
cd /work/main
fflearn train --config configs/cpu/df-o-fashion-mnist-10min.yaml --threads 2 --block-size 3 --ema 0.999 --seed 0 --out /work/runs/ema/df-o-ema-s0 --overwrite --progress false > /work/runs/ema/df-o-ema-s0.log 2>&1
echo ALLDONE
