#!/bin/bash
# CIFAR-10 presets after the flat-head speed fix, DF-O and BP interleaved by seed, one run at a time.
# This session stopped the batch before BP seed 2 and ran that one later on its own (run-bp-s2.log).
cd "$(git rev-parse --show-toplevel)"
export FFLEARN_DATA=/work/shared/data OMP_WAIT_POLICY=PASSIVE FFLEARN_NO_DOWNLOAD=1
for s in 0 1 2; do
  for m in df-o bp; do
    echo "=== $m seed $s $(date -u +%H:%M:%S)"
    fflearn train --config configs/cpu/$m-cifar10-20min.yaml --threads 2 --seed $s --out runs/c10-$m-s$s --progress false
  done
done
echo "=== done $(date -u +%H:%M:%S)"
