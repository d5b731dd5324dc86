#!/usr/bin/env bash
# CIFAR-10 (the JPEG-derived copy) sent to the device machine in four parts of one byte stream
# (data_batch_1..5 then test_batch, cut every 52,000,000 bytes: a call carries at most 64 MiB),
# put back into its upstream files and checked against its SHA256SUMS.
# Usage: bash scripts/gpu/reassemble_cifar10.sh PARTS_DIR DATA_ROOT
set -u; G=$1; R=$2; D=$R/cifar10/cifar-10-batches-bin; mkdir -p $D; cat $G/chunk0 $G/chunk1 $G/chunk2 $G/chunk3 > $G/all || exit 1; for i in 1 2 3 4 5; do dd if=$G/all of=$D/data_batch_$i.bin bs=3073 skip=$(( (i-1)*10000 )) count=10000 status=none; done; dd if=$G/all of=$D/test_batch.bin bs=3073 skip=50000 count=10000 status=none; rm $G/all; cp $G/batches.meta.txt $D/; cp $G/SHA256SUMS $R/cifar10/; (cd $R/cifar10 && sha256sum -c --quiet SHA256SUMS) && echo data-ok || exit 1
