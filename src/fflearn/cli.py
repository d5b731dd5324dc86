"""Command-line interface: parse, validate, call the library. Bad input: one line, exit 2.

Subcommands beyond train, eval, export and predict live in their own modules and register here
through ``SUBCOMMANDS``: each module has ``add_parser(subparsers)`` that sets ``func``.

Conventions shared by every subcommand (:mod:`fflearn.cliargs`): lists take spaces or commas
(``--hidden 256 256`` = ``--hidden 256,256``), booleans take an optional value (``--bf16`` =
``--bf16 true``; ``--bf16 false``), abbreviated flags are refused, and ``--plugin MODULE|FILE.py``
may stand anywhere.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import importlib.util
import sys
import typing
from collections.abc import Sequence
from typing import Any

import yaml

from . import __version__
from .cliargs import Parser, add_plugin_flag, list_value, plugin_names
from .config import FIELD_HELP, Config, choices, field_groups
from .errors import FFLearnError
from .registry import declared_params

# modules that add subcommands (beyond train, eval, export, predict); each has add_parser(subparsers)
SUBCOMMANDS: list[str] = [
    "fflearn.experiments.cli",  # plot, report, experiment {memory,noise,online,parallel}
    "fflearn.ablate",  # ablate trifecta, ablate df
    "fflearn.bench.cli",  # bench {speed,mfu,tta,peers}
]
GROUP_TITLES = {"data": "data", "model": "model", "method ingredients": "method ingredients",
                "optimisation": "optimisation", "run and output": "run and output", "devices": "devices"}


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _help(name: str, default: Any, recipe: str) -> str:
    text = FIELD_HELP.get(name, "").replace("%", "%%")
    opts = choices(name)
    if opts and len(", ".join(opts)) < 90:
        text += f" {{{', '.join(opts)}}}"
    return f"{text} [default{recipe}: {default!r}]"


def help_defaults(argv: Sequence[str]) -> tuple[dict[str, Any], str]:
    """The defaults ``--help`` shows: Config's, with the recipe of the ``--method``/``--model``
    given on the same command line applied (``fflearn train --method df-o --model small --help``)."""
    from .methods import method_defaults

    def given(flag: str) -> str | None:
        for i, a in enumerate(argv):
            if a == flag and i + 1 < len(argv):
                return argv[i + 1]
            if a.startswith(flag + "="):
                return a.split("=", 1)[1]
        return None

    base = Config()
    method, model = given("--method") or base.method, given("--model") or base.model
    try:
        recipe = method_defaults(method, model)
    except FFLearnError:
        recipe = {}
    return {**base.to_dict(), **recipe}, f" for method {method}, model {model}"


def add_config_flags(p: argparse.ArgumentParser, argv: Sequence[str] = ()) -> None:
    """One flag per Config field, grouped by the config's sections, each with its field's comment as
    help and the default the method's recipe gives it; values are type-checked by Config.from_dict,
    not argparse, so that a bad value gives the same one-line message from a flag or a config file.
    Plugin hyperparameters get flags too."""
    hints = typing.get_type_hints(Config)
    fields = {f.name: f for f in dataclasses.fields(Config)}
    defaults, recipe = help_defaults(argv)
    for section, names in field_groups().items():
        g = p.add_argument_group(GROUP_TITLES.get(section, section))
        for name in names:
            if name == "params":
                continue
            default = defaults[name]
            if hints[name] is bool:
                g.add_argument(_flag(name), dest=name, nargs="?", const="true", default=None, metavar="BOOL",
                               help=_help(name, default, recipe))
            elif typing.get_origin(hints[name]) is list:
                g.add_argument(_flag(name), dest=name, nargs="+", default=None, type=str, metavar="VALUE",
                               help=_help(name, default, recipe))
            else:
                g.add_argument(_flag(name), dest=name, default=None, metavar=name.upper(), help=_help(name, default, recipe))
    declared = declared_params(fields)
    if declared:
        g = p.add_argument_group("plugin hyperparameters")
        for name, (_, default, owner) in sorted(declared.items()):
            g.add_argument(_flag(name), dest=f"param:{name}", default=None, metavar="VALUE",
                           help=f"hyperparameter of {owner} (default {default!r})")


def given_fields(args: argparse.Namespace) -> dict[str, Any]:
    """The config fields (and plugin hyperparameters) given on the command line."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(Config):
        v = getattr(args, f.name, None)
        if v is not None:
            out[f.name] = list_value(v) if isinstance(v, list) else v
    for k, v in vars(args).items():
        if k.startswith("param:") and v is not None:
            out[k[6:]] = v
    return out


