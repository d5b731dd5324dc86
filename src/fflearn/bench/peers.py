"""``fflearn bench peers``: public forward-forward code run on this machine, against fflearn's DF.

Peers run as separate processes with the same thread count and device, so that neither shares
an allocator or a thread pool with fflearn:

* ``mpezeshki``: ``bench/peers/mpezeshki_ff.py``, a re-implementation of the
  mpezeshki/pytorch_forward_forward recipe from its published description (784-500-500,
  full-batch 50k, 1000 Adam steps per layer). ``--peer-steps S`` runs S steps per layer and
  extrapolates the time linearly to 1000; its published accuracy, 93.2%, is the target.
* ``fflib``: PyPI ``fflib`` installed into a temporary virtualenv (never into fflearn's
  environment) and run by ``bench/peers/fflib_ff.py`` for ``--fflib-epochs`` epochs; the target
  is the accuracy that run reached.

For each peer, fflearn's ``--df-method`` (DF on the default MLP) trains on full MNIST until the
peer's target test accuracy (time as in ``bench tta``: training only); speedup = the peer's
training time / fflearn's.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

from ..cliargs import add_overrides
from ..console import pct
from ..errors import ConfigError
from ..runfolder import write_json
from . import common as c
from .tta import time_to_target

PEERS = ("mpezeshki", "fflib")
MPEZESHKI_ACCURACY = 0.9316  # published MNIST test error 6.84%


def default_peers_dir() -> Path:
    """``bench/peers`` of the source checkout this package runs from (peers are not package code)."""
    return Path(__file__).resolve().parents[3] / "bench" / "peers"


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("peers", help="public FF implementations on this machine vs fflearn's DF",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--peers", default="mpezeshki,fflib", help="comma-separated: mpezeshki, fflib")
    p.add_argument("--peers-dir", default=None, help="folder of the peer scripts (default: bench/peers of the checkout)")
    p.add_argument("--peer-steps", type=int, default=50,
                   help="mpezeshki: Adam steps per layer actually run (of 1000; the time is extrapolated)")
    p.add_argument("--peer-train", type=int, default=50000, help="mpezeshki: full-batch size (default 50000)")
    p.add_argument("--peer-target", type=float, default=MPEZESHKI_ACCURACY,
                   help="mpezeshki: accuracy fflearn must reach (default: the published 93.16%%)")
    p.add_argument("--fflib-epochs", type=int, default=1, help="fflib: epochs run and timed (of its example's 60)")
    p.add_argument("--fflib-limit-train", type=int, default=54000, help="fflib: training images")
    p.add_argument("--fflib-hidden", default="2000,2000", help="fflib: layer widths (its MNIST example: 2000,2000)")
    p.add_argument("--fflib-venv", default=None, help="fflib: virtualenv folder (default: a new temporary one)")
    p.add_argument("--fflib-install", choices=("no-deps", "full"), default="no-deps",
                   help="fflib: 'full' = pip install fflib with its pins (torch 2.6, torchvision; gigabytes); "
                        "'no-deps' = fflib alone on this torch (its torchvision loader unused)")
    p.add_argument("--df-method", default="df", help="fflearn method to compare (default df)")
    p.add_argument("--eval-every-steps", type=int, default=50, help="fflearn: test evaluations every N steps")
    p.add_argument("--max-seconds", type=float, default=300.0, help="fflearn: training-time budget per target")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--limit-train", type=int, default=None, help="fflearn: first N training images")
    p.add_argument("--limit-test", type=int, default=None, help="fflearn and peers: first N test images")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--seed", type=int, default=0)
    add_overrides(p, "config fields of the fflearn run, e.g. --set hidden=500,500")
    p.add_argument("--timeout", type=float, default=3600.0, help="seconds before a peer process is stopped")
    p.add_argument("--json", metavar="FILE")
    p.set_defaults(func=run)


def _subprocess(cmd: list[str], threads: int, timeout: float) -> tuple[dict[str, Any] | None, str]:
    """Run a peer; returns (its JSON, '') or (None, why it failed, in one line)."""
    env = dict(os.environ)
    if threads:
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(threads)
    with tempfile.TemporaryDirectory(prefix="fflearn-peer-") as tmp:
        out = Path(tmp) / "out.json"
        try:
            proc = subprocess.run([*cmd, "--json", str(out)], env=env, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return None, f"stopped after {timeout:.0f} s"
        except OSError as e:
            return None, f"cannot start: {e}"
        if proc.returncode != 0 or not out.exists():
            tail = (proc.stderr or proc.stdout).strip().splitlines()
            return None, f"exit {proc.returncode}: {tail[-1] if tail else 'no output'}"
        return json.loads(out.read_text()), ""


def _data_file(data_dir: str | None, limit_test: int | None, folder: Path) -> Path:
    """MNIST as uint8 tensors in a torch file, the peers' common input."""
    d = c.load_data("mnist", data_dir)
    path = folder / "mnist.pt"
    torch.save({"train_x": d.train_x.cpu(), "train_y": d.train_y.cpu(),
                "test_x": d.test_x[:limit_test].cpu(), "test_y": d.test_y[:limit_test].cpu()}, path)
    return path


