"""Small classifiers used by the low-rank training literature on (Fashion-)MNIST/CIFAR.

All models are ``nn.Sequential`` with named children (``features``, ``flatten``,
``classifier``) so layer names in state dicts and compression reports read
like ``features.0`` or ``classifier.2`` rather than anonymous indices.
"""
from __future__ import annotations

from collections import OrderedDict

from torch import nn

from tnbench.models import MODELS, require


def _conv_out(size: int, kernel: int, padding: int = 0, stride: int = 1) -> int:
    """Spatial size after a convolution/pooling window (floor mode)."""
    return (size + 2 * padding - kernel) // stride + 1


def _lenet_trunk(image_size: int, padding: int) -> int:
    size = _conv_out(image_size, 5, padding)
    size = _conv_out(size, 2, stride=2) if size >= 2 else 0
    size = _conv_out(size, 5) if size >= 5 else 0
    return _conv_out(size, 2, stride=2) if size >= 2 else 0


def _lenet_map_size(image_size: int, padding: int, name: str) -> int:
    """Side of the feature map after the LeNet trunk (conv5, pool2, conv5, pool2)."""
    size = _lenet_trunk(image_size, padding)
    if size < 1:
        smallest = next(s for s in range(1, 64) if _lenet_trunk(s, padding) >= 1)
        require(False, f"{name}: image_size must be >= {smallest} (its conv/pool trunk), got {image_size}")
    return size


@MODELS.register("fc2")
def fc2(*, in_channels: int, image_size: int, num_classes: int, hidden: int = 512) -> nn.Module:
    """Two fully connected layers: the smallest network where low-rank factorisation applies."""
    require(hidden >= 1, f"fc2: model.options.hidden must be >= 1, got {hidden}")
    return nn.Sequential(
        OrderedDict(
            flatten=nn.Flatten(),
            classifier=nn.Sequential(
                nn.Linear(in_channels * image_size * image_size, hidden),
                nn.ReLU(inplace=True),
                nn.Linear(hidden, num_classes),
            ),
        )
    )


@MODELS.register("lenet5")
def lenet5(*, in_channels: int, image_size: int, num_classes: int) -> nn.Module:
    """Classic LeNet-5 (6/16 conv channels, 120/84 hidden units).

    28x28 inputs are padded by 2 in the first convolution, as in the original
    paper's 32x32 setting, so MNIST and CIFAR both reach 5x5 maps before the
    classifier; larger images simply give larger maps (size is computed).
    """
    padding = 2 if image_size < 32 else 0
    side = _lenet_map_size(image_size, padding, "lenet5")
    return nn.Sequential(
        OrderedDict(
            features=nn.Sequential(
                nn.Conv2d(in_channels, 6, 5, padding=padding),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(2),
                nn.Conv2d(6, 16, 5),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(2),
            ),
            flatten=nn.Flatten(),
            classifier=nn.Sequential(
                nn.Linear(16 * side * side, 120),
                nn.ReLU(inplace=True),
                nn.Linear(120, 84),
                nn.ReLU(inplace=True),
                nn.Linear(84, num_classes),
            ),
        )
    )


@MODELS.register("lenet5_dlrt")
def lenet5_dlrt(*, in_channels: int, image_size: int, num_classes: int) -> nn.Module:
    """The wider LeNet-5 (20/50 conv channels, 500 hidden) of the DLRT/TDLRT papers.

    No padding: on 1x28x28 input the trunk ends at 50x4x4 = 800 features and the
    weights (biases excluded) total 430,500, the figure those papers compress.
    """
    side = _lenet_map_size(image_size, 0, "lenet5_dlrt")
    return nn.Sequential(
        OrderedDict(
            features=nn.Sequential(
                nn.Conv2d(in_channels, 20, 5),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(2),
                nn.Conv2d(20, 50, 5),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(2),
            ),
            flatten=nn.Flatten(),
            classifier=nn.Sequential(
                nn.Linear(50 * side * side, 500),
                nn.ReLU(inplace=True),
                nn.Linear(500, num_classes),
            ),
        )
    )


def _conv_bn_relu(cin: int, cout: int) -> list[nn.Module]:
    """3x3 'same' convolution followed by batch norm and ReLU (bias is redundant before BN)."""
    return [
        nn.Conv2d(cin, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    ]


@MODELS.register("cnn4")
def cnn4(*, in_channels: int, image_size: int, num_classes: int) -> nn.Module:
    """The "vanilla 4-layer CNN" of arXiv:2403.14379, whose exact layout is unpublished.

    Our choice: four 3x3/pad-1 conv-BN-ReLU blocks widening 32 -> 64 -> 128 -> 256,
    with 2x2 max-pooling after the second and third, then global average pooling
    and one linear layer. Global pooling makes it independent of ``image_size``.
    """
    require(image_size >= 4, f"cnn4: image_size must be >= 4, got {image_size}")
    return nn.Sequential(
        OrderedDict(
            features=nn.Sequential(
                *_conv_bn_relu(in_channels, 32),
                *_conv_bn_relu(32, 64),
                nn.MaxPool2d(2),
                *_conv_bn_relu(64, 128),
                nn.MaxPool2d(2),
                *_conv_bn_relu(128, 256),
            ),
            pool=nn.AdaptiveAvgPool2d(1),
            flatten=nn.Flatten(),
            classifier=nn.Sequential(nn.Linear(256, num_classes)),
        )
    )
