#!/usr/bin/env bash
# Set up, then run everything CI runs: lint, types, the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if [ -z "${FFLEARN_TEST_DATA:-}" ] && [ -d ../shared/data ]; then export FFLEARN_TEST_DATA="$(cd ../shared/data && pwd)"; fi
python3 -m ruff check src tests bench examples
python3 -m mypy src
python3 -m pytest -q
