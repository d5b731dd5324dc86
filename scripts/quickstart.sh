#!/usr/bin/env bash
# The main job: set up, then train DF (DF-O, the default method) on real MNIST with an MLP.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if [ -z "${FFLEARN_DATA:-}" ] && [ -d ../shared/data/mnist ]; then export FFLEARN_DATA=../shared/data; fi
exec fflearn train --method df --dataset mnist --model mlp --epochs 5 --out runs/quickstart --overwrite "$@"
