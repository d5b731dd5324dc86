#!/bin/bash
# Noise-aware training sweep: DF-O and BP on the Fashion-MNIST preset's net, 2 epochs each, 3 seeds,
# trained at weight-noise sigma 0, 0.1, 0.3, 0.5; then every run under weight/quant/stuck noise with
# batch norm recalibrated on 8 clean batches.
export FFLEARN_DATA=/work/shared/data FFLEARN_NO_DOWNLOAD=1 OMP_WAIT_POLICY=PASSIVE
cd /work/runs/nat
for s in 0 0.1 0.3 0.5; do
  fflearn ablate df --config base-nat$s.yaml --threads 1 --jobs 2 --seeds 3 --rows df-o,bp \
    --out /work/runs/nat/nat$s --json /work/runs/nat/nat$s/ablation.json > nat$s.log 2>&1
  fflearn experiment noise nat$s/df-o/seed0 nat$s/df-o/seed1 nat$s/df-o/seed2 nat$s/bp/seed0 nat$s/bp/seed1 nat$s/bp/seed2 \
    --kinds weight,quant,stuck --draws 1 --limit-test 2000 --threads 2 --recalibrate-bn 8 \
    --json /work/runs/nat/noise-nat$s-recal.json > noise-nat$s-recal.log 2>&1
  echo "sigma $s done $(date)"
done
echo ALLDONE
