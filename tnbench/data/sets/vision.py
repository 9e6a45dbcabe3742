"""MNIST, Fashion-MNIST, CIFAR-10 and CIFAR-100 through torchvision, held as uint8 tensors.

Fashion-MNIST is also found in Debian's `dataset-fashion-mnist` package and unpacked from
there into `data_dir`.
"""
from __future__ import annotations

import gzip
import os
import shutil
from collections.abc import Sequence
from typing import Optional

import torch

from tnbench.data import dataset
from tnbench.data.tensors import TensorData
from tnbench.errors import ConfigError, DataMissing

# Per-channel statistics of the training splits, in [0, 1] pixel units.
MNIST_MEAN, MNIST_STD = (0.1307,), (0.3081,)
FASHION_MNIST_MEAN, FASHION_MNIST_STD = (0.2860,), (0.3530,)
CIFAR10_MEAN, CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
CIFAR100_MEAN, CIFAR100_STD = (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)

# Where Debian's ``dataset-fashion-mnist`` package puts the four idx ``.gz`` files.
DEBIAN_FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


def _missing(name: str, searched: str, where: str, download_error: Optional[BaseException] = None) -> DataMissing:
    """The one-line 'not found' error: which dataset, where we looked, and the ways to fix it."""
    if download_error is None:
        fetch = ", or set dataset.download=true when online"
    else:
        # torchvision's download errors end with the underlying cause (e.g. a URLError).
        reason = (str(download_error).strip().splitlines() or [type(download_error).__name__])[-1].strip()
        fetch = f"; the download failed (offline?): {reason}"
    return DataMissing(
        f"dataset {name!r} not found in {searched}: put its files in {where}, "
        f"or point dataset.data_dir at a directory that has them{fetch}"
    )


def _reject_options(name: str, options: dict) -> None:
    if options:
        raise ConfigError(f"dataset {name!r} takes no options; got: {', '.join(sorted(options))}")


def _torchvision_split(cls: type, root: str, train: bool, download: bool, name: str, where: str):
    """Instantiate a torchvision dataset, turning its 'not found'/'download failed' errors into DataMissing."""
    try:
        return cls(root=root, train=train, download=download)
    except (RuntimeError, OSError) as err:
        # torchvision raises RuntimeError when files are absent or a download failed; offline
        # downloads can also surface as URLError (an OSError).  The cause stays chained.
        raise _missing(name, root, where, err if download else None) from err


def _from_torchvision(
    cls: type,
    name: str,
    root: str,
    download: bool,
    where: str,
    num_classes: int,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    augment: bool,
) -> TensorData:
    """Load both splits of a torchvision dataset and convert ``.data``/``.targets`` to NCHW tensors."""
    splits = []
    for train in (True, False):
        ds = _torchvision_split(cls, root, train, download, name, where)
        x = torch.as_tensor(ds.data)
        # MNIST-style data is (N, H, W); CIFAR-style numpy data is (N, H, W, C).
        x = x.unsqueeze(1) if x.ndim == 3 else x.permute(0, 3, 1, 2)
        splits.append((x.to(torch.uint8).contiguous(), torch.as_tensor(ds.targets, dtype=torch.int64)))
    (train_x, train_y), (test_x, test_y) = splits
    return TensorData(train_x, train_y, test_x, test_y, num_classes, mean, std, augment)


@dataset("mnist", geometry=(1, 28, 10))
def _load_mnist(data_dir: str, download: bool, seed: int = 0, **options) -> TensorData:
    from torchvision.datasets import MNIST

    _reject_options("mnist", options)
    where = os.path.join(data_dir, "MNIST", "raw")
    return _from_torchvision(MNIST, "mnist", data_dir, download, where, 10, MNIST_MEAN, MNIST_STD, False)


def _fashion_mnist_raw(data_dir: str) -> str:
    return os.path.join(data_dir, "FashionMNIST", "raw")


def _has_files(directory: str, names: Sequence[str], suffix: str = "") -> bool:
    return all(os.path.isfile(os.path.join(directory, n + suffix)) for n in names)


def _gunzip_into(src_dir: str, dst_dir: str, names: Sequence[str]) -> None:
    """Un-gzip ``<src_dir>/<name>.gz`` to ``<dst_dir>/<name>``.

    Each file is written under a temporary name and renamed, so concurrent processes (DDP ranks
    starting together) never see a half-written file.
    """
    os.makedirs(dst_dir, exist_ok=True)
    for n in names:
        dst = os.path.join(dst_dir, n)
        if os.path.isfile(dst):
            continue
        tmp = f"{dst}.tmp{os.getpid()}"
        try:
            with gzip.open(os.path.join(src_dir, n + ".gz"), "rb") as fin, open(tmp, "wb") as fout:
                shutil.copyfileobj(fin, fout, length=1 << 20)
            os.replace(tmp, dst)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)


@dataset("fashion_mnist", geometry=(1, 28, 10))
def _load_fashion_mnist(
    data_dir: str,
    download: bool,
    seed: int = 0,
    system_dir: str = DEBIAN_FASHION_MNIST_DIR,
    **options,
) -> TensorData:
    """Fashion-MNIST through torchvision; unpacks the Debian-packaged copy into data_dir when needed."""
    from torchvision.datasets import FashionMNIST

    _reject_options("fashion_mnist", options)
    raw = _fashion_mnist_raw(data_dir)
    if not _has_files(raw, FASHION_MNIST_FILES) and _has_files(system_dir, FASHION_MNIST_FILES, ".gz"):
        _gunzip_into(system_dir, raw, FASHION_MNIST_FILES)
    return _from_torchvision(
        FashionMNIST, "fashion_mnist", data_dir, download, raw, 10, FASHION_MNIST_MEAN, FASHION_MNIST_STD, False
    )


@dataset("cifar10", geometry=(3, 32, 10))
def _load_cifar10(data_dir: str, download: bool, seed: int = 0, **options) -> TensorData:
    from torchvision.datasets import CIFAR10

    _reject_options("cifar10", options)
    where = os.path.join(data_dir, "cifar-10-batches-py")
    return _from_torchvision(CIFAR10, "cifar10", data_dir, download, where, 10, CIFAR10_MEAN, CIFAR10_STD, True)


@dataset("cifar100", geometry=(3, 32, 100))
def _load_cifar100(data_dir: str, download: bool, seed: int = 0, **options) -> TensorData:
    from torchvision.datasets import CIFAR100

    _reject_options("cifar100", options)
    where = os.path.join(data_dir, "cifar-100-python")
    return _from_torchvision(
        CIFAR100, "cifar100", data_dir, download, where, 100, CIFAR100_MEAN, CIFAR100_STD, True
    )
