"""VGG-16 with batch norm in its common CIFAR form (~15M parameters)."""
from __future__ import annotations

from collections import OrderedDict

from torch import nn

from tnbench.models import MODELS, require

# Output channels per 3x3 conv; "M" is a 2x2 max-pool.
_VGG16_CONFIG: list[int | str] = [
    64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M",
]


def _features(in_channels: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    channels = in_channels
    for item in _VGG16_CONFIG:
        if item == "M":
            # ceil_mode keeps odd sizes alive: 28 -> 14 -> 7 -> 4 -> 2 -> 1.
            layers.append(nn.MaxPool2d(2, ceil_mode=True))
        else:
            out = int(item)
            layers += [
                nn.Conv2d(channels, out, 3, padding=1),
                nn.BatchNorm2d(out),
                nn.ReLU(inplace=True),
            ]
            channels = out
    return nn.Sequential(*layers)


@MODELS.register("vgg16")
def vgg16(
    *, in_channels: int, image_size: int, num_classes: int, dropout: float = 0.5
) -> nn.Module:
    """CIFAR VGG-16-BN: 13 conv layers, global average pool, three-layer 512-wide head.

    The small head (instead of ImageNet's 4096-wide one) is what the low-rank
    literature reports as "VGG-16 on CIFAR", with ~15M parameters for 10 classes.
    """
    require(0.0 <= dropout < 1.0, f"vgg16: dropout must be in [0, 1), got {dropout}")
    model = nn.Sequential(
        OrderedDict(
            features=_features(in_channels),
            pool=nn.AdaptiveAvgPool2d(1),
            flatten=nn.Flatten(),
            classifier=nn.Sequential(
                nn.Linear(512, 512),
                nn.ReLU(inplace=True),
                nn.Dropout(dropout),
                nn.Linear(512, 512),
                nn.ReLU(inplace=True),
                nn.Dropout(dropout),
                nn.Linear(512, num_classes),
            ),
        )
    )
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            # He init suits the ReLU trunk; without it 13 stacked convs train slowly.
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(module.bias)
    return model
