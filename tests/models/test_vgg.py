"""VGG-16 (tnbench.models.vgg)."""
from __future__ import annotations

import pytest
from torch import nn

from tnbench.models import build_model


def _count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_vgg16_parameter_count() -> None:
    model = build_model("vgg16", in_channels=3, image_size=32, num_classes=10)
    assert _count(model) == pytest.approx(15e6, rel=0.10)
