"""Shared test fixtures: where the real data lives, and a small real subset of it.

The tests that need real data train on MNIST where it is present (``$FFLEARN_TEST_DATA``, else
``../shared/data`` beside the checkout), else on Fashion-MNIST (same shapes, ten classes; the
Debian package ``dataset-fashion-mnist`` that ``scripts/setup.sh`` installs), so a newcomer's
test run checks the same behaviour CI does. ``DATASET`` and ``DATA_ROOT`` name the one chosen.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

torch.set_num_threads(min(2, torch.get_num_threads()))

REPO = Path(__file__).resolve().parents[1]
# CI has the shared data beside the checkout; FFLEARN_TEST_DATA points elsewhere if needed
SHARED = Path(os.environ.get("FFLEARN_TEST_DATA", REPO.parent / "shared" / "data"))


def _pick() -> tuple[Path | None, str]:
    """(data root, dataset name) of the real data the tests train on."""
    from fflearn.data import find_data_dir

    if find_data_dir("mnist", SHARED) is not None:
        return SHARED, "mnist"
    for root in (SHARED, None):
        folder = find_data_dir("fashion-mnist", root)
        if folder is not None:
            return (root if root is not None else folder.parent), "fashion-mnist"
    return None, "mnist"


DATA_ROOT, DATASET = _pick()


def real_data_root() -> Path:
    if DATA_ROOT is None:
        pytest.skip(f"no real data: neither MNIST at {SHARED}/mnist (set FFLEARN_TEST_DATA) nor Fashion-MNIST "
                    "(bash scripts/setup.sh installs it)")
    return DATA_ROOT


@pytest.fixture(scope="session")
def data_root() -> Path:
    return real_data_root()


@pytest.fixture(scope="session")
def real_small(data_root: Path):
    """The first 2000 training and 1000 test images of the real dataset (MNIST, or Fashion-MNIST)."""
    from fflearn.data import limit, load_dataset

    return limit(load_dataset(DATASET, data_root, download=False), 2000, 1000)


@pytest.fixture(scope="session")
def mnist_root() -> Path:
    """The data root holding the real MNIST, for tests of MNIST itself (its files, its checksums)."""
    if DATASET != "mnist":
        pytest.skip(f"real MNIST is absent at {SHARED}/mnist (set FFLEARN_TEST_DATA); this test is about MNIST itself")
    assert DATA_ROOT is not None
    return DATA_ROOT
