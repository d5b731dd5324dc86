"""``fflearn plot``, ``fflearn report`` and ``fflearn experiment NAME``.

Each experiment lives in its own module of this package with ``add_parser(subparsers)``;
listing it in EXPERIMENTS is all it takes to appear under ``fflearn experiment``.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util

EXPERIMENTS = ["memory", "noise", "online", "parallel", "rules"]
TOP_LEVEL = ["plot", "report"]  # modules that add a top-level command of their own


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    exp = sub.add_parser("experiment", help="run one of the papers' experiments")
    exp_sub = exp.add_subparsers(dest="experiment", required=True)
    for name in EXPERIMENTS:
        mod = f"fflearn.experiments.{name}"
        if importlib.util.find_spec(mod) is not None:
            importlib.import_module(mod).add_parser(exp_sub)
    for name in TOP_LEVEL:
        mod = f"fflearn.experiments.{name}"
        if importlib.util.find_spec(mod) is not None:
            importlib.import_module(mod).add_parser(sub)
