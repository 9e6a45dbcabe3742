"""MNIST, Fashion-MNIST, CIFAR-10 and CIFAR-100 through torchvision, held as uint8 tensors.

Fashion-MNIST is also found in Debian's `dataset-fashion-mnist` package and unpacked from
there into `data_dir`.
"""
from __future__ import annotations

import gzip
import math
import os
import pickle
import shutil
import zlib
from collections.abc import Sequence
from typing import Optional

import torch

from tnbench.data import dataset
from tnbench.data.tensors import TensorData
from tnbench.errors import ConfigError, DataError, DataMissing

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


def _missing(name: str, searched: str, where: str, download_error: Optional[BaseException] = None,
             files: Sequence[str] = ()) -> DataMissing:
    """The one-line 'not found' error: which dataset (and files), where we looked, and the ways
    to fix it."""
    which = f" ({', '.join(files)} missing)" if files else ""
    if download_error is None:
        fetch = ", or set dataset.download=true when online"
    else:
        # torchvision's download errors end with the underlying cause (e.g. a URLError).
        reason = (str(download_error).strip().splitlines() or [type(download_error).__name__])[-1].strip()
        fetch = f"; the download failed (offline?): {reason}"
    return DataMissing(
        f"dataset {name!r} not found in {searched}{which}: put its files in {where}, "
        f"or point dataset.data_dir at a directory that has them{fetch}"
    )


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[-1].strip()


def _md5_mismatch(path: str, md5: str, what: str) -> DataError:
    return DataError(
        f"{path} fails torchvision's MD5 check, which holds the checksum of the real {what} as published: the file "
        f"is truncated, altered or not the original; delete it and download it again (dataset.download=true)"
    )


def _check_idx(path: str, kind: str) -> None:
    """An IDX file (MNIST's format) as torchvision reads it: magic 0x0000080<n> (unsigned bytes,
    n dimensions), n big-endian sizes, then exactly their product of bytes. Raise DataError
    saying what is wrong: garbage header, truncated, or longer than its header says."""
    dims = 3 if kind == "images" else 1
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(4 + 4 * dims)
    if size == 0:
        raise DataError(f"{path} is empty (an interrupted copy or download?); restore it or delete it and download again")
    want = bytes([0, 0, 8, dims])
    if head[:4] != want:
        raise DataError(f"{path} does not start like an IDX file of {kind} (header 0x{head[:4].hex()}, expected "
                        f"0x{want.hex()}): it is garbage or another format; restore the original file")
    if len(head) < 4 + 4 * dims:
        raise DataError(f"{path} is truncated inside its header ({size} bytes); restore it or download it again")
    shape = [int.from_bytes(head[4 + 4 * i: 8 + 4 * i], "big") for i in range(dims)]
    expected = 4 + 4 * dims + math.prod(shape)
    if size < expected:
        raise DataError(f"{path} is truncated: {size} bytes of the {expected} its header announces "
                        f"({' x '.join(map(str, shape))}); restore it or delete it and download again")
    if size > expected:
        raise DataError(f"{path} has {size - expected} bytes more than its header announces "
                        f"({' x '.join(map(str, shape))}): it is corrupt; restore the original file")


def _diagnose_idx(cls: type, name: str, raw: str, where: str, download: bool, err: BaseException | None) -> DataError:
    """Why an MNIST-style dataset did not load: a file that is missing, empty, truncated, has a
    garbage header, or a downloaded archive that fails torchvision's checksum."""
    from torchvision.datasets.utils import check_integrity

    missing = []
    for resource, md5 in cls.resources:
        archive = os.path.join(raw, os.path.basename(resource))
        path = archive[: -len(".gz")] if archive.endswith(".gz") else archive
        if os.path.isfile(path):
            _check_idx(path, "images" if "images" in os.path.basename(path) else "labels")
        else:
            if download and os.path.isfile(archive) and not check_integrity(archive, md5):
                return _md5_mismatch(archive, md5, f"{name} archive")
            missing.append(os.path.basename(path))
    if missing:
        return _missing(name, raw, where, err if download else None, missing)
    return DataError(f"dataset {name!r} in {raw} could not be read: {_first_line(err) if err else 'unknown error'}")


