"""ResNet-50 adapted to 32x32 inputs (~23.5M parameters)."""
from __future__ import annotations

import torchvision
from torch import nn

from tnbench.models import MODELS, require


@MODELS.register("resnet50")
def resnet50(
    *, in_channels: int, image_size: int, num_classes: int, zero_init_residual: bool = True
) -> nn.Module:
    """torchvision's ResNet-50 with the usual CIFAR stem.

    The ImageNet stem (7x7 stride-2 conv + max-pool) would shrink a 32x32 image to
    8x8 before the first block; a 3x3 stride-1 conv and no max-pool keep the full
    resolution so layer4 still sees 4x4 maps.
    """
    require(image_size >= 8, f"resnet50: image_size must be >= 8, got {image_size}")
    model = torchvision.models.resnet50(
        weights=None, num_classes=num_classes, zero_init_residual=bool(zero_init_residual)
    )
    model.conv1 = nn.Conv2d(in_channels, 64, 3, stride=1, padding=1, bias=False)
    nn.init.kaiming_normal_(model.conv1.weight, mode="fan_out", nonlinearity="relu")
    model.maxpool = nn.Identity()
    return model
