"""``fflearn experiment memory``: peak training memory of one step, per method (DF paper Fig. 4A).

Every method is built on the same architecture and fed the same random batch of the dataset's
shape; one training step of the real :class:`~fflearn.learner.Learner` runs (two for schemes whose
segments alternate between steps, e.g. the Trifecta's APL; the larger is kept).

On CUDA the caching allocator's ``max_memory_allocated`` is the peak. On CPU there is no such
counter, so fflearn counts what a training step must hold, device-independently:

* saved activations: every tensor autograd saves for backward is seen by a
  ``saved_tensors_hooks`` pack hook. It adds the bytes of the tensor's storage (storages shared by
  several saved tensors count once) and returns a handle whose finaliser subtracts them when autograd
  drops it, i.e. when the graph is freed. The peak of this live count is the activation memory:
  a local method frees each segment's graph before the next runs, so its peak is the largest
  segment's, while BP keeps the whole net's graph until its one backward;
* parameters and buffers; gradients (the peak of live ``.grad`` bytes, read just before every
  optimiser step: the learner frees a segment's gradients after stepping it); optimiser state
  (Adam: two tensors per parameter of each optimiser, after the step).

``peak_bytes`` is their sum: an upper bound on the simultaneous peak, without temporaries (the
gradient of activations in flight during backward, kernel workspaces, allocator slack).
"""

from __future__ import annotations

import argparse
import math
import time
import weakref
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

from ..cliargs import add_list, add_overrides, list_value
from ..config import coerce, parse_overrides
from ..console import format_table
from ..errors import ConfigError
from ..models import layer_storages, segment_bytes
from ..runfolder import write_json
from .figures import out_dir

MiB = 2**20


class _Handle:
    """What the pack hook returns: holds the saved tensor (so autograd's reference keeps it alive)."""

    __slots__ = ("tensor", "__weakref__")

    def __init__(self, tensor: torch.Tensor) -> None:
        self.tensor = tensor


class SavedTensorCounter:
    """Live bytes of tensors saved for backward, and their peak, while the context is active.

    ``exclude``: tensors not to count (parameters and buffers: autograd saves weights for the
    input gradient, but they are counted as parameters, not as activations).

    A handle holds its tensor, and a saved output holds the graph that holds the handle: that
    cycle is broken when backward releases the saved tensors (as every training step does); a
    graph that is never backpropagated is only freed by ``gc.collect()``.
    """

    def __init__(self, exclude: Iterable[torch.Tensor] = ()) -> None:
        self.exclude = {t.untyped_storage().data_ptr() for t in exclude}
        self.live: dict[int, list[int]] = {}  # storage address -> [bytes, number of live handles]
        self.current = 0
        self.peak = 0
        self._ctx: Any = None

    def reset_peak(self) -> None:
        self.peak = self.current

    def _pack(self, t: torch.Tensor) -> _Handle:
        h = _Handle(t)
        storage = t.untyped_storage()
        key, nbytes = storage.data_ptr(), storage.nbytes()
        if nbytes == 0 or key in self.exclude:
            return h
        entry = self.live.get(key)
        if entry is None:
            self.live[key] = [nbytes, 1]
            self.current += nbytes
            self.peak = max(self.peak, self.current)
        else:
            entry[1] += 1
        weakref.finalize(h, self._release, key)
        return h

    def _release(self, key: int) -> None:
        entry = self.live[key]
        entry[1] -= 1
        if entry[1] == 0:
            self.current -= entry[0]
            del self.live[key]

    @staticmethod
    def _unpack(h: _Handle) -> torch.Tensor:
        return h.tensor

    def __enter__(self) -> SavedTensorCounter:
        self._ctx = torch.autograd.graph.saved_tensors_hooks(self._pack, self._unpack)
        self._ctx.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._ctx.__exit__(*exc)


def tensor_bytes(tensors: Iterable[torch.Tensor]) -> int:
    """Bytes of the distinct storages of ``tensors``."""
    seen: dict[int, int] = {}
    for t in tensors:
        s = t.untyped_storage()
        seen[s.data_ptr()] = s.nbytes()
    return sum(seen.values())


