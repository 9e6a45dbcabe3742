"""The real datasets (tnbench.data.sets.vision) on real files: Debian's Fashion-MNIST, missing files."""
from __future__ import annotations

import os

import pytest
import torch

from tnbench.data import load_data
from tnbench.data.batching import normalize
from tnbench.data.sets.vision import DEBIAN_FASHION_MNIST_DIR
from tnbench.errors import DataError, DataMissing

needs_fashion = pytest.mark.skipif(
    not os.path.isfile(os.path.join(DEBIAN_FASHION_MNIST_DIR, "train-images-idx3-ubyte.gz")),
    reason="Debian package dataset-fashion-mnist is not installed",
)


@pytest.fixture(scope="module")
def fashion_dir(tmp_path_factory) -> str:
    return str(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def fashion(fashion_dir):
    return load_data("fashion_mnist", fashion_dir)


@needs_fashion
def test_fashion_mnist_loads_from_debian_files(fashion, fashion_dir):
    assert os.path.isfile(os.path.join(fashion_dir, "FashionMNIST", "raw", "train-images-idx3-ubyte"))
    assert fashion.train_x.shape == (60000, 1, 28, 28) and fashion.train_x.dtype == torch.uint8
    assert fashion.test_x.shape == (10000, 1, 28, 28) and fashion.test_x.dtype == torch.uint8
    assert fashion.train_y.dtype == torch.int64 and fashion.train_y.shape == (60000,)
    assert fashion.num_classes == 10 and set(fashion.train_y.unique().tolist()) == set(range(10))
    assert (fashion.in_channels, fashion.image_size, fashion.augment) == (1, 28, False)


@needs_fashion
def test_subset_is_deterministic_and_sized(fashion_dir, fashion):
    a = load_data("fashion_mnist", fashion_dir, train_subset=1000, test_subset=300, seed=3)
    b = load_data("fashion_mnist", fashion_dir, train_subset=1000, test_subset=300, seed=3)
    c = load_data("fashion_mnist", fashion_dir, train_subset=1000, seed=4)
    assert a.train_x.shape == (1000, 1, 28, 28) and a.test_x.shape == (300, 1, 28, 28)
    assert torch.equal(a.train_x, b.train_x) and torch.equal(a.test_y, b.test_y)
    assert not torch.equal(a.train_y, c.train_y)
    assert c.test_x.shape[0] == 10000  # no test_subset: whole split
    assert load_data("fashion_mnist", fashion_dir, train_subset=0).train_x.shape[0] == 60000


@needs_fashion
def test_normalize_standardizes_fashion_mnist(fashion):
    z = normalize(fashion.train_x, fashion.mean, fashion.std)
    assert z.dtype == torch.float32 and z.shape == fashion.train_x.shape
    assert abs(z.mean().item()) < 0.01 and abs(z.std().item() - 1) < 0.01


def test_real_dataset_rejects_options(tmp_path):
    with pytest.raises(ValueError, match="channels"):
        load_data("mnist", str(tmp_path), channels=3)


def test_missing_mnist_raises_data_missing(tmp_path):
    with pytest.raises(DataMissing) as info:
        load_data("mnist", str(tmp_path), download=False)
    msg = str(info.value)
    assert str(tmp_path) in msg and "\n" not in msg and "download" in msg


def test_missing_fashion_mnist_without_system_copy(tmp_path):
    from tnbench.data.sets.vision import _load_fashion_mnist

    with pytest.raises(DataMissing, match="FashionMNIST"):
        _load_fashion_mnist(str(tmp_path), False, system_dir=str(tmp_path / "nowhere"))


# --- damaged files, generated in torchvision's on-disk formats ---------------------------------

IDX_FILES = {"train-images-idx3-ubyte": (64, 28), "train-labels-idx1-ubyte": (64, None),
             "t10k-images-idx3-ubyte": (32, 28), "t10k-labels-idx1-ubyte": (32, None)}


def idx_bytes(count: int, size: int | None, seed: int = 0, classes: int = 10) -> bytes:
    """An IDX file as MNIST ships it: magic 0x00000803 (images) / 0x00000801 (labels), sizes, data."""
    g = torch.Generator().manual_seed(seed)
    if size is None:
        return bytes([0, 0, 8, 1]) + count.to_bytes(4, "big") + bytes(torch.randint(0, classes, (count,), generator=g).tolist())
    data = torch.randint(0, 256, (count * size * size,), generator=g, dtype=torch.uint8)
    return bytes([0, 0, 8, 3]) + b"".join(n.to_bytes(4, "big") for n in (count, size, size)) + bytes(data.tolist())


@pytest.fixture
def mnist_dir(tmp_path) -> str:
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name, (count, size) in IDX_FILES.items():
        (raw / name).write_bytes(idx_bytes(count, size))
    return str(tmp_path)


def raw_file(data_dir: str, name: str):
    from pathlib import Path

    return Path(data_dir) / "MNIST" / "raw" / name


def test_generated_mnist_files_load(mnist_dir):
    data = load_data("mnist", mnist_dir, download=False)
    assert data.train_x.shape == (64, 1, 28, 28) and data.test_y.shape == (32,)


@pytest.mark.parametrize("damage,error,message", [
    ("delete", DataMissing, r"not found .*\(t10k-labels-idx1-ubyte missing\)"),
    ("truncate", DataError, r"t10k-labels-idx1-ubyte is truncated: 20 bytes of the 40 its header announces"),
    ("empty", DataError, r"t10k-labels-idx1-ubyte is empty"),
    ("garbage", DataError, r"t10k-labels-idx1-ubyte does not start like an IDX file of labels \(header 0x474152"),
    ("extra", DataError, r"t10k-labels-idx1-ubyte has 7 bytes more than its header announces"),
])
def test_damaged_mnist_label_file_is_named_with_what_is_wrong(mnist_dir, damage, error, message):
    path = raw_file(mnist_dir, "t10k-labels-idx1-ubyte")
    good = path.read_bytes()
    if damage == "delete":
        path.unlink()
    else:
        path.write_bytes({"truncate": good[:20], "empty": b"", "garbage": b"GARBAGE HEADER" + good[14:],
                          "extra": good + b"\0" * 7}[damage])
    with pytest.raises(error, match=message) as info:
        load_data("mnist", mnist_dir, download=False)
    assert "\n" not in str(info.value) and not isinstance(info.value, AssertionError)
    if damage != "delete":
        assert not isinstance(info.value, DataMissing)  # damaged is not missing


def test_truncated_and_garbage_image_files(mnist_dir):
    path = raw_file(mnist_dir, "train-images-idx3-ubyte")
    good = path.read_bytes()
    path.write_bytes(good[:1000])
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte is truncated: 1000 bytes of the 50192"):
        load_data("mnist", mnist_dir, download=False)
    path.write_bytes(b"\x00\x00\x0d\x03" + good[4:])  # a float type code: torchvision reads it, then asserts
    with pytest.raises(DataError, match=r"does not start like an IDX file of images \(header 0x00000d03"):
        load_data("mnist", mnist_dir, download=False)


@pytest.mark.parametrize("files,message", [
    ({"train-images-idx3-ubyte": idx_bytes(64, 32)}, r"train images are \(1, 32, 32\).*expected \(1, 28, 28\)"),
    ({"train-labels-idx1-ubyte": idx_bytes(60, None)}, r"the train split has 64 images and 60 labels"),
    ({"t10k-labels-idx1-ubyte": idx_bytes(32, None, classes=40)}, r"test labels range over 0\.\.\d+, expected 0\.\.9"),
])
def test_well_formed_files_of_the_wrong_shape(mnist_dir, files, message):
    for name, content in files.items():
        raw_file(mnist_dir, name).write_bytes(content)
    with pytest.raises(DataError, match=message):
        load_data("mnist", mnist_dir, download=False)


def test_downloaded_archive_failing_the_checksum_is_named(mnist_dir):
    from torchvision.datasets import MNIST

    from tnbench.data.sets.vision import _diagnose_idx

    raw = raw_file(mnist_dir, "x").parent
    (raw / "t10k-labels-idx1-ubyte").unlink()
    (raw / "t10k-labels-idx1-ubyte.gz").write_bytes(b"\x1f\x8b not the real archive")
    err = _diagnose_idx(MNIST, "mnist", str(raw), str(raw), True, RuntimeError("File not found or corrupted."))
    assert "t10k-labels-idx1-ubyte.gz fails torchvision's MD5 check" in str(err)
    assert "checksum of the real mnist archive" in str(err)


def write_cifar(root, names=None) -> None:
    """CIFAR-10's python pickles (data: N x 3072 uint8, labels), as torchvision reads them."""
    import pickle

    import numpy as np

    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    for name in names or [*(f"data_batch_{i}" for i in range(1, 6)), "test_batch"]:
        entry = {"data": np.zeros((4, 3072), dtype=np.uint8), "labels": [0, 1, 2, 3]}
        (folder / name).write_bytes(pickle.dumps(entry))
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": [str(i) for i in range(10)]}))


def test_cifar_file_failing_torchvisions_md5_is_not_missing(tmp_path):
    """A file in CIFAR's format that is not the published one fails torchvision's MD5 check: the
    error names it and says the checksum is the real file's; a missing file is named as missing."""
    write_cifar(tmp_path)
    with pytest.raises(DataError, match=r"data_batch_1 fails torchvision's MD5 check, which holds the checksum of "
                                        r"the real cifar10 file") as info:
        load_data("cifar10", str(tmp_path), download=False)
    assert not isinstance(info.value, DataMissing) and "\n" not in str(info.value)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").unlink()
    for name in ("data_batch_1", "data_batch_2", "data_batch_4", "data_batch_5", "test_batch", "batches.meta"):
        (tmp_path / "cifar-10-batches-py" / name).unlink()
    with pytest.raises(DataMissing, match=r"data_batch_1, data_batch_2, data_batch_3, .* missing"):
        load_data("cifar10", str(tmp_path), download=False)


def test_cifar_archive_failing_the_checksum_is_named(tmp_path):
    from torchvision.datasets import CIFAR10

    from tnbench.data.sets.vision import _diagnose_cifar

    (tmp_path / "cifar-10-python.tar.gz").write_bytes(b"half an archive")
    err = _diagnose_cifar(CIFAR10, "cifar10", str(tmp_path), str(tmp_path), True, RuntimeError("corrupted"))
    assert "cifar-10-python.tar.gz fails torchvision's MD5 check" in str(err) and "real cifar10 archive" in str(err)


def test_damaged_system_copy_of_fashion_mnist_is_named(tmp_path):
    import gzip

    from tnbench.data.sets.vision import FASHION_MNIST_FILES, _load_fashion_mnist

    system = tmp_path / "system"
    system.mkdir()
    for name in FASHION_MNIST_FILES:
        (system / f"{name}.gz").write_bytes(gzip.compress(idx_bytes(8, 28 if "images" in name else None)))
    blob = (system / "t10k-images-idx3-ubyte.gz").read_bytes()
    (system / "t10k-images-idx3-ubyte.gz").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte.gz is not a complete gzip file"):
        _load_fashion_mnist(str(tmp_path / "data"), False, system_dir=str(system))
