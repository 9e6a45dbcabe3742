"""A dataset as tensors: both splits as uint8 images plus how to preprocess them."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Optional

import torch


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

    def to(self, device: torch.device | str) -> TensorData:
        """A copy with all four tensors on ``device`` (the original is left where it was)."""
        return dataclasses.replace(
            self,
            train_x=self.train_x.to(device),
            train_y=self.train_y.to(device),
            test_x=self.test_x.to(device),
            test_y=self.test_y.to(device),
        )


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