def _fflib_python(venv: Path, install: str) -> tuple[str | None, str]:
    """A Python with fflib: a virtualenv (temporary unless --fflib-venv) that sees this
    environment's packages plus fflib; fflearn's own environment is never touched."""
    py = venv / "bin" / "python"
    try:
        if not py.exists():
            subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)],
                           check=True, capture_output=True, text=True, timeout=300)
        probe = subprocess.run([str(py), "-c", "import fflib.nn.ff_net"], capture_output=True, timeout=120)
        if probe.returncode != 0:
            extra = ["--no-deps"] if install == "no-deps" else []
            pip = subprocess.run([str(py), "-m", "pip", "install", "-q", *extra, "fflib"],
                                 capture_output=True, text=True, timeout=1800)
            if pip.returncode != 0:
                lines = (pip.stderr or pip.stdout).strip().splitlines()
                return None, f"pip install fflib failed: {lines[-1] if lines else pip.returncode}"
    except (OSError, subprocess.SubprocessError) as e:
        return None, f"cannot make a virtualenv for fflib: {e}"
    return str(py), ""


def _fflearn_time(args: argparse.Namespace, target: float) -> dict[str, Any]:
    cfg = c.bench_config(_df_args(args), args.df_method, "mlp", limit_test=args.limit_test)
    trainer = c.make_trainer(cfg)
    r = time_to_target(trainer, target, args.eval_every_steps, args.max_seconds)
    r.pop("curve")
    return {"fflearn_method": args.df_method, "fflearn_hidden": cfg.hidden, "fflearn_batch_size": cfg.batch_size,
            **{f"fflearn_{k}": v for k, v in r.items()}}


def _df_args(args: argparse.Namespace) -> argparse.Namespace:
    """The fflearn side's options in the form bench_config takes."""
    return argparse.Namespace(dataset="mnist", data_dir=args.data_dir, width=None, batch_size=None,
                              limit_train=args.limit_train, device=args.device, threads=args.threads,
                              seed=args.seed, bf16=False, compile=False, channels_last=False,
                              overrides=args.overrides)


