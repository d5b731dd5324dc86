"""`fflearn bench mfu` from a checkout: python bench/mfu.py [options] (see bench/README.md)."""

from __future__ import annotations

import sys

from fflearn.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", "mfu", *sys.argv[1:]]))
