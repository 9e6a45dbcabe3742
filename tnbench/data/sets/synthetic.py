"""`dataset=synthetic`: deterministic learnable random images of any shape and class count."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from tnbench.config import DatasetConfig, ranged
from tnbench.data import dataset
from tnbench.data.tensors import TensorData


@dataclass
class SyntheticConfig(DatasetConfig):
    name: str = "synthetic"
    download: bool = False
    channels: int = ranged(1, ge=1)
    image_size: int = ranged(28, ge=1)
    num_classes: int = ranged(10, ge=2)
    train_size: int = ranged(2048, ge=1)
    test_size: int = ranged(512, ge=1)


@dataset("synthetic", SyntheticConfig)
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