def _diagnose_cifar(cls: type, name: str, root: str, where: str, download: bool, err: BaseException | None) -> DataError:
    """Why a CIFAR dataset did not load: a missing file, or one that fails torchvision's MD5."""
    from torchvision.datasets.utils import check_integrity

    archive = os.path.join(root, cls.filename)
    missing = []
    for fname, md5 in [*cls.train_list, *cls.test_list, (cls.meta["filename"], cls.meta["md5"])]:
        path = os.path.join(root, cls.base_folder, fname)
        if not os.path.isfile(path):
            missing.append(fname)
        elif not check_integrity(path, md5):
            return _md5_mismatch(path, md5, f"{name} file")
    if missing and download and os.path.isfile(archive) and not check_integrity(archive, cls.tgz_md5):
        return _md5_mismatch(archive, cls.tgz_md5, f"{name} archive")
    if missing:
        return _missing(name, root, where, err if download else None, missing)
    return DataError(f"dataset {name!r} in {where} could not be read: {_first_line(err) if err else 'unknown error'}")


def _reject_options(name: str, options: dict) -> None:
    if options:
        raise ConfigError(f"dataset {name!r} takes no options; got: {', '.join(sorted(options))}")


def _torchvision_split(cls: type, root: str, train: bool, download: bool, name: str, where: str):
    """Instantiate a torchvision dataset; its errors (RuntimeError for absent files, a failed
    download or a failed MD5 check, URLError offline, AssertionError or a reshape error for a
    damaged MNIST file) become one DataError saying which file is missing or damaged, and how."""
    try:
        return cls(root=root, train=train, download=download)
    except (RuntimeError, OSError, AssertionError, ValueError, EOFError, pickle.UnpicklingError) as err:
        diagnose = _diagnose_cifar if hasattr(cls, "train_list") else _diagnose_idx
        raise diagnose(cls, name, where if diagnose is _diagnose_idx else root, where, download, err) from err


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
        y = torch.as_tensor(ds.targets, dtype=torch.int64)
        _check_split(name, where, "train" if train else "test", x, y, num_classes)
        splits.append((x.to(torch.uint8).contiguous(), y))
    (train_x, train_y), (test_x, test_y) = splits
    return TensorData(train_x, train_y, test_x, test_y, num_classes, mean, std, augment)


IMAGE_SIZES = {1: 28, 3: 32}  # MNIST-style, CIFAR-style


def _check_split(name: str, where: str, split: str, x: torch.Tensor, y: torch.Tensor, num_classes: int) -> None:
    """Files that load but hold the wrong shape: image size, label count, label values."""
    size = IMAGE_SIZES.get(x.shape[1])
    if size is None or tuple(x.shape[2:]) != (size, size):
        raise DataError(f"dataset {name!r} in {where}: {split} images are {tuple(x.shape[1:])} (channels, height, "
                        f"width); expected ({x.shape[1]}, {size}, {size}); the files are not the real data")
    if len(y) != len(x) or len(x) == 0:
        raise DataError(f"dataset {name!r} in {where}: the {split} split has {len(x)} images and {len(y)} labels")
    if int(y.min()) < 0 or int(y.max()) >= num_classes:
        raise DataError(f"dataset {name!r} in {where}: {split} labels range over {int(y.min())}..{int(y.max())}, "
                        f"expected 0..{num_classes - 1}")


@dataset("mnist", geometry=(1, 28, 10), train_examples=60000)
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
        src = os.path.join(src_dir, n + ".gz")
        try:
            with gzip.open(src, "rb") as fin, open(tmp, "wb") as fout:
                shutil.copyfileobj(fin, fout, length=1 << 20)
            os.replace(tmp, dst)
        except (EOFError, gzip.BadGzipFile, zlib.error) as e:
            raise DataError(f"{src} is not a complete gzip file ({_first_line(e)}): the system copy of "
                            f"Fashion-MNIST is damaged; reinstall its package or put the files in {dst_dir}") from None
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)


@dataset("fashion_mnist", geometry=(1, 28, 10), train_examples=60000)
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


@dataset("cifar10", geometry=(3, 32, 10), train_examples=50000)
def _load_cifar10(data_dir: str, download: bool, seed: int = 0, **options) -> TensorData:
    from torchvision.datasets import CIFAR10

    _reject_options("cifar10", options)
    where = os.path.join(data_dir, "cifar-10-batches-py")
    return _from_torchvision(CIFAR10, "cifar10", data_dir, download, where, 10, CIFAR10_MEAN, CIFAR10_STD, True)


@dataset("cifar100", geometry=(3, 32, 100), train_examples=50000)
def _load_cifar100(data_dir: str, download: bool, seed: int = 0, **options) -> TensorData:
    from torchvision.datasets import CIFAR100

    _reject_options("cifar100", options)
    where = os.path.join(data_dir, "cifar-100-python")
    return _from_torchvision(
        CIFAR100, "cifar100", data_dir, download, where, 100, CIFAR100_MEAN, CIFAR100_STD, True
    )
