#!/usr/bin/env bash
# One H200, one call (issues 20 and 21, GPU parts): CIFAR-10 (JPEG-derived copy) training runs side
# by side on the one GPU, each with the same time budget, and the memory curve with the allocator's
# peak. Run from the repository root: bash scripts/gpu/cifar10_side_by_side.sh SECONDS OUT
# (the data at $FFLEARN_DATA/cifar10/cifar-10-batches-bin; DEVICE=cpu LIMIT=512 tries it on a CPU).
set -u
T=${1:-360}
OUT=${2:-runs/h200}
DEVICE=${DEVICE:-cuda}
LIMIT=${LIMIT:+--limit-train $LIMIT --limit-test $LIMIT --val-split 32}
mkdir -p "$OUT/runs"
F="fflearn"; command -v fflearn >/dev/null || F="python3 -m fflearn"
DF="--config configs/df-o-cifar10.yaml"
BP="--config configs/bp-cifar10.yaml"
# LCP with the DF preset's optimisation and pooling (the ablation's lcp-pool row)
LCP="--method lcp --dataset cifar10 --epochs 200 --batch-size 128 --lr 0.004 --schedule cosine --crop 4 --flip true --head-pool flat --val-split 5000"
COMMON="--device $DEVICE --bf16 true --channels-last true --progress false --eval-every 5 --time-budget $T $LIMIT"
{
  echo "dfo-small     $DF --model small"
  echo "dfo-small-w2  $DF --model small --width 2"
  echo "dfo-small-ema $DF --model small --ema 0.999"
  echo "dfo-large     $DF"
  echo "bp-small      $BP --model small"
  echo "bp-large      $BP"
  echo "lcp-small     $LCP --model small"
} > "$OUT/commands.txt"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
while read -r name flags; do
  echo "$F train $flags $COMMON --out $OUT/runs/$name"
  $F train $flags $COMMON --out "$OUT/runs/$name" > "$OUT/runs/$name.log" 2>&1 &
done < "$OUT/commands.txt"
# the memory curve beside them: the allocator's peak is per process, so sharing the GPU leaves it as is
$F experiment memory --model small,large --methods bp,df-o --batch-size "${MEMORY_BATCHES:-64,128,256,512,1024}" \
  --device "$DEVICE" --json "$OUT/memory.json" 2>&1 | tee "$OUT/memory.txt"
wait
$F report "$OUT"/runs/*/ --out "$OUT/report.md" --json "$OUT/report.json" && cat "$OUT/report.md"