def dataset_shape(dataset: str, data_dir: str | None = None) -> tuple[tuple[int, int, int], int]:
    """(C, H, W) and number of classes of a dataset, without loading the built-in ones."""
    from ..data import canonical_name, load_dataset

    known = {"mnist": ((1, 28, 28), 10), "fashion-mnist": ((1, 28, 28), 10), "cifar10": ((3, 32, 32), 10),
             "cifar100": ((3, 32, 32), 100), "svhn": ((3, 32, 32), 10)}
    name = canonical_name(dataset)
    if name in known:
        return known[name]
    if name == "imagenette":
        from ..data import imagenette

        s = imagenette.IMAGENETTE_SIZE
        return (3, s, s), 10
    ds = load_dataset(name, data_dir, download=False)  # a plugin dataset: its real shape
    return ds.input_shape, ds.num_classes


def _segment_limit(net: Any, scheme: Any, x: torch.Tensor, y: torch.Tensor) -> tuple[float, int, int]:
    """Architecture limit: the largest segment's saved activations over the whole layer stack's.

    Counted on the layers alone (no heads, losses or negative copies), batch as given: what any
    local scheme with these segments could at best save against BP on this net.
    """
    n = len(net.layers)
    segs = {(s.start, s.end) for step in (0, 1) for s in scheme.segments(step, n)}
    per_layer = layer_storages(net, x, y)
    total = segment_bytes(per_layer, 0, n)
    largest = max(segment_bytes(per_layer, a, b) for a, b in segs)
    return largest / total if total else math.nan, largest, total


def measure(method: str, model: str = "large", batch_size: int = 256, dataset: str | None = None,
            width: float | None = None, hidden: list[int] | None = None, device: str = "cpu",
            seed: int = 0, data_dir: str | None = None, **fields: Any) -> dict[str, Any]:
    """Memory of one training step of ``method`` (see the module docstring for what is counted);
    ``fields`` override other config fields (e.g. norm)."""
    from ..build import build
    from ..config import validate
    from ..methods import make_config
    from ..runtime import resolve_device

    dataset = dataset or ("mnist" if model == "mlp" else "cifar10")
    cfg = validate(make_config(method=method, model=model, dataset=dataset, batch_size=batch_size,
                               width=width, hidden=hidden, device=device, progress=False, bf16=False, **fields))
    dev = resolve_device(cfg.device)
    in_shape, k = dataset_shape(dataset, data_dir)
    torch.manual_seed(seed)
    c = in_shape[0]  # a random batch of standard normal "images": the statistics do not matter here
    parts = build(cfg, in_shape, k, torch.zeros(c), torch.ones(c), dev)
    net, learner = parts.net, parts.learner
    assert learner is not None
    net.train()
    scheme = learner.scheme
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch_size, *in_shape, generator=g).to(dev)
    y = torch.randint(0, k, (batch_size,), generator=g).to(dev)
    params = list(net.parameters())
    grad_peak = [0]

    def on_step(*_: Any) -> None:  # just before an optimiser step: this segment's grads are live
        grad_peak[0] = max(grad_peak[0], tensor_bytes(p.grad for p in params if p.grad is not None))

    hooks = [opt.register_step_pre_hook(on_step) for opt in learner.optimizers.values()]
    steps = [0] if scheme.static() else [0, 1]  # alternating segments: measure both parities
    cuda = dev.type == "cuda"
    if cuda:
        torch.cuda.synchronize(dev)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(dev)
    t0 = time.perf_counter()
    with SavedTensorCounter(params + list(net.buffers())) as counter:
        for s in steps:
            learner.step(x, y, s)
        left = counter.current  # all graphs freed: must be 0 (checked by the tests)
    if cuda:
        torch.cuda.synchronize(dev)
    seconds = time.perf_counter() - t0
    for h in hooks:
        h.remove()
    opt_tensors = [v for opt in learner.optimizers.values() for st in opt.state.values()
                   for v in st.values() if isinstance(v, torch.Tensor)]
    res: dict[str, Any] = {
        "method": method, "model": cfg.model, "dataset": dataset, "batch_size": batch_size,
        "scheme": cfg.scheme, "norm": cfg.norm, "label_mode": cfg.label_mode,
        "segments": [[s.start, s.end] for s in scheme.segments(0, len(net.layers))],
        "saved_activation_bytes_peak": counter.peak,
        "saved_bytes_left_after_step": left,
        "param_bytes": tensor_bytes(params),
        "buffer_bytes": tensor_bytes(net.buffers()),
        "grad_bytes": grad_peak[0],
        "optimizer_bytes": tensor_bytes(opt_tensors),
        "parameters": sum(p.numel() for p in params),
        "steps_measured": len(steps),
        "seconds": seconds,
    }
    counted = sum(res[key] for key in ("saved_activation_bytes_peak", "param_bytes", "buffer_bytes",
                                        "grad_bytes", "optimizer_bytes"))
    res["counted_peak_bytes"] = counted
    if cuda:
        res["cuda_peak_bytes"] = int(torch.cuda.max_memory_allocated(dev))
        res["peak_bytes"], res["measure"] = res["cuda_peak_bytes"], "cuda max_memory_allocated"
    else:
        res["peak_bytes"], res["measure"] = counted, "count (saved tensors + params + grads + optimiser)"
    limit, largest, total = _segment_limit(net, scheme, x, y)
    res["arch_limit"], res["largest_segment_saved_bytes"], res["all_layers_saved_bytes"] = limit, largest, total
    return res


