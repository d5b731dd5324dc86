"""`fflearn bench peers` from a checkout: python bench/peers.py [options] (see bench/README.md)."""

from __future__ import annotations

import sys

from fflearn.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", "peers", *sys.argv[1:]]))
