"""Shared test fixtures: where the real data lives, and a small real MNIST subset."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

torch.set_num_threads(min(2, torch.get_num_threads()))

REPO = Path(__file__).resolve().parents[1]
# CI has the shared data beside the checkout; FFLEARN_TEST_DATA points elsewhere if needed
DATA_ROOT = Path(os.environ.get("FFLEARN_TEST_DATA", REPO.parent / "shared" / "data"))


def real_data_root() -> Path:
    if not (DATA_ROOT / "mnist").exists():
        pytest.skip(f"real MNIST is absent at {DATA_ROOT}/mnist (set FFLEARN_TEST_DATA)")
    return DATA_ROOT


@pytest.fixture(scope="session")
def data_root() -> Path:
    return real_data_root()


@pytest.fixture(scope="session")
def mnist_small(data_root: Path):
    """The first 2000 training and 1000 test images of the real MNIST."""
    from fflearn.data import limit as _limit
    from fflearn.data import load_dataset

    return _limit(load_dataset("mnist", data_root, download=False), 2000, 1000)
