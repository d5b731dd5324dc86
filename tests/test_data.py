"""Tests of fflearn.data: real datasets where present, tiny real-format files everywhere.

Real data is read from $FFLEARN_TEST_DATA (default: ../shared/data next to the repository, as
on CI) and Fashion-MNIST from /usr/share/datasets/fashion-mnist; tests skip with a reason
where absent. No test touches the network: urlopen is replaced in every test.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import pickle
import shutil
from pathlib import Path
from typing import Any
from urllib.error import URLError

import numpy as np
import pytest
import torch

import fakes
import fflearn.data as fdata
from fflearn.data import Dataset, data_roots, find_data_dir, load_dataset, locate, read_idx
from fflearn.data import download as dl
from fflearn.data import imagenette as imnette
from fflearn.errors import ConfigError, DataError
from fflearn.registry import DATASETS

TEST_DATA = Path(os.environ.get("FFLEARN_TEST_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data")
FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No network, no real user cache, no system-wide data roots unless a test asks for them."""

    def no_network(*args: object, **kwargs: object) -> None:
        raise URLError("network disabled in tests")

    monkeypatch.setattr(dl, "urlopen", no_network)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    monkeypatch.delenv("FFLEARN_DATA", raising=False)
    monkeypatch.setattr(locate, "STANDARD_ROOTS", [])


def _need(path: Path, what: str, hint: str = "set FFLEARN_TEST_DATA to the shared data folder") -> None:
    if not path.exists():
        pytest.skip(f"{what} absent at {path} ({hint})")


def _assert_round_trip(ds: Dataset, arrays: fakes.Arrays) -> None:
    train_x, train_y, test_x, test_y = arrays
    assert ds.train_x.dtype == torch.uint8 and ds.train_y.dtype == torch.int64
    assert ds.train_x.is_contiguous() and ds.test_x.is_contiguous()
    assert torch.equal(ds.train_x, torch.from_numpy(train_x))
    assert torch.equal(ds.train_y, torch.from_numpy(train_y))
    assert torch.equal(ds.test_x, torch.from_numpy(test_x))
    assert torch.equal(ds.test_y, torch.from_numpy(test_y))


# -- real datasets ---------------------------------------------------------------------------


def test_real_mnist() -> None:
    _need(TEST_DATA / "mnist", "MNIST")
    ds = load_dataset("mnist", TEST_DATA, download=False)
    assert ds.train_x.shape == (60000, 1, 28, 28) and ds.test_x.shape == (10000, 1, 28, 28)
    assert ds.train_y.shape == (60000,) and ds.test_y.shape == (10000,)
    assert int(ds.train_y.min()) == 0 and int(ds.train_y.max()) == 9
    assert ds.train_y.bincount().tolist()[:3] == [5923, 6742, 5958]
    assert ds.test_y.bincount().tolist()[:3] == [980, 1135, 1032]
    assert ds.label == "MNIST" and ds.num_classes == 10
    mean, std = ds.mean_std()
    assert mean.shape == (1,) and mean.dtype == torch.float32
    assert abs(mean.item() - 0.1307) < 1e-3 and abs(std.item() - 0.3081) < 1e-3


def test_real_fashion_mnist(monkeypatch: pytest.MonkeyPatch) -> None:
    _need(FASHION_DIR, "Fashion-MNIST", "apt-get install dataset-fashion-mnist")
    monkeypatch.setattr(locate, "STANDARD_ROOTS", [FASHION_DIR.parent])
    ds = load_dataset("fmnist", download=False)  # found in the standard place
    assert ds.name == "fashion-mnist" and ds.label == "Fashion-MNIST"
    assert ds.train_x.shape == (60000, 1, 28, 28) and ds.test_x.shape == (10000, 1, 28, 28)
    assert ds.train_y.bincount().tolist() == [6000] * 10
    assert ds.test_y.bincount().tolist() == [1000] * 10
    assert ds.classes[0] == "T-shirt/top" and ds.classes[9] == "Ankle boot"


