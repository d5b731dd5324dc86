"""``fflearn bench {speed,mfu,tta,peers}``: each module adds its own subcommand."""

from __future__ import annotations

import argparse
import importlib

from . import SUBCOMMANDS


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("bench", help="benchmarks: speed, mfu, tta (time to accuracy), peers",
                       description="Benchmarks; each prints a table and writes JSON with --json FILE.")
    bench_sub = p.add_subparsers(dest="bench", required=True)
    for name in SUBCOMMANDS:
        importlib.import_module(f"fflearn.bench.{name}").add_parser(bench_sub)
