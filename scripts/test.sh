#!/usr/bin/env bash
# Set up, then run everything CI runs: lint, types, the docs build, the test suite, the wheel check.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if [ -z "${FFLEARN_TEST_DATA:-}" ] && [ -d ../shared/data ]; then export FFLEARN_TEST_DATA="$(cd ../shared/data && pwd)"; fi
# several processes share 2 cores in the distributed tests: spinning OpenMP threads would starve them
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
python3 -m ruff check src tests bench examples
python3 -m mypy src
python3 scripts/results_page.py --check  # docs/results.md and the README table follow results/
bash scripts/docs.sh            # mkdocs --strict: a broken reference in a docstring fails
python3 -m pytest -q
bash scripts/check_wheel.sh     # the built wheel installs into a clean venv and trains
