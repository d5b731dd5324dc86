#!/usr/bin/env bash
# Set up fflearn on a fresh machine: PyTorch (CPU build), the project with its dev tools, and
# Fashion-MNIST from Debian where it is missing. Safe to run again: it skips what is there.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}

if ! "$PY" -c "import torch" 2>/dev/null; then
  # torch==2.13.0 is a CPU build available offline on our machines; elsewhere pick the build
  # for your hardware from pytorch.org first (fflearn needs torch>=2.4).
  "$PY" -m pip install -q "torch==2.13.0"
fi
"$PY" -m pip install -q -e ".[dev]"

# Fashion-MNIST from Debian's package, where apt is available and we may use it
if [ ! -d /usr/share/datasets/fashion-mnist ] && command -v apt-get >/dev/null 2>&1; then
  SUDO=""
  [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1 && SUDO="sudo -n"
  if [ "$(id -u)" -eq 0 ] || [ -n "$SUDO" ]; then
    ($SUDO apt-get update -qq && $SUDO apt-get install -y -qq dataset-fashion-mnist) >/dev/null 2>&1 \
      || echo "setup: could not install dataset-fashion-mnist with apt; fflearn will try to download it"
  fi
fi

# our machines keep the real datasets beside the checkout (../shared/data): use them by default
if [ -z "${FFLEARN_DATA:-}" ] && [ -d ../shared/data ]; then
  echo "setup: data found at $(cd ../shared/data && pwd) (export FFLEARN_DATA to use another folder)"
fi
