"""Command-line interface: parse, validate, call the library. Bad input: one line, exit 2.

Subcommands live in their own modules and register here through ``SUBCOMMANDS``: each module
has ``add_parser(subparsers)`` that sets ``func`` on its parser.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import importlib.util
import json
import sys
import typing
from collections.abc import Sequence
from typing import Any

from . import __version__
from .config import Config
from .errors import FFLearnError

# modules that add subcommands (beyond train and eval); each has add_parser(subparsers)
SUBCOMMANDS: list[str] = [
    "fflearn.experiments.cli",  # plot, report, experiment {memory,noise,online,parallel}
    "fflearn.ablate",  # ablate trifecta
    "fflearn.bench.cli",  # bench {speed,mfu,tta,peers}
]


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def add_config_flags(p: argparse.ArgumentParser) -> None:
    """One flag per Config field; values are type-checked by Config.from_dict, not argparse,
    so that a bad value gives the same one-line message from a flag or a config file."""
    hints = typing.get_type_hints(Config)
    for f in dataclasses.fields(Config):
        help_text = f"(default: set by the method, else {f.default!r})" if f.default is not dataclasses.MISSING else ""
        if hints[f.name] is bool:
            p.add_argument(_flag(f.name), dest=f.name, nargs="?", const="true", default=None,
                           metavar="BOOL", help=help_text)
        elif typing.get_origin(hints[f.name]) is list:
            p.add_argument(_flag(f.name), dest=f.name, nargs="+", default=None, help=help_text)
        else:
            p.add_argument(_flag(f.name), dest=f.name, default=None, help=help_text)


def config_from_args(args: argparse.Namespace) -> Config:
    from .api import make_config

    fields = {f.name: getattr(args, f.name) for f in dataclasses.fields(Config)}
    return make_config(args.config, **fields)


def cmd_train(args: argparse.Namespace) -> int:
    from . import distributed
    from .trainer import resume, train

    if distributed.requested(args):  # --nproc/--pipeline N, or a rank started by torchrun
        return distributed.run_command(args)
    if args.resume:
        given = {f.name: getattr(args, f.name) for f in dataclasses.fields(Config)
                 if getattr(args, f.name) is not None and f.name not in ("epochs", "out")}
        epochs = None if args.epochs is None else Config.from_dict({"epochs": args.epochs}).epochs
        summary = resume(args.resume, epochs=epochs, **given)
    else:
        cfg = config_from_args(args)
        summary = train(cfg, overwrite=args.overwrite)
    _print_summary(summary)
    return 0


def _print_summary(s: dict[str, Any]) -> None:
    acc = s.get("test_accuracy")
    per = s.get("per_layer_test_accuracy") or []
    print(f"\n{s['method']} on {s.get('dataset_label', s['dataset'])}, {s['epochs']} epochs, "
          f"{s['train_seconds']:.1f} s of training")
    print("layer  test accuracy")
    for i, a in enumerate(per):
        print(f"{i:5d}  {'   -' if a is None else f'{100 * a:6.2f}%'}")
    print(f"test accuracy: {'-' if acc is None else f'{100 * acc:.2f}%'}")
    print(f"run folder: {s['run_dir']}")


def cmd_eval(args: argparse.Namespace) -> int:
    from .trainer import load_run

    overrides = {"data_dir": args.data_dir} if args.data_dir else {}
    if args.device:
        overrides["device"] = args.device
    if args.predict:  # another voting rule on the same trained layers (validated by the config)
        overrides["predict"] = args.predict
    t = load_run(args.run_dir, **overrides)
    res = t.evaluate(t.data.test_x, t.data.test_y)
    out = {"run_dir": args.run_dir, "method": t.cfg.method, "dataset": t.cfg.dataset, "predict": t.cfg.predict,
           "test_accuracy": res["accuracy"], "per_layer_test_accuracy": res["per_layer"]}
    print("layer  test accuracy")
    for i, a in enumerate(res["per_layer"]):
        print(f"{i:5d}  {100 * a:6.2f}%")
    print(f"test accuracy ({t.cfg.predict}): {100 * res['accuracy']:.2f}%")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fflearn", description="Forward-Forward-family local learning.")
    p.add_argument("--version", action="version", version=f"fflearn {__version__}")
    p.add_argument("--plugin", action="append", default=[], metavar="MODULE",
                   help="import MODULE first (it may register methods, losses, datasets, ...)")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train a network")
    t.add_argument("--config", metavar="FILE.yaml", help="config file (flags override it)")
    t.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from its checkpoint")
    t.add_argument("--overwrite", action="store_true", help="replace a run already in --out")
    t.add_argument("--nproc", type=int, default=0, help="data-parallel processes (torch.distributed)")
    t.add_argument("--pipeline", type=int, default=0, metavar="N",
                   help="layer-parallel pipeline over N processes (local methods with a static scheme)")
    t.add_argument("--dist-timeout", type=float, default=300.0, metavar="SECONDS",
                   help="a rank waiting longer than this on another stops with an error")
    add_config_flags(t)
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("eval", help="evaluate a trained run on its test set")
    e.add_argument("run_dir")
    e.add_argument("--data-dir")
    e.add_argument("--device")
    e.add_argument("--predict", metavar="RULE",
                   help="voting rule instead of the run's own: last, all, or from:N (layers N..; N<0 counts from the end)")
    e.add_argument("--json", metavar="FILE", help="write the figures as JSON")
    e.set_defaults(func=cmd_eval)

    for mod in SUBCOMMANDS:
        if importlib.util.find_spec(mod) is not None:
            importlib.import_module(mod).add_parser(sub)
    return p


def _load_plugins(argv: Sequence[str]) -> None:
    """Import --plugin modules before building the parser, so their registrations count."""
    for i, a in enumerate(argv):
        name = argv[i + 1] if a == "--plugin" and i + 1 < len(argv) else a[9:] if a.startswith("--plugin=") else None
        if name:
            try:
                importlib.import_module(name)
            except ImportError as e:
                raise FFLearnError(f"cannot import plugin {name!r}: {e}") from None


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        _load_plugins(argv)
        args = build_parser().parse_args(argv)
        args.argv = argv  # what launched ranks re-run
        return int(args.func(args) or 0)
    except FFLearnError as e:
        print(f"fflearn: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("fflearn: interrupted; the last checkpoint is kept", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