def config_from_args(args: argparse.Namespace) -> Config:
    from .methods import make_config

    given = given_fields(args)
    plugins = getattr(args, "plugins_given", [])
    if plugins:
        from .plugins import canonical

        given["plugins"] = [*given.get("plugins", []), *(canonical(p) for p in plugins)]
    return make_config(args.config, **given)


def _parallel_mode(args: argparse.Namespace) -> tuple[str, int] | None:
    from .parallel.ranks import env_world

    nproc, pipe = args.nproc, args.pipeline
    if nproc is not None and pipe is not None:
        raise FFLearnError("--nproc N (data parallel) and --pipeline N (layer-parallel) are two modes: choose one")
    if pipe is not None and (pipe != 1 or env_world()):
        return "pipeline", pipe
    if (nproc is not None and (nproc != 1 or env_world())) or env_world() > 1:
        return "data", nproc if nproc is not None else 0
    return None


def cmd_train(args: argparse.Namespace) -> int:
    from .console import summary_text

    mode = _parallel_mode(args)
    if args.print_config:
        if args.resume:
            from .checkpoint import resume_config

            cfg = resume_config(args.resume, given_fields(args))[0]
        else:
            cfg = config_from_args(args)
        from .config import validate

        print(yaml.safe_dump(validate(cfg).to_dict(), sort_keys=False), end="")
        return 0
    if mode is not None:  # --nproc/--pipeline N, or a rank started by torchrun
        from .parallel.launch import Request
        from .parallel.launch import main as parallel_main

        req = Request(mode[0], mode[1], list(getattr(args, "argv", None) or sys.argv[1:]),
                      cfg=None if args.resume else config_from_args(args), resume=args.resume,
                      overrides=given_fields(args), overwrite=args.overwrite, timeout=float(args.dist_timeout))
        return parallel_main(req)
    from .trainer import resume, train

    if args.resume:
        given = given_fields(args)
        summary = resume(args.resume, epochs=given.pop("epochs", None), **given)
    else:
        summary = train(config_from_args(args), overwrite=args.overwrite)
    print(summary_text(summary))
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from .runfolder import write_json
    from .runs import load_run
    from .runtime import set_threads

    set_threads(args.threads)
    run = load_run(args.run_dir, data_dir=args.data_dir, device=args.device, predict=args.predict,
                   test_aug=args.test_aug)
    split = args.split
    res = run.evaluate(*run.split(split))
    out = {"run_dir": args.run_dir, "method": run.cfg.method, "dataset": run.cfg.dataset, "predict": run.cfg.predict,
           "test_aug": run.cfg.test_aug, "split": split, f"{split}_accuracy": res["accuracy"],
           f"per_layer_{split}_accuracy": res["per_layer"]}
    print(f"layer  {split} accuracy")
    for i, a in enumerate(res["per_layer"]):
        print(f"{i:5d}  {100 * a:6.2f}%")
    aug = "" if run.cfg.test_aug == "none" else f", test_aug {run.cfg.test_aug}"
    print(f"{split} accuracy ({run.cfg.predict}{aug}): {100 * res['accuracy']:.2f}%")
    write_json(out, args.json)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from .export import export

    path = export(args.run_dir, args.format, args.out)
    print(f"exported {args.run_dir} as {args.format} to {path}")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from .export import predict_files

    rows = predict_files(args.run_dir, args.images, device=args.device)
    for path, name, score in rows:
        print(f"{path}\t{name}\t{score:.4f}")
    if args.json:
        from .runfolder import write_json

        write_json([{"image": p, "class": n, "score": s} for p, n, s in rows], args.json, quiet=True)
    return 0