def test_real_cifar10() -> None:
    _need(TEST_DATA / "cifar10", "CIFAR-10")
    ds = load_dataset("cifar-10", TEST_DATA, download=False)
    assert ds.train_x.shape == (50000, 3, 32, 32) and ds.test_x.shape == (10000, 3, 32, 32)
    assert ds.train_y.bincount().tolist() == [5000] * 10
    assert ds.test_y.bincount().tolist() == [1000] * 10
    assert ds.classes[0] == "airplane" and ds.classes[9] == "truck"
    assert ds.label == "CIFAR-10 (JPEG-derived copy)"  # from PROVENANCE.txt
    mean, std = ds.mean_std()
    assert mean.shape == (3,) and torch.all((mean > 0.4) & (mean < 0.55))
    assert torch.all((std > 0.2) & (std < 0.3))


def test_real_cifar10_copy_recognised_without_provenance(tmp_path: Path) -> None:
    src = TEST_DATA / "cifar10" / "cifar-10-batches-bin"
    _need(src, "CIFAR-10")
    dst = tmp_path / "data" / "cifar-10-batches-bin"
    dst.mkdir(parents=True)
    for f in src.iterdir():
        (dst / f.name).symlink_to(f)
    ds = load_dataset("cifar10", tmp_path / "data", download=False)
    assert ds.label == "CIFAR-10 (JPEG-derived copy)"  # by its checksum


def test_env_var_points_at_real_data(monkeypatch: pytest.MonkeyPatch) -> None:
    _need(TEST_DATA / "mnist", "MNIST")
    monkeypatch.setenv("FFLEARN_DATA", str(TEST_DATA))
    assert find_data_dir("mnist") == TEST_DATA / "mnist" / "raw"


# -- lookup ----------------------------------------------------------------------------------


def test_lookup_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    explicit, env, system = tmp_path / "explicit", tmp_path / "env", tmp_path / "system"
    cache = tmp_path / "xdg-cache" / "fflearn"
    monkeypatch.setenv("FFLEARN_DATA", str(env))
    monkeypatch.setattr(locate, "STANDARD_ROOTS", [system])
    assert data_roots() == [env, cache, system]
    assert data_roots(explicit) == [explicit]  # --data-dir is authoritative
    for i, root in enumerate([system, cache, env]):
        fakes.write_mnist(root / "mnist" / "raw", seed=i)
        ds = load_dataset("mnist", download=False)
        assert ds.source == str(root / "mnist" / "raw")  # the most specific one wins
    with pytest.raises(DataError, match=f"searched: {explicit}\\)") as info:  # not silently another copy
        load_dataset("mnist", explicit, download=False)
    assert "train-images-idx3-ubyte.gz" in str(info.value)  # names the files expected there
    fakes.write_mnist(explicit / "mnist" / "raw", seed=9)
    assert load_dataset("mnist", explicit, download=False).source == str(explicit / "mnist" / "raw")


def test_cache_dir_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert locate.cache_dir() == Path.home() / ".cache" / "fflearn"


@pytest.mark.parametrize("rel", ["mnist/raw", "mnist", "MNIST/raw", "MNIST"], ids=lambda r: r.replace("/", "-"))
def test_mnist_layouts(tmp_path: Path, rel: str) -> None:
    arrays = fakes.write_mnist(tmp_path / "root" / rel)
    _assert_round_trip(load_dataset("mnist", tmp_path / "root", download=False), arrays)


def test_data_dir_may_point_into_the_layout(tmp_path: Path) -> None:
    arrays = fakes.write_mnist(tmp_path / "mnist" / "raw")
    for d in (tmp_path / "mnist", tmp_path / "mnist" / "raw"):
        _assert_round_trip(load_dataset("mnist", d, download=False), arrays)


@pytest.mark.parametrize("rel", ["fashion-mnist", "FashionMNIST/raw"])
def test_fashion_layouts(tmp_path: Path, rel: str) -> None:
    arrays = fakes.write_mnist(tmp_path / rel, seed=3)
    ds = load_dataset("fashion_mnist", tmp_path, download=False)
    _assert_round_trip(ds, arrays)
    assert ds.label == "Fashion-MNIST (non-upstream copy)"  # checksums differ from upstream


