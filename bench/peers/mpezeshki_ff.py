"""A RE-IMPLEMENTATION of the FF recipe of github mpezeshki/pytorch_forward_forward, written for
fflearn's benchmarks from that repository's published description (fflearn's
shared/REFERENCE.md section 3). It is NOT that repository's code, which could not be fetched
here; it follows the described algorithm step by step so that its time and accuracy stand for
the peer's on this machine:

* data: MNIST, pixels /255 then standardised with mean 0.1307 and std 0.3081, flattened; one
  full batch of 50,000 shuffled training images;
* label: Hinton's overlay, the first 10 pixels zeroed and pixel y set to the batch's maximum;
  negatives take the label of a random permutation of the batch (the known bug: it can be the
  true label, kept on purpose);
* net 784-500-500, each layer: x / (||x|| + 1e-4), linear, ReLU; goodness = mean of squares;
* training: layer by layer, 1000 full-batch Adam steps per layer (lr 0.03) on
  log(1 + exp([threshold - g_pos, g_neg - threshold])).mean(), threshold 2; a trained layer's
  outputs (detached) are the next layer's inputs;
* prediction: for each of the 10 labels, overlay it and sum the goodness of all layers; argmax.
  Published MNIST test error: 6.84% (accuracy 93.16%).

``--measure-steps S`` runs only S of the steps of each layer and extrapolates the training time
linearly to ``--steps`` (the first step, which carries one-off costs, counted once; the others
from the mean of the measured later steps); the JSON says which figures are measured and which
extrapolated.

Usage: python mpezeshki_ff.py --data mnist.pt [--measure-steps 50] [--device cpu] [--json out.json]
where mnist.pt holds uint8 train_x, test_x (N, ...) and int64 train_y, test_y (``fflearn bench
peers`` writes it).
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from torch import nn


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def overlay(x: torch.Tensor, y: torch.Tensor | int) -> torch.Tensor:
    """Replace the first 10 pixels by a one-hot of y, at the height of the batch's brightest pixel."""
    x_ = x.clone()
    x_[:, :10] = 0.0
    x_[torch.arange(len(x), device=x.device), y] = x.max()
    return x_


class Layer(nn.Linear):
    def __init__(self, n_in: int, n_out: int, lr: float, threshold: float) -> None:
        super().__init__(n_in, n_out)
        self.opt = torch.optim.Adam(self.parameters(), lr=lr)
        self.threshold = threshold

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        direction = x / (x.norm(2, 1, keepdim=True) + 1e-4)
        return torch.relu(direction @ self.weight.t() + self.bias.unsqueeze(0))

    def train_steps(self, x_pos: torch.Tensor, x_neg: torch.Tensor, steps: int) -> list[float]:
        """Run ``steps`` Adam steps; returns the seconds of each (synchronised, for extrapolation)."""
        times = []
        for _ in range(steps):
            t0 = time.perf_counter()
            g_pos = self.forward(x_pos).pow(2).mean(1)
            g_neg = self.forward(x_neg).pow(2).mean(1)
            z = torch.cat([-g_pos + self.threshold, g_neg - self.threshold])
            loss = torch.log(1 + torch.exp(z)).mean()
            self.opt.zero_grad()
            loss.backward()
            self.opt.step()
            sync(x_pos.device)
            times.append(time.perf_counter() - t0)
        return times


@torch.no_grad()
def predict(layers: list[Layer], x: torch.Tensor) -> torch.Tensor:
    per_label = []
    for label in range(10):
        h = overlay(x, label)
        g = torch.zeros(len(x), device=x.device)
        for layer in layers:
            h = layer(h)
            g += h.pow(2).mean(1)
        per_label.append(g)
    return torch.stack(per_label, 1).argmax(1)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="torch file with uint8 train_x/test_x, int64 train_y/test_y")
    p.add_argument("--train-size", type=int, default=50000, help="full-batch size (default 50000)")
    p.add_argument("--hidden", default="500,500")
    p.add_argument("--steps", type=int, default=1000, help="Adam steps per layer of the recipe (default 1000)")
    p.add_argument("--measure-steps", type=int, default=None, help="run only this many steps per layer, extrapolate")
    p.add_argument("--lr", type=float, default=0.03)
    p.add_argument("--threshold", type=float, default=2.0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--json", default=None)
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    device = torch.device(a.device)
    d = torch.load(a.data, weights_only=True)

    def prep(u8: torch.Tensor) -> torch.Tensor:
        return ((u8.float() / 255 - 0.1307) / 0.3081).flatten(1).to(device)

    order = torch.randperm(len(d["train_y"]))[: a.train_size]  # one shuffled full batch
    x, y = prep(d["train_x"][order]), d["train_y"][order].to(device)
    x_te, y_te = prep(d["test_x"]), d["test_y"].to(device)
    steps = a.steps if a.measure_steps is None else min(a.measure_steps, a.steps)

    widths = [x.shape[1]] + [int(h) for h in a.hidden.split(",")]
    # built before the clock starts: the first Adam imports parts of torch (seconds, once per process)
    layers = [Layer(n_in, n_out, a.lr, a.threshold).to(device) for n_in, n_out in zip(widths, widths[1:], strict=False)]
    sync(device)
    t_start = time.perf_counter()
    x_pos = overlay(x, y)
    x_neg = overlay(x, y[torch.randperm(len(y), device=device)])
    layer_seconds, layer_extrapolated = [], []
    h_pos, h_neg = x_pos, x_neg
    for layer in layers:
        times = layer.train_steps(h_pos, h_neg, steps)
        layer_seconds.append(sum(times))
        # the first step carries one-off costs (allocations, lazy initialisation): it is counted
        # once, and the remaining steps of the recipe are extrapolated from the later steps' mean
        rest = times[1:] or times
        layer_extrapolated.append(times[0] + (a.steps - 1) * sum(rest) / len(rest))
        with torch.no_grad():
            h_pos, h_neg = layer(h_pos), layer(h_neg)
    sync(device)
    measured = time.perf_counter() - t_start
    other = measured - sum(layer_seconds)  # overlays and passing the data on: done once, not per step
    extrapolated = other + sum(layer_extrapolated)
    train_acc = float((predict(layers, x) == y).float().mean())
    test_acc = float((predict(layers, x_te) == y_te).float().mean())
    out = {
        "peer": "mpezeshki/pytorch_forward_forward",
        "implementation": "re-implementation from the published description (not the repository's code)",
        "hidden": widths[1:], "train_size": len(y), "steps_per_layer": a.steps, "measured_steps_per_layer": steps,
        "measured_seconds": measured, "layer_seconds": layer_seconds, "layer_extrapolated_seconds": layer_extrapolated,
        "extrapolated_seconds": extrapolated, "extrapolated": steps < a.steps,
        "train_accuracy": train_acc, "test_accuracy": test_acc,
        "device": str(device), "threads": torch.get_num_threads(), "torch": torch.__version__,
    }
    print(json.dumps(out))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=2)


if __name__ == "__main__":
    main()
