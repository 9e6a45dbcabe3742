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
    # a validation split carved from the training set (`dataset.val_split`), for model selection
    val_x: Optional[torch.Tensor] = None
    val_y: Optional[torch.Tensor] = None

    @property
    def in_channels(self) -> int:
        return int(self.train_x.shape[1])

    @property
    def image_size(self) -> int:
        """Image height; every supported dataset has square images."""
        return int(self.train_x.shape[2])

    def to(self, device: torch.device | str) -> TensorData:
        """A copy with all tensors on ``device`` (the original is left where it was)."""
        return dataclasses.replace(
            self,
            train_x=self.train_x.to(device),
            train_y=self.train_y.to(device),
            test_x=self.test_x.to(device),
            test_y=self.test_y.to(device),
            val_x=None if self.val_x is None else self.val_x.to(device),
            val_y=None if self.val_y is None else self.val_y.to(device),
        )

    def split_validation(self, n: int, seed: int) -> TensorData:
        """A copy whose training split gives up a seeded random `n` examples to a validation split
        (the DLRT protocol: 50k / 10k of MNIST's 60k training images)."""
        total = len(self.train_y)
        if not 0 < n < total:
            raise ValueError(f"dataset.val_split must be in [1, {total - 1}] (training examples: {total}), got {n}")
        perm = torch.randperm(total, generator=torch.Generator().manual_seed(seed + 7_919))
        val, train = perm[:n].sort().values, perm[n:].sort().values
        return dataclasses.replace(self, train_x=self.train_x[train], train_y=self.train_y[train],
                                   val_x=self.train_x[val], val_y=self.train_y[val])


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
