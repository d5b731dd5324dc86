#!/usr/bin/env bash
# Build the documentation strictly: a broken link, a broken API cross-reference or a docstring
# warning fails the build. The API reference is generated from the docstrings (mkdocstrings).
#   bash scripts/docs.sh              # build into a temporary folder, then remove it (a check)
#   bash scripts/docs.sh site/        # keep the site in site/
#   bash scripts/docs.sh --serve      # live preview on http://127.0.0.1:8000
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}

if ! "$PY" -c "import mkdocs, mkdocstrings_handlers.python" 2>/dev/null; then
  echo "docs: installing mkdocs and mkdocstrings[python] (the dev extra has them)"
  "$PY" -m pip install -q "mkdocs>=1.6" "mkdocstrings[python]>=0.26"
fi

if [ "${1:-}" = "--serve" ]; then
  exec "$PY" -m mkdocs serve --strict
fi
if [ -n "${1:-}" ]; then
  site=$1
else
  site=$(mktemp -d)
  trap 'rm -rf "$site"' EXIT
fi
"$PY" -m mkdocs build --strict --clean --site-dir "$site"
if [ -n "${1:-}" ]; then echo "docs: built strictly into $site"; else echo "docs: strict build passed"; fi