def measure(args: argparse.Namespace) -> dict[str, Any]:
    c.setup_threads(args.threads)
    device = c.resolve(args.device)
    peers = c.split_list(args.peers, "peers")
    unknown = [p for p in peers if p not in PEERS]
    if unknown:
        raise ConfigError(f"unknown peer(s) {', '.join(unknown)}; choose from {', '.join(PEERS)}")
    for name in ("peer_steps", "peer_train", "fflib_epochs", "fflib_limit_train", "eval_every_steps"):
        c.check_positive(name.replace("_", "-"), getattr(args, name))
    c.check_positive("max-seconds", args.max_seconds)
    if not 0 < args.peer_target <= 1:
        raise ConfigError(f"--peer-target must be an accuracy in (0, 1]; got {args.peer_target}")
    c.bench_config(_df_args(args), args.df_method, "mlp")  # a bad method or --set fails before the peers run
    peers_dir = Path(args.peers_dir) if args.peers_dir else default_peers_dir()
    common = ["--device", str(device), "--threads", str(torch.get_num_threads())]
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="fflearn-peers-") as tmp:
        data = _data_file(args.data_dir, args.limit_test, Path(tmp))
        for peer in peers:
            row: dict[str, Any] = {"peer": peer, "method": peer, "model": "mlp", "dataset": "mnist"}
            script = peers_dir / ("mpezeshki_ff.py" if peer == "mpezeshki" else "fflib_ff.py")
            out, why = None, ""
            if not script.exists():
                why = f"peer script {script} not found (run from a source checkout or give --peers-dir)"
            elif peer == "mpezeshki":
                out, why = _subprocess([sys.executable, str(script), "--data", str(data), "--steps", "1000",
                                        "--measure-steps", str(args.peer_steps), "--train-size", str(args.peer_train),
                                        *common], args.threads, args.timeout)
            else:
                row["fflib_install"] = f"pip install {'--no-deps ' if args.fflib_install == 'no-deps' else ''}fflib"
                venv = Path(args.fflib_venv) if args.fflib_venv else Path(tmp) / "fflib-venv"
                py, why = _fflib_python(venv, args.fflib_install)
                if py:
                    out, why = _subprocess([py, str(script), "--data", str(data), "--epochs", str(args.fflib_epochs),
                                            "--limit-train", str(args.fflib_limit_train),
                                            "--hidden", args.fflib_hidden, *common], args.threads, args.timeout)
            if out is None:
                row.update(status=f"failed: {why}")
                results.append(row)
                continue
            target = args.peer_target if peer == "mpezeshki" else out["test_accuracy"]
            row.update(status="ok", peer_result=out, peer_seconds=out["extrapolated_seconds"],
                       peer_seconds_measured=out["measured_seconds"], peer_extrapolated=bool(
                           out.get("extrapolated", out.get("epochs_measured", 0) < out.get("full_epochs", 0))),
                       peer_accuracy=out["test_accuracy"], target=target)
            if peer == "fflib":
                # fflib's own measured run is the reference: its time to its own accuracy
                row["peer_seconds"] = out["measured_seconds"]
                row["peer_seconds_full_recipe"] = out["extrapolated_seconds"]
            row.update(_fflearn_time(args, target))
            ff_s = row["fflearn_seconds"]
            row["speedup"] = row["peer_seconds"] / ff_s if ff_s else None
            results.append(row)
    return {"results": results, **c.machine_info(device)}


def run(args: argparse.Namespace) -> int:
    payload = measure(args)
    print(f"peers on {payload['device']}, {payload['threads']} threads, torch {payload['torch']}")
    rows = []
    for r in payload["results"]:
        row = dict(r)
        if r["status"] == "ok":
            pr = r["peer_result"]
            if r["peer"] == "mpezeshki":
                row["peer_run"] = (f"{pr['measured_steps_per_layer']}/{pr['steps_per_layer']} steps/layer "
                                   f"{pr['measured_seconds']:.1f} s, acc {100 * pr['test_accuracy']:.2f}%")
                row["peer_time"] = f"{r['peer_seconds']:.1f} s" + (" (extrapolated)" if r["peer_extrapolated"] else "")
            else:
                row["peer_run"] = (f"{pr['epochs_measured']} epoch(s) {pr['measured_seconds']:.1f} s, "
                                   f"acc {100 * pr['test_accuracy']:.2f}%")
                row["peer_time"] = f"{r['peer_seconds']:.1f} s (measured)"
            row["ff_time"] = (f"{r['fflearn_seconds']:.1f} s ({r['fflearn_steps']} steps)" if r["fflearn_reached"]
                              else f"not reached in {r['fflearn_train_seconds_run']:.0f} s")
        else:
            row["peer_run"] = r["status"]
        rows.append(row)
    c.print_table(rows, [
        ("peer", "peer", str), ("peer_run", "peer run", str), ("target", "target acc", pct),
        ("peer_time", "peer time to target", str), ("ff_time", "fflearn time to target", str),
        ("speedup", "speedup", lambda v: f"{v:,.0f}x"),
    ])
    write_json(payload, args.json)
    return 0
