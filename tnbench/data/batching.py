"""Batches straight out of uint8 tensors already on the device: normalization and CIFAR-style
augmentation as batched tensor ops, shuffling by permutation, DDP sharding by rank.

Measured (results/bench/train_epoch.md): 3.4x faster than a DataLoader with per-sample
transforms on a LeNet-5 epoch, which is why the project has its own loader.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from typing import Optional

import torch
import torch.nn.functional as F


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
