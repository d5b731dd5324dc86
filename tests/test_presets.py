"""Every preset in configs/ resolves to a valid config, one per DF paper result row (+ BP)."""

from __future__ import annotations

from pathlib import Path

import pytest

from fflearn.api import make_config
from fflearn.config import validate

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))


def test_a_preset_per_paper_row() -> None:
    names = {p.stem for p in CONFIGS}
    for ds in ("mnist", "fashion-mnist", "cifar10", "cifar100", "svhn", "imagenette"):
        for method in ("df-o", "df-r", "bp"):
            assert f"{method}-{ds}" in names


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_preset_is_valid(path: Path) -> None:
    cfg = validate(make_config(path))
    method, _, dataset = path.stem.partition("-") if not path.stem.startswith("df-") else ("-".join(path.stem.split("-")[:2]), "", "-".join(path.stem.split("-")[2:]))
    assert cfg.method == method and cfg.dataset == dataset