def test_mnist_does_not_pick_up_fashion(tmp_path: Path) -> None:
    fakes.write_mnist(tmp_path / "fashion-mnist")
    with pytest.raises(DataError):
        load_dataset("mnist", tmp_path, download=False)


# -- IDX -------------------------------------------------------------------------------------


@pytest.mark.parametrize("gz", [True, False], ids=["gzip", "plain"])
def test_idx_round_trip(tmp_path: Path, gz: bool) -> None:
    arrays = fakes.write_mnist(tmp_path / "mnist", gz=gz, seed=1)
    ds = load_dataset("mnist", tmp_path, download=False)
    _assert_round_trip(ds, arrays)
    assert ds.train_x.shape == (6, 1, 28, 28) and ds.classes == [str(i) for i in range(10)]
    assert ds.label == "MNIST (non-upstream copy)"


def test_idx_torchvision_dotted_names(tmp_path: Path) -> None:
    folder = tmp_path / "MNIST" / "raw"
    arrays = fakes.write_mnist(folder, gz=False)
    for f in folder.iterdir():  # upstream's own spelling: train-images.idx3-ubyte
        f.rename(folder / f.name.replace("-idx", ".idx"))
    _assert_round_trip(load_dataset("mnist", tmp_path, download=False), arrays)


def test_read_idx_generic(tmp_path: Path) -> None:
    a = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    (tmp_path / "a.idx").write_bytes(fakes.idx_bytes(a))
    got, md5 = read_idx(tmp_path / "a.idx")
    assert np.array_equal(got, a) and md5 == hashlib.md5(fakes.idx_bytes(a)).hexdigest()


def _mnist_file(tmp_path: Path, name: str, gz: bool = True) -> Path:
    fakes.write_mnist(tmp_path / "mnist", gz=gz)
    return tmp_path / "mnist" / (name + (".gz" if gz else ""))


def _load_error(tmp_path: Path, name: str = "mnist") -> str:
    with pytest.raises(DataError) as info:
        load_dataset(name, tmp_path, download=False)
    return str(info.value)


def test_idx_truncated(tmp_path: Path) -> None:
    f = _mnist_file(tmp_path, "train-images-idx3-ubyte", gz=False)
    f.write_bytes(f.read_bytes()[:-100])
    msg = _load_error(tmp_path)
    assert "train-images-idx3-ubyte" in msg and "truncated" in msg


def test_idx_extra_bytes(tmp_path: Path) -> None:
    f = _mnist_file(tmp_path, "t10k-labels-idx1-ubyte", gz=False)
    f.write_bytes(f.read_bytes() + b"\0")
    assert "t10k-labels-idx1-ubyte" in _load_error(tmp_path)


def test_idx_bad_magic(tmp_path: Path) -> None:
    f = _mnist_file(tmp_path, "train-labels-idx1-ubyte")
    raw = bytearray(gzip.decompress(f.read_bytes()))
    raw[0:4] = b"\x00\x00\x09\x99"
    f.write_bytes(gzip.compress(bytes(raw)))
    msg = _load_error(tmp_path)
    assert "train-labels-idx1-ubyte.gz" in msg and "magic" in msg


def test_idx_images_and_labels_swapped(tmp_path: Path) -> None:
    fakes.write_mnist(tmp_path / "mnist")
    d = tmp_path / "mnist"
    shutil.copy(d / "t10k-labels-idx1-ubyte.gz", d / "t10k-images-idx3-ubyte.gz")
    assert "t10k-images-idx3-ubyte.gz" in _load_error(tmp_path)


def test_idx_label_out_of_range(tmp_path: Path) -> None:
    f = _mnist_file(tmp_path, "t10k-labels-idx1-ubyte")
    raw = bytearray(gzip.decompress(f.read_bytes()))
    raw[-1] = 10
    f.write_bytes(gzip.compress(bytes(raw)))
    msg = _load_error(tmp_path)
    assert "t10k-labels-idx1-ubyte.gz" in msg and "out of range" in msg


