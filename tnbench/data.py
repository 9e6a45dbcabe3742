"""Datasets held whole in (device) memory, and a loader that batches them without worker processes.

The benchmark datasets are small (MNIST-sized to CIFAR-sized: at most ~180 MB as uint8), so the
whole split lives as one uint8 tensor on the training device.  Batching is then an index into
that tensor, and normalisation/augmentation are a few batched tensor ops, which is far cheaper
than a ``DataLoader`` with per-sample Python transforms and makes Lightning's host-to-device
transfer a no-op.
"""
from __future__ import annotations

import dataclasses
import gzip
import math
import os
import shutil
from dataclasses import dataclass
from typing import Callable, Iterator, Optional, Sequence

import lightning
import torch
import torch.nn.functional as F

from tnbench.registry import Registry

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


class DataMissing(RuntimeError):
    """A dataset's files are not on disk (and could not be downloaded); the message is one line."""


@dataclass
class TensorData:
    """Both splits of an image-classification dataset as raw tensors, plus how to preprocess them.

    Images stay uint8 (N, C, H, W) until batching, which keeps even CIFAR-100 at 150 MB on the
    device; ``mean``/``std`` are per channel in [0, 1] pixel units.  ``augment`` says whether the
    training split should get CIFAR-style random crop + horizontal flip.
    """

    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    augment: bool

    @property
    def in_channels(self) -> int:
        return int(self.train_x.shape[1])

    @property
    def image_size(self) -> int:
        """Image height; every supported dataset has square images."""
        return int(self.train_x.shape[2])

    def to(self, device: torch.device | str) -> "TensorData":
        """A copy with all four tensors on ``device`` (the original is left where it was)."""
        return dataclasses.replace(
            self,
            train_x=self.train_x.to(device),
            train_y=self.train_y.to(device),
            test_x=self.test_x.to(device),
            test_y=self.test_y.to(device),
        )


# A builder takes (data_dir, download, seed, **options) and returns the full TensorData.
DatasetBuilder = Callable[..., TensorData]
DATASETS: Registry[DatasetBuilder] = Registry("dataset")


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
        raise ValueError(f"dataset {name!r} takes no options; got: {', '.join(sorted(options))}")


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


@DATASETS.register("mnist")
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


@DATASETS.register("fashion_mnist")
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


@DATASETS.register("cifar10")
def _load_cifar10(data_dir: str, download: bool, seed: int = 0, **options) -> TensorData:
    from torchvision.datasets import CIFAR10

    _reject_options("cifar10", options)
    where = os.path.join(data_dir, "cifar-10-batches-py")
    return _from_torchvision(CIFAR10, "cifar10", data_dir, download, where, 10, CIFAR10_MEAN, CIFAR10_STD, True)


@DATASETS.register("cifar100")
def _load_cifar100(data_dir: str, download: bool, seed: int = 0, **options) -> TensorData:
    from torchvision.datasets import CIFAR100

    _reject_options("cifar100", options)
    where = os.path.join(data_dir, "cifar-100-python")
    return _from_torchvision(
        CIFAR100, "cifar100", data_dir, download, where, 100, CIFAR100_MEAN, CIFAR100_STD, True
    )