def build_parser(argv: Sequence[str] = ()) -> argparse.ArgumentParser:
    p = Parser(prog="fflearn", description="Forward-Forward-family local learning.")
    p.add_argument("--version", action="version", version=f"fflearn {__version__}")
    add_plugin_flag(p)
    sub = p.add_subparsers(dest="command", required=True, parser_class=Parser)

    t = sub.add_parser("train", help="train a network", description="Train a network. Flags override the "
                       "config file, which overrides the method's recipe, which overrides Config's defaults.")
    add_plugin_flag(t)
    g = t.add_argument_group("the command")
    g.add_argument("--config", metavar="FILE.yaml", help="config file (flags override it)")
    g.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from its checkpoint")
    g.add_argument("--overwrite", action="store_true", help="replace a run already in --out")
    g.add_argument("--print-config", action="store_true",
                   help="print the resolved config (method recipe, file and flags applied) as YAML and exit")
    g = t.add_argument_group("processes")
    g.add_argument("--nproc", type=int, default=None, metavar="N",
                   help="data-parallel processes (torch.distributed; any method)")
    g.add_argument("--pipeline", type=int, default=None, metavar="N",
                   help="layer-parallel pipeline over N processes (local methods with a static scheme)")
    g.add_argument("--dist-timeout", type=float, default=300.0, metavar="SECONDS",
                   help="a rank waiting longer than this on another stops with an error (default 300)")
    add_config_flags(t, argv)
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("eval", help="evaluate a trained run on its test set")
    add_plugin_flag(e)
    e.add_argument("run_dir")
    e.add_argument("--data-dir")
    e.add_argument("--device")
    e.add_argument("--predict", metavar="RULE",
                   help="voting rule instead of the run's own: last, all, or from:N (layers N..; N<0 counts from the end)")
    e.add_argument("--test-aug", choices=choices("test_aug"),
                   help="test-time augmentation instead of the run's own: none, or flip (the image and its mirror)")
    e.add_argument("--split", choices=["test", "val"], default="test",
                   help="test (default), or val: the validation split the run held out (choose rules on it)")
    e.add_argument("--threads", type=int, default=0, help="torch CPU threads (default 0: torch's choice)")
    e.add_argument("--json", metavar="FILE", help="write the figures as JSON")
    e.set_defaults(func=cmd_eval)

    x = sub.add_parser("export", help="export a trained run as a file plain PyTorch runs (no fflearn needed)")
    add_plugin_flag(x)
    x.add_argument("run_dir")
    x.add_argument("--format", choices=["torchscript", "exported-program"], default="torchscript",
                   help="torchscript (torch.jit.load) or exported-program (torch.export.load); default torchscript")
    x.add_argument("--out", required=True, metavar="FILE", help="where to write the file")
    x.set_defaults(func=cmd_export)

    r = sub.add_parser("predict", help="predict the class of image files (PNG, JPEG; or folders of them)")
    add_plugin_flag(r)
    r.add_argument("run_dir")
    r.add_argument("images", nargs="+", metavar="IMAGE")
    r.add_argument("--device", default="cpu")
    r.add_argument("--json", metavar="FILE", help="also write the predictions as JSON")
    r.set_defaults(func=cmd_predict)

    for mod in SUBCOMMANDS:
        if importlib.util.find_spec(mod) is not None:
            importlib.import_module(mod).add_parser(sub)
    return p


def _load_plugins(argv: Sequence[str]) -> None:
    """Import --plugin modules (wherever they stand) before building the parser, so their
    registrations and hyperparameters count."""
    from .plugins import import_plugins

    import_plugins(plugin_names(argv))


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        _load_plugins(argv)
        args = build_parser(argv).parse_args(argv)
        args.argv = argv  # what launched ranks re-run
        args.plugins_given = plugin_names(argv)
        return int(args.func(args) or 0)
    except FFLearnError as e:
        print(f"fflearn: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("fflearn: interrupted; the last checkpoint is kept", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
