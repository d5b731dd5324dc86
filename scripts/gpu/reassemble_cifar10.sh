#!/usr/bin/env bash
# CIFAR-10 (the JPEG-derived copy) sent to the device machine in four parts of one byte stream
# (data_batch_1..5 then test_batch, cut every 52,000,000 bytes by split_cifar10.sh: a call carries
# at most 64 MiB), put back into its upstream files and checked against its SHA256SUMS.
# Usage: bash scripts/gpu/reassemble_cifar10.sh PARTS_DIR DATA_ROOT
set -euo pipefail
G=$1
R=$2
D="$R/cifar10/cifar-10-batches-bin"
REC=3073  # bytes per image record: 1 label byte + 32x32x3 pixels; 10,000 records per file
mkdir -p "$D"
cat "$G"/chunk0 "$G"/chunk1 "$G"/chunk2 "$G"/chunk3 > "$G/all"
for i in 1 2 3 4 5 6; do
  name="data_batch_$i.bin"; [ "$i" = 6 ] && name=test_batch.bin
  dd if="$G/all" of="$D/$name" bs=$REC skip=$(( (i - 1) * 10000 )) count=10000 status=none
done
rm "$G/all"
cp "$G/batches.meta.txt" "$D/"
cp "$G/SHA256SUMS" "$R/cifar10/"
(cd "$R/cifar10" && sha256sum -c --quiet SHA256SUMS)
echo data-ok
