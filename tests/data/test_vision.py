"""The real datasets (tnbench.data.sets.vision) on real files: Debian's Fashion-MNIST, missing files."""
from __future__ import annotations

import os

import pytest
import torch

from tnbench.data import load_data
from tnbench.data.batching import normalize
from tnbench.data.sets.vision import DEBIAN_FASHION_MNIST_DIR
from tnbench.errors import DataMissing

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