@DATASETS.register("synthetic")
def _make_synthetic(
    data_dir: str,
    download: bool,
    seed: int = 0,
    channels: int = 3,
    image_size: int = 32,
    num_classes: int = 10,
    train_size: int = 2048,
    test_size: int = 512,
    noise: float = 0.35,
) -> TensorData:
    """Random but learnable images: each class is a fixed random prototype image plus Gaussian noise.

    Used for smoke tests and timing without any files.  A class's images share their prototype,
    so even a linear model separates them within an epoch; ``noise`` (std, in [0, 1] pixel units)
    makes it less trivial.  Fully determined by ``seed`` and the shape options.
    """
    g = torch.Generator().manual_seed(seed)
    shape = (channels, image_size, image_size)
    prototypes = torch.rand((num_classes, *shape), generator=g)

    def draw(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.randint(0, num_classes, (n,), generator=g)
        x = prototypes[y] + noise * torch.randn((n, *shape), generator=g)
        return x.clamp_(0, 1).mul_(255).round_().to(torch.uint8), y

    train_x, train_y = draw(train_size)
    test_x, test_y = draw(test_size)
    pixels = train_x.float().div_(255).transpose(0, 1).reshape(channels, -1)
    mean = tuple(pixels.mean(1).tolist())
    std = tuple(pixels.std(1).clamp_min(1e-6).tolist())
    return TensorData(train_x, train_y, test_x, test_y, num_classes, mean, std, False)


def subset_indices(n: int, k: Optional[int], seed: int) -> Optional[torch.Tensor]:
    """Sorted indices of a deterministic random k-subset of range(n); None when k asks for everything.

    The same (n, k, seed) always gives the same subset, so runs with a subset stay comparable.
    """
    if not k or k >= n:
        return None
    if k < 0:
        raise ValueError(f"subset size must be positive, got {k}")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return perm[:k].sort().values


def load_data(
    name: str,
    data_dir: str,
    download: bool = False,
    train_subset: Optional[int] = None,
    test_subset: Optional[int] = None,
    seed: int = 0,
    augment: Optional[bool] = None,
    **options,
) -> TensorData:
    """Load dataset ``name`` into CPU tensors.

    ``train_subset``/``test_subset`` keep a seeded random subset (None or 0: all).  ``seed`` also
    seeds the synthetic dataset.  ``augment`` overrides the dataset's default (on for CIFAR).
    Remaining ``options`` go to the dataset builder (only ``synthetic`` takes any).
    """
    builder = DATASETS.get(name)  # unknown names fail here, before touching the disk
    data = builder(os.path.expanduser(str(data_dir)), bool(download), seed=seed, **options)
    train = subset_indices(len(data.train_y), train_subset, seed)
    test = subset_indices(len(data.test_y), test_subset, seed)
    if train is not None:
        data = dataclasses.replace(data, train_x=data.train_x[train], train_y=data.train_y[train])
    if test is not None:
        data = dataclasses.replace(data, test_x=data.test_x[test], test_y=data.test_y[test])
    if augment is not None:
        data = dataclasses.replace(data, augment=bool(augment))
    return data


def _channel_view(values: Sequence[float], like: torch.Tensor) -> torch.Tensor:
    """Per-channel constants shaped (C, 1, 1) so they broadcast over (..., C, H, W)."""
    return torch.as_tensor(values, dtype=torch.float32, device=like.device).view(-1, 1, 1)


def normalize(x_uint8: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """uint8 images (..., C, H, W) -> float32 ``(x / 255 - mean) / std`` per channel."""
    return (x_uint8.float().div(255) - _channel_view(mean, x_uint8)) / _channel_view(std, x_uint8)


def crop_batch(x: torch.Tensor, top: torch.Tensor, left: torch.Tensor, padding: int) -> torch.Tensor:
    """Crop each image of ``x`` (N, C, H, W) out of its zero-padded version at its own offset.

    ``top``/``left`` (N,) are offsets into the padded image, in [0, 2 * padding].  One
    advanced-indexing gather does the whole batch, so it costs the same on CPU and GPU and never
    loops over samples in Python.
    """
    n, c, h, w = x.shape
    padded = F.pad(x, (padding, padding, padding, padding)) if padding else x
    dev = x.device
    rows = top.to(dev).view(n, 1) + torch.arange(h, device=dev)  # (N, H)
    cols = left.to(dev).view(n, 1) + torch.arange(w, device=dev)  # (N, W)
    return padded[
        torch.arange(n, device=dev).view(n, 1, 1, 1),
        torch.arange(c, device=dev).view(1, c, 1, 1),
        rows.view(n, 1, h, 1),
        cols.view(n, 1, 1, w),
    ]


def augment_batch(
    x: torch.Tensor,
    generator: Optional[torch.Generator] = None,
    padding: int = 4,
    flip: bool = True,
) -> torch.Tensor:
    """CIFAR-style augmentation of a batch: random crop after zero padding, then random h-flip.

    Offsets and flips are drawn independently per sample (on the generator's device, then moved
    to ``x``'s).  Applied to normalised batches, the zero padding equals the dataset mean colour.
    """
    n = x.shape[0]
    dev = generator.device if generator is not None else x.device
    top = torch.randint(0, 2 * padding + 1, (n,), generator=generator, device=dev)
    left = torch.randint(0, 2 * padding + 1, (n,), generator=generator, device=dev)
    out = crop_batch(x, top, left, padding) if padding else x
    if flip:
        mask = torch.rand((n,), generator=generator, device=dev).lt(0.5).to(x.device)
        out = torch.where(mask.view(n, 1, 1, 1), out.flip(-1), out)
    return out


def _dist_rank_world() -> tuple[int, int]:
    """(rank, world_size) of the default process group, or (0, 1) outside distributed runs."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


class InMemoryLoader:
    """Iterates (float x, int64 y) batches straight out of uint8 tensors already on the device.

    Each epoch draws one permutation from a CPU generator seeded with ``seed + epoch`` (the same
    on every DDP rank, whatever their device); rank r takes ``perm[r::world_size]``, so the ranks
    together see every sample exactly once, with no padding.  Every rank runs the same number of
    batches (a DDP step count mismatch would deadlock the gradient all-reduce): that count comes
    from the shortest rank, so in the rare case that a longer rank's one extra sample would need
    a batch of its own it is skipped that epoch.  ``drop_last`` drops each rank's final partial batch.

    The epoch counter advances when an iteration starts (first ``next``), not on ``iter()``
    alone, because Lightning calls ``iter()`` once just to check iterability.  ``epoch_fn``, when
    given and returning an int, overrides the counter at that moment: InMemoryDataModule passes
    the trainer's current epoch, which keeps the shuffle tied to it across resumes and reloads.
    """

    def __init__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        batch_size: int,
        shuffle: bool = False,
        drop_last: bool = False,
        augment: bool = False,
        mean: Optional[Sequence[float]] = None,
        std: Optional[Sequence[float]] = None,
        seed: int = 0,
        channels_last: bool = False,
        epoch_fn: Optional[Callable[[], Optional[int]]] = None,
    ) -> None:
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        if len(x) != len(y):
            raise ValueError(f"x has {len(x)} samples but y has {len(y)}")
        self.x, self.y = x, y
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.augment = augment
        self.seed = seed
        self.channels_last = channels_last
        self.epoch = 0
        self.epoch_fn = epoch_fn
        # Fold /255 and (v - mean) / std into a single multiply-subtract per batch.
        channels = x.shape[1]
        mean_t = _channel_view(mean if mean is not None else (0.0,) * channels, x)
        std_t = _channel_view(std if std is not None else (1.0,) * channels, x)
        self._scale = 1.0 / (255.0 * std_t)
        self._shift = mean_t / std_t

    def set_epoch(self, epoch: int) -> None:
        """Make the next iteration use ``epoch``'s shuffle and augmentation."""
        self.epoch = int(epoch)

    def _batches_per_rank(self, world_size: int) -> int:
        """Steps per epoch, identical on every rank: ranks hold len//world_size samples or one more,
        and the count is taken from the shorter so that no rank is left with an empty batch."""
        shortest = len(self.y) // world_size
        if self.drop_last:
            return shortest // self.batch_size
        return math.ceil(shortest / self.batch_size)

    def __len__(self) -> int:
        return self._batches_per_rank(_dist_rank_world()[1])

    def _rank_indices(self, epoch: int, rank: int, world_size: int) -> torch.Tensor:
        """This rank's sample indices for ``epoch`` (on the data's device), already truncated to whole steps."""
        n = len(self.y)
        if self.shuffle:
            perm = torch.randperm(n, generator=torch.Generator().manual_seed(self.seed + epoch))
        else:
            perm = torch.arange(n)
        mine = perm[rank::world_size]
        mine = mine[: self._batches_per_rank(world_size) * self.batch_size]
        return mine.to(self.x.device)

    def _convert(self, xb: torch.Tensor, generator: Optional[torch.Generator]) -> torch.Tensor:
        out = torch.addcmul(-self._shift, xb.float(), self._scale)
        if self.augment:
            out = augment_batch(out, generator=generator)
        if self.channels_last:
            out = out.contiguous(memory_format=torch.channels_last)
        return out

    def _iter_rank(self, epoch: int, rank: int, world_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Batches of one epoch for one rank; takes rank/world_size explicitly so it is testable alone."""
        idx = self._rank_indices(epoch, rank, world_size)
        generator = None
        if self.augment:
            # Distinct per epoch and rank, reproducible from the seed.
            generator = torch.Generator(device=self.x.device)
            generator.manual_seed((self.seed * 1_000_003 + epoch) * 1_009 + rank)
        for start in range(0, len(idx), self.batch_size):
            b = idx[start : start + self.batch_size]
            yield self._convert(self.x[b], generator), self.y[b]

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        # A generator body: nothing below runs until the first next(), so a bare iter() (as
        # Lightning does to check iterability) neither consumes an epoch nor looks at the
        # process group before it exists.
        external = self.epoch_fn() if self.epoch_fn is not None else None
        epoch = self.epoch if external is None else int(external)
        self.epoch = epoch + 1
        rank, world_size = _dist_rank_world()
        yield from self._iter_rank(epoch, rank, world_size)


class InMemoryDataModule(lightning.LightningDataModule):
    """Serves a TensorData from device memory to a Lightning Trainer.

    Validation and test both use the *test* split (unshuffled, unaugmented): the compression
    papers this benchmark reproduces report test accuracy, and there is no separate validation
    split to tune on.  Keep that in mind before using val metrics for model selection.
    """

    def __init__(
        self,
        data: TensorData,
        batch_size: int,
        eval_batch_size: int = 1024,
        seed: int = 0,
        channels_last: bool = False,
        drop_last: bool = False,
    ) -> None:
        super().__init__()
        self.data = data
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.seed = seed
        self.channels_last = channels_last
        self.drop_last = drop_last
        self._train_loader: Optional[InMemoryLoader] = None

    def setup(self, stage: Optional[str] = None) -> None:
        """Move the tensors to the trainer's device, so batches are born there."""
        trainer = getattr(self, "trainer", None)
        if trainer is not None:
            device = trainer.strategy.root_device
            if self.data.train_x.device != device:
                self.data = self.data.to(device)
                self._train_loader = None

    def reseed(self, seed: int) -> None:
        """A new shuffle/augmentation stream, e.g. for retraining after compression."""
        self.seed = seed
        self._train_loader = None

    def _trainer_epoch(self) -> Optional[int]:
        trainer = getattr(self, "trainer", None)
        return None if trainer is None else int(trainer.current_epoch)

    def _eval_loader(self) -> InMemoryLoader:
        d = self.data
        return InMemoryLoader(
            d.test_x, d.test_y, self.eval_batch_size, shuffle=False, augment=False,
            mean=d.mean, std=d.std, seed=self.seed, channels_last=self.channels_last,
        )

    def train_dataloader(self) -> InMemoryLoader:
        # One instance for the whole fit; its shuffle follows trainer.current_epoch (see epoch_fn).
        if self._train_loader is None:
            d = self.data
            self._train_loader = InMemoryLoader(
                d.train_x, d.train_y, self.batch_size, shuffle=True, drop_last=self.drop_last,
                augment=d.augment, mean=d.mean, std=d.std, seed=self.seed, channels_last=self.channels_last,
                epoch_fn=self._trainer_epoch,
            )
        return self._train_loader

    def val_dataloader(self) -> InMemoryLoader:
        return self._eval_loader()

    def test_dataloader(self) -> InMemoryLoader:
        return self._eval_loader()
