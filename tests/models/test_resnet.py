"""ResNet-50 (tnbench.models.resnet)."""
from __future__ import annotations

import pytest
from torch import nn

from tnbench.models import build_model


def _count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_resnet50_parameter_count_and_stem() -> None:
    model = build_model("resnet50", in_channels=3, image_size=32, num_classes=10)
    assert _count(model) == pytest.approx(23.5e6, rel=0.05)
    assert model.conv1.kernel_size == (3, 3) and model.conv1.stride == (1, 1)
    assert isinstance(model.maxpool, nn.Identity)
