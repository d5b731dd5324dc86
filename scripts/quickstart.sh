#!/usr/bin/env bash
# The main job: set up, then train DF (DF-O, the default method) on real MNIST with an MLP
# (Fashion-MNIST where MNIST is not on this machine: scripts/default_dataset.py).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if [ -z "${FFLEARN_DATA:-}" ] && [ -d ../shared/data/mnist ]; then export FFLEARN_DATA=../shared/data; fi
DATASET=$("${PYTHON:-python3}" scripts/default_dataset.py)
[ "$DATASET" = mnist ] || echo "quickstart: MNIST is not on this machine; training on $DATASET instead"
exec fflearn train --method df --dataset "$DATASET" --model mlp --epochs 5 --out runs/quickstart --overwrite "$@"
