"""Tests of fflearn.data.augment: batched, vectorised, reproducible augmentation."""

from __future__ import annotations

import time

import pytest
import torch
import torch.nn.functional as F

from fflearn.data.augment import Augment, random_crop, random_flip, random_rotation, rotate
from fflearn.errors import ConfigError


def _batch(n: int = 8, c: int = 3, h: int = 10, w: int = 12, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, c, h, w, generator=torch.Generator().manual_seed(seed))


def test_crop_padding_zero_is_identity() -> None:
    x = _batch()
    assert torch.equal(random_crop(x, padding=0), x)


def test_crop_is_shifted_copy() -> None:
    x = _batch(n=64)
    p = 3
    out = random_crop(x, padding=p, generator=torch.Generator().manual_seed(1))
    assert out.shape == x.shape and out.dtype == x.dtype
    padded = F.pad(x, (p, p, p, p))
    h, w = x.shape[2:]
    offsets = set()
    for i in range(x.shape[0]):  # each sample equals exactly one window of its padded image
        hits = [
            (dy, dx)
            for dy in range(2 * p + 1)
            for dx in range(2 * p + 1)
            if torch.equal(out[i], padded[i, :, dy : dy + h, dx : dx + w])
        ]
        assert len(hits) == 1
        offsets.add(hits[0])
    assert len(offsets) > 10  # offsets differ per sample


def test_crop_one_sample_against_manual_slicing() -> None:
    x = _batch(n=1)
    g = torch.Generator().manual_seed(5)
    dy, dx = torch.randint(0, 9, (1, 2), generator=torch.Generator().manual_seed(5))[0].tolist()
    out = random_crop(x, padding=4, generator=g)
    manual = F.pad(x, (4, 4, 4, 4))[0, :, dy : dy + 10, dx : dx + 12]
    assert torch.equal(out[0], manual)


def test_crop_reproducible_and_integer_dtype() -> None:
    x = (_batch() * 255).to(torch.uint8)
    a = random_crop(x, 2, torch.Generator().manual_seed(3))
    b = random_crop(x, 2, torch.Generator().manual_seed(3))
    assert a.dtype == torch.uint8 and torch.equal(a, b)


def test_rotation_zero_is_identity() -> None:
    x = _batch()
    assert torch.equal(random_rotation(x, degrees=0), x)
    assert torch.allclose(rotate(x, torch.zeros(x.shape[0])), x, atol=1e-6)


def test_rotation_90_matches_rot90() -> None:
    x = _batch(h=9, w=9)
    out = rotate(x, torch.full((x.shape[0],), 90.0))
    assert torch.allclose(out, torch.rot90(x, 1, dims=(2, 3)), atol=1e-5)  # counter-clockwise


def test_random_rotation_shape_range_and_fill() -> None:
    x = torch.ones(16, 1, 20, 20)
    out = random_rotation(x, degrees=30, generator=torch.Generator().manual_seed(0))
    assert out.shape == x.shape and out.dtype == x.dtype
    assert out.min() >= 0 and out.max() <= 1 + 1e-6
    assert (out[:, :, 0, 0] < 1).any()  # corners filled with zeros for nonzero angles
    assert torch.allclose(out[:, :, 10, 10], torch.ones(16, 1), atol=1e-5)  # centre stays


def test_rotation_rejects_integers() -> None:
    with pytest.raises(TypeError):
        rotate(torch.zeros(1, 1, 4, 4, dtype=torch.uint8), torch.zeros(1))


def test_flip_flips() -> None:
    x = _batch(n=200)
    out = random_flip(x, generator=torch.Generator().manual_seed(0))
    assert out.shape == x.shape and out.dtype == x.dtype
    flipped = torch.tensor([torch.equal(out[i], x[i].flip(-1)) for i in range(len(x))])
    kept = torch.tensor([torch.equal(out[i], x[i]) for i in range(len(x))])
    assert torch.all(flipped ^ kept)
    assert 60 < int(flipped.sum()) < 140


def test_augment_identity_and_combination() -> None:
    x = _batch()
    aug = Augment()
    assert not aug.enabled and aug(x) is x
    full = Augment(crop_padding=2, rotation=10, flip=True)
    assert full.enabled and "crop_padding=2" in repr(full)
    a = full(x, torch.Generator().manual_seed(7))
    b = full(x, torch.Generator().manual_seed(7))
    assert a.shape == x.shape and a.dtype == x.dtype and torch.equal(a, b)
    assert not torch.equal(a, x)


@pytest.mark.parametrize("kwargs", [{"crop_padding": -1}, {"crop_padding": 1.5}, {"rotation": -5}, {"rotation": "x"}])
def test_augment_rejects_bad_config(kwargs: dict) -> None:
    with pytest.raises(ConfigError):
        Augment(**kwargs)


def test_global_rng_is_used_without_generator() -> None:
    """Without a generator the global RNG drives the draws: the same seed gives the same batch, a
    different seed another one, and the global stream moves on (it was used, not ignored)."""
    x = _batch()
    aug = Augment(crop_padding=2, rotation=5, flip=True)
    torch.manual_seed(11)
    a = aug(x)
    after = torch.get_rng_state()
    torch.manual_seed(11)
    b = aug(x)
    torch.manual_seed(12)
    c = aug(x)
    torch.manual_seed(11)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert not torch.equal(after, torch.get_rng_state())


def test_batch_of_512_is_fast() -> None:
    x = torch.rand(512, 3, 32, 32)
    aug = Augment(crop_padding=4, rotation=15, flip=True)
    aug(x[:8])  # warm up
    start = time.perf_counter()
    out = aug(x, torch.Generator().manual_seed(0))
    assert time.perf_counter() - start < 2.0
    assert out.shape == x.shape and out.dtype == torch.float32


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_with_cpu_generator() -> None:
    x = _batch().cuda()
    out = Augment(crop_padding=2, rotation=5, flip=True)(x, torch.Generator().manual_seed(0))
    assert out.device == x.device and out.shape == x.shape