def run_memory(methods: list[str], **kw: Any) -> list[dict[str, Any]]:
    """``measure`` every method; adds ``ratio_to_bp`` and ``saved_ratio_to_bp`` when bp is among them."""
    from ..registry import METHODS

    for m in methods:
        METHODS.get(m)  # unknown method: one clear error before any work
    results = [measure(m, **kw) for m in methods]
    bp = next((r for r in results if r["method"] == "bp"), None)
    for r in results:
        r["ratio_to_bp"] = r["peak_bytes"] / bp["peak_bytes"] if bp else None
        r["saved_ratio_to_bp"] = (r["saved_activation_bytes_peak"] / bp["saved_activation_bytes_peak"]
                                  if bp and bp["saved_activation_bytes_peak"] else None)
    return results


def plot_memory(results: list[dict[str, Any]], out: Path) -> list[Path]:
    """Stacked bars of the memory components per method (DF paper Fig. 4A), the ratio to BP on
    top; PNG and PDF."""
    from .figures import PALETTE, pyplot, save

    plt = pyplot()
    parts = [("saved_activation_bytes_peak", "saved activations (peak)"), ("param_bytes", "parameters"),
             ("buffer_bytes", "buffers"), ("grad_bytes", "gradients (peak)"), ("optimizer_bytes", "optimiser state")]
    fig, ax = plt.subplots(figsize=(max(5.5, 1.2 * len(results) + 3.5), 4.5))
    names = [r["method"] for r in results]
    bottom = [0.0] * len(results)
    for k, (key, label) in enumerate(parts):
        vals = [r[key] / MiB for r in results]
        ax.bar(names, vals, bottom=bottom, label=label, color=PALETTE[k])
        bottom = [b + v for b, v in zip(bottom, vals, strict=True)]
    for i, r in enumerate(results):
        top = r["peak_bytes"] / MiB
        txt = f"{top:.0f} MiB" + (f"\n{r['ratio_to_bp']:.0%} of BP" if r.get("ratio_to_bp") is not None else "")
        ax.text(i, max(top, bottom[i]), txt, ha="center", va="bottom", fontsize=8)
        if r["measure"].startswith("cuda"):
            ax.plot([i - 0.4, i + 0.4], [top, top], "k--", lw=1)
    r0 = results[0]
    ax.set_ylabel("MiB")
    ax.set_title(f"Memory of one training step\n{r0['model']} net, batch {r0['batch_size']}", fontsize=10)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.margins(y=0.2)
    return save(fig, out, f"memory-{r0['model']}-b{r0['batch_size']}")


def _mib(b: float) -> str:
    return f"{b / MiB:.1f}"


