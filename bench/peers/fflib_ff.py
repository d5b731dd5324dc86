"""Runs PyPI ``fflib`` (github mitkonikov/ff) on MNIST for fflearn's peer benchmark.

This script calls fflib's own classes: ``FFLinear`` layers (each with its own Adam and its
goodness loss), ``FFNet.run_train_combined``, the ``TryAllClasses`` probe and the ``FFSuite``
training/test loop. It supplies only the data: fflib's ``FFMNIST`` loader needs torchvision, so
this script hands fflib's suite an in-memory data processor with the same behaviour as that
loader in fflib's MNIST example (pixels /255, flattened, the one-hot label concatenated as 10
extra inputs, negatives with a uniformly random wrong label, batch 128, shuffled). The network
is that example's: 794-2000-2000, threshold 20, lr 0.02, 60 epochs.

It must be run with a Python that has fflib installed (``fflearn bench peers`` makes a
temporary virtualenv); it writes its timings and accuracy as JSON.
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from torch.nn.functional import one_hot
from torch.utils.data import DataLoader, TensorDataset


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    from fflib.nn.ff_linear import FFLinear
    from fflib.nn.ff_net import FFNet
    from fflib.probes.one_hot import TryAllClasses
    from fflib.utils.data import FFDataProcessor
    from fflib.utils.ff_suite import FFSuite

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True)
    p.add_argument("--epochs", type=int, default=1, help="epochs to run and time")
    p.add_argument("--full-epochs", type=int, default=60, help="epochs of fflib's example (extrapolation)")
    p.add_argument("--limit-train", type=int, default=54000, help="training images (the example keeps 90%%)")
    p.add_argument("--hidden", default="2000,2000")
    p.add_argument("--threshold", type=float, default=20.0)
    p.add_argument("--lr", type=float, default=0.02)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--json", default=None)
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    device = torch.device(a.device)
    d = torch.load(a.data, weights_only=True)
    x_tr = d["train_x"][: a.limit_train].float().div(255).flatten(1)
    y_tr = d["train_y"][: a.limit_train]
    x_te, y_te = d["test_x"].float().div(255).flatten(1), d["test_y"]

    class InMemory(FFDataProcessor):
        """The data side of fflib's FFMNIST (RANDOM negatives), without torchvision."""

        def __init__(self) -> None:
            self.train = DataLoader(TensorDataset(x_tr, y_tr), batch_size=a.batch_size, shuffle=True)
            self.test = DataLoader(TensorDataset(x_te, y_te), batch_size=a.batch_size)

        def get_train_loader(self):  # type: ignore[no-untyped-def]
            return self.train

        def get_val_loader(self):  # type: ignore[no-untyped-def]
            return None

        def get_test_loader(self):  # type: ignore[no-untyped-def]
            return self.test

        def get_all_loaders(self):  # type: ignore[no-untyped-def]
            return {"train": self.train, "val": None, "test": self.test}

        def encode_output(self, y: torch.Tensor) -> torch.Tensor:
            return one_hot(y, num_classes=10).float()

        def combine_to_input(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            return torch.cat((x, y), 1)

        def generate_negative(self, x, y, net):  # type: ignore[no-untyped-def]
            wrong = (y + torch.randint(1, 10, y.shape, device=y.device)) % 10  # uniform over the 9 wrong labels
            return x, one_hot(wrong, num_classes=10).float()

    widths = [x_tr.shape[1] + 10] + [int(h) for h in a.hidden.split(",")]
    layers = [FFLinear(i, o, loss_threshold=a.threshold, lr=a.lr, device=device) for i, o in zip(widths, widths[1:], strict=False)]
    net = FFNet(layers, device)
    probe = TryAllClasses(lambda x, y: net(torch.cat((x, y), 1)), output_classes=10)
    suite = FFSuite(net, probe, InMemory(), device)
    epoch_seconds = []
    for _ in range(a.epochs):
        sync(device)
        t0 = time.perf_counter()
        suite.run_train_epoch(validate=False)
        sync(device)
        epoch_seconds.append(time.perf_counter() - t0)
    test_acc = float(suite.test())
    import fflib

    out = {
        "peer": "fflib", "fflib_version": getattr(fflib, "__version__", "?"), "hidden": widths[1:],
        "train_size": len(y_tr), "epochs_measured": a.epochs, "epoch_seconds": epoch_seconds,
        "measured_seconds": sum(epoch_seconds), "full_epochs": a.full_epochs,
        "extrapolated_seconds": sum(epoch_seconds) / a.epochs * a.full_epochs,
        "test_accuracy": test_acc, "device": str(device), "threads": torch.get_num_threads(),
        "torch": torch.__version__,
    }
    print(json.dumps(out))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=2)


if __name__ == "__main__":
    main()
