"""fflearn: Forward-Forward-family local learning in PyTorch.

Vanilla FF, SymBa, the Trifecta, Distance-Forward (DF-O, DF-R), local classifier proxies and
backprop under one API::

    import fflearn
    cfg = fflearn.make_config(method="df", dataset="mnist", epochs=1)
    summary = fflearn.train(cfg)
    model = fflearn.load(summary["run_dir"])   # a torch.nn.Module: model(images).argmax(1)
"""

from __future__ import annotations

__version__ = "0.2.0"

# importing the ingredient modules fills the registries
from . import data, goodness, labels, losses, methods, models, negatives, schedule, schemes  # noqa: E402,F401
from .api import load, make_config, resume, train  # noqa: E402
from .callbacks import Callback  # noqa: E402
from .config import Config  # noqa: E402

__all__ = ["Callback", "Config", "__version__", "load", "make_config", "resume", "train"]