def test_idx_count_mismatch(tmp_path: Path) -> None:
    fakes.write_mnist(tmp_path / "mnist", n_train=6)
    (tmp_path / "mnist" / "train-labels-idx1-ubyte.gz").write_bytes(
        gzip.compress(fakes.idx_bytes(np.zeros(5, np.uint8)))
    )
    assert "train-labels-idx1-ubyte.gz" in _load_error(tmp_path)


def test_bad_gzip_crc(tmp_path: Path) -> None:
    f = _mnist_file(tmp_path, "train-images-idx3-ubyte")
    raw = bytearray(f.read_bytes())
    raw[-6] ^= 0xFF  # inside the CRC32 trailer
    f.write_bytes(bytes(raw))
    msg = _load_error(tmp_path)
    assert "train-images-idx3-ubyte.gz" in msg and "gzip" in msg


def test_truncated_gzip(tmp_path: Path) -> None:
    f = _mnist_file(tmp_path, "train-images-idx3-ubyte")
    f.write_bytes(f.read_bytes()[: len(f.read_bytes()) // 2])
    assert "train-images-idx3-ubyte.gz" in _load_error(tmp_path)


# -- CIFAR -----------------------------------------------------------------------------------


def test_cifar10_bin_round_trip(tmp_path: Path) -> None:
    arrays = fakes.write_cifar10_bin(tmp_path / "cifar10" / "cifar-10-batches-bin")
    ds = load_dataset("cifar10", tmp_path, download=False)
    _assert_round_trip(ds, arrays)
    assert ds.train_x.shape == (15, 3, 32, 32) and ds.classes[1] == "automobile"
    assert ds.label == "CIFAR-10"


def test_cifar10_bin_top_level_layout(tmp_path: Path) -> None:
    arrays = fakes.write_cifar10_bin(tmp_path / "cifar-10-batches-bin", seed=2)
    _assert_round_trip(load_dataset("cifar10", tmp_path, download=False), arrays)


def test_cifar10_provenance_label(tmp_path: Path) -> None:
    fakes.write_cifar10_bin(tmp_path / "cifar10" / "cifar-10-batches-bin")
    (tmp_path / "cifar10" / "PROVENANCE.txt").write_text("!!! JPEG-DERIVED, NOT BYTE-EXACT !!!")
    assert load_dataset("cifar10", tmp_path, download=False).label == "CIFAR-10 (JPEG-derived copy)"


def test_cifar10_py_round_trip(tmp_path: Path) -> None:
    arrays = fakes.write_cifar10_py(tmp_path / "cifar-10-batches-py")
    ds = load_dataset("cifar10", tmp_path, download=False)
    _assert_round_trip(ds, arrays)
    assert ds.classes[9] == "truck"
    assert ds.label == "CIFAR-10 (non-upstream copy)"  # per-file md5s are published


def test_cifar100_bin_round_trip(tmp_path: Path) -> None:
    arrays = fakes.write_cifar100_bin(tmp_path / "cifar100" / "cifar-100-binary")
    ds = load_dataset("cifar-100", tmp_path, download=False)
    _assert_round_trip(ds, arrays)
    assert ds.num_classes == 100 and len(ds.classes) == 100 and ds.classes[0] == "apple"
    assert ds.classes[99] == "worm"


def test_cifar100_py_round_trip(tmp_path: Path) -> None:
    arrays = fakes.write_cifar100_py(tmp_path / "cifar-100-python")
    _assert_round_trip(load_dataset("cifar100", tmp_path, download=False), arrays)


def test_cifar_bin_truncated(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-10-batches-bin"
    fakes.write_cifar10_bin(folder)
    f = folder / "data_batch_3.bin"
    f.write_bytes(f.read_bytes()[:-10])
    msg = _load_error(tmp_path, "cifar10")
    assert "data_batch_3.bin" in msg and "truncated" in msg


def test_cifar_bin_truncated_at_record_boundary(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-10-batches-bin"
    fakes.write_cifar10_bin(folder)
    f = folder / "data_batch_2.bin"
    f.write_bytes(f.read_bytes()[:-3073])
    msg = _load_error(tmp_path, "cifar10")
    assert "data_batch_2.bin" in msg and "truncated" in msg


def test_cifar_bin_label_out_of_range(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-10-batches-bin"
    fakes.write_cifar10_bin(folder)
    f = folder / "test_batch.bin"
    raw = bytearray(f.read_bytes())
    raw[3073] = 10  # label byte of record 1
    f.write_bytes(bytes(raw))
    msg = _load_error(tmp_path, "cifar10")
    assert "test_batch.bin" in msg and "out of range" in msg


def test_cifar100_bin_fine_label_out_of_range(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-100-binary"
    fakes.write_cifar100_bin(folder)
    f = folder / "test.bin"
    raw = bytearray(f.read_bytes())
    raw[1] = 100
    f.write_bytes(bytes(raw))
    msg = _load_error(tmp_path, "cifar100")
    assert "test.bin" in msg and "fine label" in msg


def test_cifar_pickle_wrong_structure(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-10-batches-py"
    fakes.write_cifar10_py(folder)
    (folder / "data_batch_4").write_bytes(pickle.dumps({b"data": [1, 2, 3]}, protocol=2))
    msg = _load_error(tmp_path, "cifar10")
    assert "data_batch_4" in msg and "data" in msg
    (folder / "data_batch_4").write_bytes(pickle.dumps([1, 2], protocol=2))
    assert "data_batch_4" in _load_error(tmp_path, "cifar10")


def test_cifar_pickle_label_out_of_range(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-10-batches-py"
    fakes.write_cifar10_py(folder)
    x = np.zeros((3, 3072), np.uint8)
    (folder / "test_batch").write_bytes(pickle.dumps({b"data": x, b"labels": [0, -1, 3]}, protocol=2))
    msg = _load_error(tmp_path, "cifar10")
    assert "test_batch" in msg and "out of range" in msg


class _Evil:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, ("echo pwned > /dev/null",))


def test_cifar_pickle_refuses_code(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-10-batches-py"
    fakes.write_cifar10_py(folder)
    (folder / "test_batch").write_bytes(pickle.dumps({b"data": _Evil()}, protocol=2))
    msg = _load_error(tmp_path, "cifar10")
    assert "test_batch" in msg and "refusing" in msg


def test_cifar_pickle_truncated(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-100-python"
    fakes.write_cifar100_py(folder)
    f = folder / "train"
    f.write_bytes(f.read_bytes()[:500])
    assert "train" in _load_error(tmp_path, "cifar100")


# -- SVHN ------------------------------------------------------------------------------------


def test_svhn_round_trip(tmp_path: Path) -> None:
    arrays = fakes.write_svhn(tmp_path / "svhn")
    ds = load_dataset("svhn", tmp_path, download=False)
    _assert_round_trip(ds, arrays)
    assert ds.classes == [str(i) for i in range(10)]


def test_svhn_maps_10_to_0(tmp_path: Path) -> None:
    import scipy.io

    x = np.zeros((32, 32, 3, 2), np.uint8)
    for name in ("train_32x32.mat", "test_32x32.mat"):
        scipy.io.savemat(tmp_path / name, {"X": x, "y": np.array([[10], [3]], np.uint8)})
    ds = load_dataset("svhn", tmp_path, download=False)
    assert ds.train_y.tolist() == [0, 3]


def test_svhn_label_out_of_range(tmp_path: Path) -> None:
    import scipy.io

    x = np.zeros((32, 32, 3, 2), np.uint8)
    scipy.io.savemat(tmp_path / "train_32x32.mat", {"X": x, "y": np.array([[1], [2]])})
    scipy.io.savemat(tmp_path / "test_32x32.mat", {"X": x, "y": np.array([[1], [11]])})
    msg = _load_error(tmp_path, "svhn")
    assert "test_32x32.mat" in msg and "out of range" in msg


def test_svhn_wrong_layout_and_garbage(tmp_path: Path) -> None:
    import scipy.io

    fakes.write_svhn(tmp_path)
    scipy.io.savemat(tmp_path / "train_32x32.mat", {"X": np.zeros((3, 32, 32, 2), np.uint8)})
    assert "train_32x32.mat" in _load_error(tmp_path, "svhn")
    (tmp_path / "train_32x32.mat").write_bytes(b"not a mat file at all" * 10)
    assert "train_32x32.mat" in _load_error(tmp_path, "svhn")


# -- ImageNette ------------------------------------------------------------------------------


def test_imagenette_round_trip_and_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(imnette, "IMAGENETTE_SIZE", 16)
    arrays = fakes.write_imagenette(tmp_path / "imagenette" / "imagenette2-160", size=16)
    ds = load_dataset("imagenette", tmp_path, download=False)
    _assert_round_trip(ds, arrays)
    assert ds.classes == ["tench", "English springer", "cassette player"]
    assert list((tmp_path / "xdg-cache" / "fflearn" / "imagenette").glob("*.pt"))

    def no_decoding(*args: object) -> None:
        raise AssertionError("should load from the cache")

    monkeypatch.setattr(imnette, "decode_image", no_decoding)
    _assert_round_trip(load_dataset("imagenette", tmp_path, download=False), arrays)


def test_imagenette_resize_crop_grayscale(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from PIL import Image

    monkeypatch.setattr(imnette, "IMAGENETTE_SIZE", 8)
    root = tmp_path / "imagenette2"
    for split in ("train", "val"):
        for wnid in ("n01440764", "n99999999"):
            d = root / split / wnid
            d.mkdir(parents=True)
            Image.new("RGB", (40, 20), (200, 10, 10)).save(d / "a.JPEG")
            Image.new("L", (16, 30), 90).save(d / "b.jpg")
    ds = load_dataset("imagenette", tmp_path, download=False)
    assert ds.train_x.shape == (4, 3, 8, 8) and ds.test_x.shape == (4, 3, 8, 8)
    assert ds.train_y.tolist() == [0, 0, 1, 1] and ds.classes == ["tench", "n99999999"]
    assert abs(int(ds.train_x[0, 0, 4, 4]) - 200) <= 4 and int(ds.train_x[0, 2, 4, 4]) < 20
    gray = ds.train_x[1].int()
    assert torch.all((gray - 90).abs() <= 2)


def test_imagenette_corrupt_jpeg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(imnette, "IMAGENETTE_SIZE", 16)
    root = tmp_path / "imagenette2-160"
    fakes.write_imagenette(root, size=16)
    bad = root / "val" / "n02102040" / "n02102040_1.JPEG"
    bad.write_bytes(bad.read_bytes()[:40])
    msg = _load_error(tmp_path, "imagenette")
    assert "n02102040_1.JPEG" in msg


def test_imagenette_damaged_cache_is_rebuilt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(imnette, "IMAGENETTE_SIZE", 16)
    arrays = fakes.write_imagenette(tmp_path / "imagenette2-160", size=16)
    load_dataset("imagenette", tmp_path, download=False)
    (cache,) = (tmp_path / "xdg-cache" / "fflearn" / "imagenette").glob("*.pt")
    cache.write_bytes(b"garbage")
    _assert_round_trip(load_dataset("imagenette", tmp_path, download=False), arrays)


# -- missing data and downloads --------------------------------------------------------------


def test_missing_data_message(tmp_path: Path) -> None:
    msg = _load_error(tmp_path / "nothing-here")
    for needed in (
        "train-images-idx3-ubyte.gz",
        "t10k-labels-idx1-ubyte.gz",
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "--data-dir",
        "FFLEARN_DATA",
        "download=False",
    ):
        assert needed in msg
    assert not (tmp_path / "nothing-here").exists()  # nothing created


def test_failed_download_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DataError) as info:
        load_dataset("cifar100", tmp_path / "data", download=True)
    msg = str(info.value)
    assert "network disabled in tests" in msg
    assert "cifar-100-binary.tar.gz" in msg and "https://www.cs.toronto.edu/" in msg
    assert "--data-dir" in msg
    assert not (tmp_path / "data" / "cifar100").exists()  # no empty folders left behind


class _FakeResponse(io.BytesIO):
    def __init__(self, data: bytes, length: int | None = None) -> None:
        super().__init__(data)
        self.headers = {"Content-Length": str(len(data) if length is None else length)}


def _serve(monkeypatch: pytest.MonkeyPatch, files: dict[str, bytes], length: int | None = None) -> list[str]:
    requested: list[str] = []

    def fake_urlopen(url: str, timeout: float) -> _FakeResponse:
        assert timeout <= 10
        requested.append(url)
        return _FakeResponse(files[url.rsplit("/", 1)[1]], length)

    monkeypatch.setattr(dl, "urlopen", fake_urlopen)
    return requested


def _patch_mnist_resources(monkeypatch: pytest.MonkeyPatch, files: dict[str, bytes]) -> None:
    loader: Any = DATASETS.get("mnist")
    res = tuple(dl.Resource(r.filename, r.url, hashlib.md5(files[r.filename]).hexdigest()) for r in loader.resources)
    monkeypatch.setattr(loader, "resources", res)


def test_download_verifies_and_loads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    arrays = fakes.write_mnist(tmp_path / "upstream")
    files = {f.name: f.read_bytes() for f in (tmp_path / "upstream").iterdir()}
    _patch_mnist_resources(monkeypatch, files)
    requested = _serve(monkeypatch, files)
    ds = load_dataset("mnist", tmp_path / "data", download=True)
    _assert_round_trip(ds, arrays)
    assert len(requested) == 4 and all(u.startswith("https://ossci-datasets") for u in requested)
    assert ds.source == str(tmp_path / "data" / "mnist" / "raw")
    assert ds.label == "MNIST"  # downloaded and md5-verified by fflearn
    assert (tmp_path / "data" / "mnist" / "raw" / dl.STAMP_NAME).is_file()
    load_dataset("mnist", tmp_path / "data", download=True)
    assert len(requested) == 4  # second load: no download


def test_corrupt_download_is_deleted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fakes.write_mnist(tmp_path / "upstream")
    files = {f.name: f.read_bytes() for f in (tmp_path / "upstream").iterdir()}
    _patch_mnist_resources(monkeypatch, files)
    broken = {k: v[:-5] for k, v in files.items()}
    _serve(monkeypatch, broken, length=None)
    with pytest.raises(DataError) as info:
        load_dataset("mnist", tmp_path / "data", download=True)
    assert "corrupt" in str(info.value) and "train-images-idx3-ubyte.gz" in str(info.value)
    folder = tmp_path / "data" / "mnist" / "raw"
    assert not folder.exists() or not any(folder.iterdir())


def test_truncated_download_is_deleted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fakes.write_mnist(tmp_path / "upstream")
    files = {f.name: f.read_bytes() for f in (tmp_path / "upstream").iterdir()}
    _patch_mnist_resources(monkeypatch, files)
    _serve(monkeypatch, {k: v[:10] for k, v in files.items()}, length=10_000)
    with pytest.raises(DataError) as info:
        load_dataset("mnist", tmp_path / "data", download=True)
    assert "truncated" in str(info.value)
    folder = tmp_path / "data" / "mnist" / "raw"
    assert not folder.exists() or not any(folder.iterdir())


def test_archive_download_and_extract(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import tarfile

    arrays = fakes.write_cifar100_bin(tmp_path / "up" / "cifar-100-binary")
    archive = tmp_path / "cifar-100-binary.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        tf.add(tmp_path / "up" / "cifar-100-binary", arcname="cifar-100-binary")
    data = archive.read_bytes()
    loader: Any = DATASETS.get("cifar100")
    (res,) = loader.resources
    fake = dl.Resource(res.filename, res.url, hashlib.md5(data).hexdigest(), archive=True)
    monkeypatch.setattr(loader, "resources", (fake,))
    _serve(monkeypatch, {res.filename: data})
    ds = load_dataset("cifar100", tmp_path / "data")
    _assert_round_trip(ds, arrays)
    assert ds.label == "CIFAR-100"
    assert not (tmp_path / "data" / "cifar100" / res.filename).exists()  # archive removed


def test_download_skips_read_only_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """$FFLEARN_DATA read-only: the download goes on to the cache. An explicit --data-dir is
    authoritative: read-only, the error says so and nothing else is tried."""
    ro, cache = tmp_path / "read-only", tmp_path / "xdg-cache" / "fflearn"
    monkeypatch.setenv("FFLEARN_DATA", str(ro))
    monkeypatch.setattr(fdata, "is_writable", lambda p: Path(p) != ro)
    with pytest.raises(DataError):  # the offline test machine: the download to the cache fails
        load_dataset("svhn")
    assert not ro.exists()
    monkeypatch.setattr(fdata, "is_writable", lambda p: False)
    msg = _load_error_download(None)
    assert "not writable" in msg and str(ro) in msg and str(cache) in msg
    msg = _load_error_download(ro)
    assert "not writable" in msg and str(ro) in msg and str(cache) not in msg


def _load_error_download(root: Path | None) -> str:
    with pytest.raises(DataError) as info:
        load_dataset("svhn", root, download=True)
    return str(info.value)


# -- API -------------------------------------------------------------------------------------


def test_registry_and_aliases() -> None:
    for name in ("mnist", "fashion-mnist", "cifar10", "cifar100", "svhn", "imagenette"):
        assert name in DATASETS
    assert fdata.canonical_name("FMNIST") == "fashion-mnist"
    assert fdata.canonical_name("CIFAR-10") == "cifar10"
    assert fdata.canonical_name("cifar-100") == "cifar100"


def test_unknown_name_lists_known() -> None:
    with pytest.raises(ConfigError) as info:
        load_dataset("imagenet-22k", download=False)
    assert "cifar10" in str(info.value) and "mnist" in str(info.value)


def test_plugin_loader(tmp_path: Path) -> None:
    def tiny(root: Path, download: bool) -> Dataset:
        x = torch.zeros(2, 1, 4, 4, dtype=torch.uint8)
        y = torch.zeros(2, dtype=torch.int64)
        return Dataset("tiny", x, y, x, y, 1, ["only"], "Tiny", str(root))

    DATASETS.register("tiny-test-plugin", tiny, overwrite=True)
    ds = load_dataset("tiny-test-plugin", tmp_path)
    assert ds.source == str(tmp_path) and find_data_dir("tiny-test-plugin") is None


def test_dataset_mean_std_to_and_checks() -> None:
    x = torch.tensor([0, 255], dtype=torch.uint8).view(2, 1, 1, 1).repeat(1, 2, 1, 1)
    x[:, 1] = 51
    y = torch.tensor([0, 1])
    ds = Dataset("t", x, y, x, y, 2, ["a", "b"], "T")
    mean, std = ds.mean_std()
    assert torch.allclose(mean, torch.tensor([0.5, 0.2])) and torch.allclose(std, torch.tensor([0.5, 0.0]))
    moved = ds.to("cpu")
    assert moved is not ds and torch.equal(moved.train_x, ds.train_x) and moved.input_shape == (2, 1, 1)
    with pytest.raises(DataError):
        Dataset("t", x.float(), y, x, y, 2, ["a", "b"], "T")
    with pytest.raises(DataError):
        Dataset("t", x, y[:1], x, y, 2, ["a", "b"], "T")
    with pytest.raises(DataError):
        Dataset("t", x, y, x, y, 3, ["a", "b"], "T")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_dataset_on_cuda(tmp_path: Path) -> None:
    fakes.write_cifar10_bin(tmp_path / "cifar-10-batches-bin")
    ds = load_dataset("cifar10", tmp_path, download=False)
    gpu = ds.to("cuda")
    assert gpu.train_x.is_cuda and gpu.test_y.is_cuda and ds.train_x.device.type == "cpu"
    for a, b in zip(gpu.mean_std(), ds.mean_std(), strict=True):
        assert a.is_cuda and torch.allclose(a.cpu(), b)
