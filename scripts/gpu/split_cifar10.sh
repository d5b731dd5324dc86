#!/usr/bin/env bash
# Cut CIFAR-10's upstream files into the four parts that travel to the device machine, one per
# call (a call carries at most 64 MiB with the checkout; the files do not compress): .gd/p0-p3,
# ignored through .git/info/exclude. reassemble_cifar10.sh puts them back there.
# Usage (repository root): bash scripts/gpu/split_cifar10.sh [CIFAR10_BIN_DIR]
set -euo pipefail
cd "$(dirname "$0")/../.."
C=${1:-${FFLEARN_DATA:-../shared/data}/cifar10/cifar-10-batches-bin}
for f in data_batch_1.bin data_batch_2.bin data_batch_3.bin data_batch_4.bin data_batch_5.bin test_batch.bin batches.meta.txt; do
  [ -f "$C/$f" ] || { echo "split_cifar10: $C/$f is missing; give the folder holding CIFAR-10's binary version" >&2; exit 2; }
done
SUMS=$(dirname "$C")/SHA256SUMS
[ -f "$SUMS" ] || { echo "split_cifar10: $SUMS is missing (the checksums the device side checks)" >&2; exit 2; }
mkdir -p .git/info && { grep -qx '/.gd/' .git/info/exclude 2>/dev/null || echo '/.gd/' >> .git/info/exclude; }
rm -rf .gd && mkdir -p .gd
cat "$C"/data_batch_{1..5}.bin "$C/test_batch.bin" | (cd .gd && split -b 52000000 -d -a 1 - chunk)
for i in 0 1 2 3; do mkdir -p ".gd/p$i" && mv ".gd/chunk$i" ".gd/p$i/"; done
cp "$C/batches.meta.txt" "$SUMS" .gd/p3/
du -sh .gd/p*
