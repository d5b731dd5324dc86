# Ran with "for s in 0 1"; stopped after seed 0's pair (DF-O, BP) when the session ran short of time.
cd /work/main
export FFLEARN_DATA=/work/shared/data OMP_WAIT_POLICY=PASSIVE FFLEARN_NO_DOWNLOAD=1
for s in 0 1; do for m in df-o bp; do
  fflearn train --config configs/cpu/$m-fashion-mnist-10min.yaml --threads 2 --ema 0.999 --seed $s --out results/cpu-2026-12-02-s17/fm-ema/$m-ema-s$s > results/cpu-2026-12-02-s17/fm-ema/$m-ema-s$s.log 2>&1
done; done
echo done > results/cpu-2026-12-02-s17/fm-ema/ALLDONE
