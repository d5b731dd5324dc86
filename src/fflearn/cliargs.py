"""Argument conventions every fflearn subcommand shares.

* abbreviated flags are refused (``--epoch 1`` is an error, not ``--epochs 1``);
* a list takes spaces or commas: ``--hidden 256 256`` = ``--hidden 256,256``;
* a boolean takes an optional value: ``--bf16`` = ``--bf16 true``, and ``--bf16 false``;
* ``--plugin MODULE|FILE.py`` may stand before or after the subcommand, repeatedly.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from .errors import ConfigError


class Parser(argparse.ArgumentParser):
    """argparse with abbreviations refused (subcommands' parsers inherit it)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(*args, **kwargs)


def add_plugin_flag(p: argparse.ArgumentParser) -> None:
    # the names are read from the whole command line before parsing (cli.main): this flag only
    # makes --plugin valid wherever it stands
    p.add_argument("--plugin", action="append", default=argparse.SUPPRESS, metavar="MODULE",
                   help="import MODULE (or a FILE.py) first: it may register methods, losses, datasets, ...")


def plugin_names(argv: Sequence[str]) -> list[str]:
    out = []
    for i, a in enumerate(argv):
        if a == "--plugin" and i + 1 < len(argv):
            out.append(argv[i + 1])
        elif a.startswith("--plugin="):
            out.append(a[9:])
    return out


def list_value(values: str | Sequence[str]) -> list[str]:
    """``["256", "256"]``, ``["256,256"]`` or ``"256,256"`` -> ``["256", "256"]``."""
    items = [values] if isinstance(values, str) else list(values)
    out = [v.strip() for item in items for v in str(item).split(",")]
    return [v for v in out if v]


def _bool(v: str) -> bool:
    try:
        return bool_value("the value", v)
    except ConfigError:
        raise argparse.ArgumentTypeError(f"must be true or false, got {v!r}") from None


def add_bool(p: Any, flag: str, help: str, default: bool | None = False) -> None:
    """A boolean flag in the shared syntax (``--x``, ``--x true``, ``--x false``); parsed to a bool.
    ``default=None``: not given leaves the value to a config file."""
    shown = "the config's" if default is None else str(default).lower()
    p.add_argument(flag, nargs="?", const=True, default=default, metavar="BOOL", type=_bool,
                   help=f"{help} (default {shown})")


def add_list(p: Any, flag: str, help: str) -> None:
    """A list flag in the shared syntax (``--x 1 2`` = ``--x 1,2``); parsed with :func:`list_value`."""
    p.add_argument(flag, nargs="+", default=None, metavar="VALUE", help=f"{help} (spaces or commas)")


def add_overrides(p: Any, help: str) -> None:
    """``--set FIELD=VALUE`` (repeatable) into ``args.overrides``; parsed with
    :func:`fflearn.config.parse_overrides`."""
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="FIELD=VALUE",
                   help=f"{help} (repeatable)")


def bool_value(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    v = str(value).strip().lower()
    if v in ("true", "1", "yes"):
        return True
    if v in ("false", "0", "no"):
        return False
    raise ConfigError(f"{name} must be true or false, got {value!r}")
