#!/usr/bin/env bash
# Build the wheel and prove it works on its own: installed into a clean virtual environment,
# fflearn must import from that environment (not from this checkout), and the `fflearn`
# command must print its version and help and train a tiny model on real MNIST.
#
# The venv is created with --system-site-packages so that the (large) torch install is reused,
# but fflearn itself comes only from the wheel: the check fails if `fflearn.__file__` is not
# inside the venv. Everything happens in a temporary folder, removed at the end
# (KEEP=1 keeps it and prints where).
#   bash scripts/check_wheel.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
REPO=$(pwd)
tmp=$(mktemp -d)
if [ "${KEEP:-0}" = "1" ]; then echo "check_wheel: keeping $tmp"; else trap 'rm -rf "$tmp"' EXIT; fi
fail() { echo "check_wheel: FAIL: $*" >&2; exit 1; }

# 1. a clean copy of what the build reads: no stale build/ or egg-info from this checkout
for f in pyproject.toml README.md LICENSE; do
  [ -f "$f" ] || fail "$f is missing (pyproject.toml's metadata needs it)"
done
mkdir -p "$tmp/tree"
tar --exclude=__pycache__ --exclude='*.egg-info' --exclude='*.pyc' -cf - pyproject.toml README.md LICENSE src \
  | tar -xf - -C "$tmp/tree"

# 2. build the wheel (without build isolation when a recent setuptools is already here: works offline)
if "$PY" -c "import setuptools, sys; sys.exit(int(setuptools.__version__.split('.')[0]) < 68)" 2>/dev/null; then
  iso=(--no-isolation); pip_iso=(--no-build-isolation)
else
  iso=(); pip_iso=()
fi
if "$PY" -c "import build" 2>/dev/null; then
  "$PY" -m build --wheel "${iso[@]}" --outdir "$tmp/dist" "$tmp/tree" >"$tmp/build.log" 2>&1 \
    || { cat "$tmp/build.log"; fail "python -m build --wheel failed"; }
else
  "$PY" -m pip wheel --no-deps "${pip_iso[@]}" -w "$tmp/dist" "$tmp/tree" >"$tmp/build.log" 2>&1 \
    || { cat "$tmp/build.log"; fail "pip wheel failed"; }
fi
wheel=$(ls "$tmp"/dist/fflearn-*.whl)
echo "check_wheel: built $(basename "$wheel")"

# 3. the wheel holds the whole package (every module of src/fflearn) and nothing else
"$PY" - "$wheel" "$REPO/src" <<'PYCODE'
import sys, zipfile
from pathlib import Path
wheel, src = sys.argv[1], Path(sys.argv[2])
names = set(zipfile.ZipFile(wheel).namelist())
want = {p.relative_to(src).as_posix() for p in (src / "fflearn").rglob("*.py")}
missing = sorted(want - names)
if missing:
    sys.exit(f"check_wheel: FAIL: modules missing from the wheel: {missing}")
if "fflearn/py.typed" not in names:
    sys.exit("check_wheel: FAIL: fflearn/py.typed (the PEP 561 marker) is missing from the wheel")
strays = sorted(n for n in names if not n.startswith(("fflearn/", "fflearn-")))
if strays:
    sys.exit(f"check_wheel: FAIL: files outside the package in the wheel: {strays}")
meta = next(n for n in names if n.endswith(".dist-info/METADATA"))
text = zipfile.ZipFile(wheel).read(meta).decode()
for line in ("Requires-Dist: torch", "Provides-Extra: tensorboard"):
    if line not in text:
        sys.exit(f"check_wheel: FAIL: METADATA lacks {line!r}")
if not any(n.endswith("/LICENSE") and ".dist-info/" in n for n in names):
    sys.exit("check_wheel: FAIL: the wheel does not carry the LICENSE file")
entry = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
if "fflearn = fflearn.cli:main" not in zipfile.ZipFile(wheel).read(entry).decode():
    sys.exit("check_wheel: FAIL: no `fflearn` console script in the wheel")
print(f"check_wheel: wheel holds {len(want)} modules, metadata, LICENSE and the fflearn command")
PYCODE

# 4. a clean venv that reuses the system's torch, with fflearn only from the wheel
"$PY" -m venv --system-site-packages "$tmp/venv"
VPY="$tmp/venv/bin/python"
"$VPY" -m pip install -q --disable-pip-version-check "$wheel" >"$tmp/install.log" 2>&1 \
  || { cat "$tmp/install.log"; fail "pip install of the wheel failed"; }
cd "$tmp"  # not the checkout: nothing of it may be importable
unset PYTHONPATH
where=$("$VPY" -c "import fflearn; print(fflearn.__file__)")
case "$where" in
  "$tmp/venv/"*) echo "check_wheel: fflearn imports from the venv: $where" ;;
  *) fail "fflearn imports from $where, not from the wheel in $tmp/venv" ;;
esac

# 5. the installed command works
version=$("$tmp/venv/bin/fflearn" --version)
want_version=$("$VPY" -c "import fflearn; print(fflearn.__version__)")
[ "$version" = "fflearn $want_version" ] || fail "fflearn --version printed '$version'"
echo "check_wheel: $version"
"$tmp/venv/bin/fflearn" --help >"$tmp/help.txt" || fail "fflearn --help failed"
grep -q "train" "$tmp/help.txt" || fail "fflearn --help does not list the train command"

# 6. one tiny training run on real MNIST (Fashion-MNIST where MNIST is not on this machine)
if [ -z "${FFLEARN_DATA:-}" ] && [ -d "$REPO/../shared/data" ]; then export FFLEARN_DATA="$REPO/../shared/data"; fi
dataset=$("$VPY" "$REPO/scripts/default_dataset.py")
OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} "$tmp/venv/bin/fflearn" train --method df --dataset "$dataset" \
  --limit-train 1000 --epochs 1 --out "$tmp/run" --progress false || fail "the tiny training run failed"
"$VPY" - "$tmp/run/summary.json" <<'PYCODE'
import json, sys
s = json.load(open(sys.argv[1]))
acc = s["test_accuracy"]
if not (isinstance(acc, float) and acc > 0.2):  # 10 classes: chance is 0.1
    sys.exit(f"check_wheel: FAIL: test accuracy {acc} after the tiny run")
print(f"check_wheel: tiny run: test accuracy {100 * acc:.2f}% ({s['dataset_label']}, fflearn {s['fflearn_version']})")
PYCODE
echo "check_wheel: OK"