def plot_curve(curves: dict[str, list[dict[str, Any]]], out: Path) -> list[Path]:
    """Peak memory / BP's against batch size, one line per (model, method): the DF paper's Fig. 4A
    claim (below 40% of BP) across batch sizes; PNG and PDF."""
    from .figures import pyplot, save, style

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    k = 0
    for model, rows in curves.items():
        for method in dict.fromkeys(r["method"] for r in rows if r["method"] != "bp"):
            pts = sorted((r["batch_size"], r["ratio_to_bp"]) for r in rows if r["method"] == method)
            ax.plot([b for b, _ in pts], [v for _, v in pts], lw=1.8, label=f"{method}, {model}", **style(k))
            k += 1
    ax.axhline(0.4, color="grey", ls="--", lw=1, label="40% of BP (the DF paper's claim)")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("batch size")
    ax.set_ylabel("peak memory of one step / BP's")
    ax.set_title("Training memory against batch size", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save(fig, out, "memory-curve")


def cmd_memory(args: argparse.Namespace) -> int:

    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    if not methods:
        raise ConfigError("--methods needs at least one method name")
    batches = [coerce("batch_size", b) for b in list_value(args.batch_size)]  # same one-line errors as the config
    if any(b < 1 for b in batches):
        raise ConfigError(f"--batch-size must be at least 1; got {batches}")
    models = list_value(args.model)
    width = None if args.width is None else coerce("width", args.width)
    hidden = None if args.hidden is None else coerce("hidden", list_value(args.hidden))
    curves: dict[str, list[dict[str, Any]]] = {}
    payload: dict[str, Any] = {}
    for model in models:
        for batch in batches:
            results = run_memory(methods, model=model, batch_size=batch, dataset=args.dataset, width=width,
                                 hidden=hidden, device=args.device, data_dir=args.data_dir,
                                 **parse_overrides(args.overrides))
            curves.setdefault(model, []).extend(results)
            r0 = results[0]
            print(f"memory of one training step: model {model}, {r0['dataset']} shape, batch {batch}, "
                  f"{r0['measure'].split(' ')[0]} (MiB)")
            rows = [[r["method"], r["scheme"], _mib(r["saved_activation_bytes_peak"]),
                     _mib(r["param_bytes"] + r["buffer_bytes"]), _mib(r["grad_bytes"]), _mib(r["optimizer_bytes"]),
                     _mib(r["peak_bytes"]), None if r["ratio_to_bp"] is None else f"{r['ratio_to_bp']:.3f}",
                     None if r["saved_ratio_to_bp"] is None else f"{r['saved_ratio_to_bp']:.3f}",
                     f"{r['arch_limit']:.3f}"] for r in results]
            print(format_table(["method", "scheme", "saved act", "params", "grads", "optim", "peak", "ratio_to_bp",
                                "act_ratio", "arch_limit"], rows))
            if args.out and len(batches) == 1:  # figures only where asked for
                for p in plot_memory(results, out_dir(args.out)):
                    print(p)
            payload = {"results": results, "model": model, "batch_size": batch, "dataset": r0["dataset"],
                       "device": args.device, "measure": r0["measure"]}
    print("act_ratio: peak saved activations / BP's; arch_limit: largest segment's saved activations / "
          "the whole layer stack's (layers only)")
    if len(batches) > 1 or len(models) > 1:
        payload = {"curve": [r for rows in curves.values() for r in rows], "models": models, "batch_sizes": batches,
                   "methods": methods, "device": args.device, "measure": payload["measure"],
                   "rows": [{k: r[k] for k in ("model", "method", "batch_size", "ratio_to_bp", "saved_ratio_to_bp",
                                               "peak_bytes", "arch_limit")} for rows in curves.values() for r in rows]}
        if args.out:
            for p in plot_curve(curves, out_dir(args.out)):
                print(p)
    if args.json:
        write_json(payload, args.json)
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("memory", help="peak training memory of one step per method (DF Fig. 4A)")
    p.add_argument("--model", default="large",
                   help="mlp | small | large | a registered model; several (small,large) give a curve (default large)")
    p.add_argument("--methods", default="bp,ff,trifecta,df-o,df-r,lcp", help="comma-separated methods")
    p.add_argument("--batch-size", default="256",
                   help="batch size (default 256); several (64,128,256,512,1024) give the ratio-to-BP curve")
    p.add_argument("--dataset", help="input shape of this dataset (default cifar10; mnist for mlp)")
    p.add_argument("--width", help="channel scale of the conv nets (default 1)")
    add_list(p, "--hidden", "MLP widths, e.g. 1000 1000 1000")
    p.add_argument("--device", default="cpu", help="cpu (count) or cuda (allocator peak); default cpu")
    p.add_argument("--data-dir", help="data root (only for datasets whose shape fflearn does not know)")
    add_overrides(p, "other config fields of every method, e.g. --set block_size=3")
    p.add_argument("--json", metavar="FILE", help="write the figures as JSON")
    p.add_argument("--out", metavar="DIR", help="write the bar chart (PNG and PDF) into DIR (default: no figure)")
    p.set_defaults(func=cmd_memory)
