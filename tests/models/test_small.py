"""The small models (tnbench.models.small): LeNet-5 variants' sizes."""
from __future__ import annotations

import pytest
import torch

from tnbench.models import build_model


def test_lenet5_dlrt_weight_count() -> None:
    model = build_model("lenet5_dlrt", in_channels=1, image_size=28, num_classes=10)
    weights = sum(p.numel() for n, p in model.named_parameters() if n.endswith("weight"))
    assert weights == 430_500


def test_lenet5_flatten_size_follows_image_size() -> None:
    for size in (28, 32, 40, 64):
        model = build_model("lenet5", in_channels=3, image_size=size, num_classes=10)
        assert model(torch.randn(1, 3, size, size)).shape == (1, 10)


def test_image_too_small_for_lenet() -> None:
    with pytest.raises(ValueError, match=r"lenet5_dlrt: image_size must be >= \d+ \(its conv/pool trunk\), got 8"):
        build_model("lenet5_dlrt", in_channels=1, image_size=8, num_classes=10)
