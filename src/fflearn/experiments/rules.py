"""``fflearn experiment rules``: choose how trained runs predict on validation, report test.

Every layer of a local learner is a classifier, so a trained run can predict in several ways:
which layers vote (``predict``: last, all, from:N) and whether each image is scored beside its
mirror image (``test_aug``: none, flip). Picking the best of these on the test set would report a
maximum over noisy test figures. This experiment scores every combination on each run's held-out
validation split and on its test set (one pass per run, split and augmentation: the rules share
the scores), averages over the runs of each method (its seeds), picks per method the combination
with the best validation mean (a tie goes to the one listed first) and reports that pick's test
accuracy beside the runs' own. The runs must have been trained with ``val_split``.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..cliargs import list_value
from ..config import Config, validate
from ..console import format_table
from ..errors import FFLearnError
from ..predict import eval_batch_size, evaluate
from ..runfolder import write_json
from ..runs import load_run
from .report import mean_sd, pct_mean_sd

SPLITS = ("val", "test")


def score_run(run_dir: str | Path, rules: Sequence[str], augs: Sequence[str], **overrides: Any) -> dict[str, Any]:
    """The accuracy of every (rule, augmentation) on the run's validation and test sets:
    ``{"val": {(rule, aug): acc}, "test": {...}}`` with the run's method, seed and own choice;
    ``overrides``: machinery for :func:`fflearn.runs.load_run` (device, data_dir)."""
    run = load_run(run_dir, **overrides)
    if not run.cfg.val_split:
        raise FFLearnError(f"{run_dir} was trained without a validation split (val_split 0): rules are "
                           "chosen on validation; train with --val-split N")
    out: dict[str, Any] = {"run_dir": str(run_dir), "method": run.cfg.method, "seed": run.cfg.seed,
                           "own": (run.cfg.predict, run.cfg.test_aug)}
    for split in SPLITS:
        x, y = run.split(split)
        out[split] = {}
        for aug in augs:
            res = evaluate(run.net, x, y, run.norm, eval_batch_size(run.net), rules[0], run.cfg.bf16, aug, rules)
            by_rule: dict[str, float] = res["by_rule"]  # type: ignore[assignment]
            out[split].update({(rule, aug): acc for rule, acc in by_rule.items()})
    return out


def choose(scored: list[dict[str, Any]], rules: Sequence[str], augs: Sequence[str]) -> list[dict[str, Any]]:
    """A row per (method, rule, augmentation): the means and sds over the method's runs, and
    ``chosen`` on the row with the method's best validation mean (``own``: the runs' own choice)."""
    rows = []
    for method in dict.fromkeys(s["method"] for s in scored):
        mine = [s for s in scored if s["method"] == method]
        group = []
        for aug in augs:
            for rule in rules:
                (vm, vs), (tm, ts) = (mean_sd([s[split][rule, aug] for s in mine]) for split in SPLITS)
                group.append({"method": method, "predict": rule, "test_aug": aug, "runs": len(mine),
                              "seeds": [s["seed"] for s in mine], "val_accuracy_mean": vm, "val_accuracy_sd": vs,
                              "test_accuracy_mean": tm, "test_accuracy_sd": ts, "chosen": False,
                              "own": all(s["own"] == (rule, aug) for s in mine)})
        max(group, key=lambda r: r["val_accuracy_mean"])["chosen"] = True  # max keeps the first of a tie
        rows += group
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    return format_table(["method", "predict", "test_aug", "runs", "val %", "test %", ""],
                        [[r["method"], r["predict"], r["test_aug"], r["runs"],
                          pct_mean_sd(r["val_accuracy_mean"], r["val_accuracy_sd"]),
                          pct_mean_sd(r["test_accuracy_mean"], r["test_accuracy_sd"]),
                          " ".join(w for w, on in (("chosen", r["chosen"]), ("own", r["own"])) if on)]
                         for r in rows])


def _list(text: str, field: str) -> list[str]:
    """Comma-separated values of config field ``field``, each validated as that field."""
    vals = list(dict.fromkeys(list_value(text)))
    if not vals:
        raise FFLearnError(f"--{field.replace('_', '-')} needs at least one value")
    for v in vals:
        cfg = Config()
        setattr(cfg, field, v)
        validate(cfg)
    return vals


def cmd_rules(args: argparse.Namespace) -> int:
    from ..runtime import set_threads

    set_threads(args.threads)
    rules, augs = _list(args.rules, "predict"), _list(args.test_aug, "test_aug")
    scored = [score_run(d, rules, augs, device=args.device, data_dir=args.data_dir) for d in args.runs]
    rows = choose(scored, rules, augs)
    print(f"prediction rules on {len(scored)} run(s), chosen per method on the validation mean")
    print(table(rows))
    if args.json:
        runs = [{**s, "own": list(s["own"]), **{split: [{"predict": r, "test_aug": a, "accuracy": acc}
                                                        for (r, a), acc in s[split].items()] for split in SPLITS}}
                for s in scored]
        write_json({"rows": rows, "runs": runs}, args.json)
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("rules", help="choose the voting layers and test-time augmentation on validation, report test")
    p.add_argument("runs", nargs="+", metavar="RUN", help="run folders trained with --val-split (seeds of each method)")
    p.add_argument("--rules", default="last,all,from:-2,from:-3",
                   help="prediction rules to try, comma-separated (default last,all,from:-2,from:-3)")
    p.add_argument("--test-aug", default="none,flip", help="test-time augmentations to try (default none,flip)")
    p.add_argument("--device", help="device to evaluate on (default: the run's)")
    p.add_argument("--data-dir", help="data root (default: the run's)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (default 0: torch's choice)")
    p.add_argument("--json", metavar="FILE", help="write the rows and every run's figures as JSON")
    p.set_defaults(func=cmd_rules)
