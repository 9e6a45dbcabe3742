"""Every registered model (tnbench.models) builds, trains one step on each dataset geometry, runs channels-last;
bad names and options are one-line errors."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from tnbench.errors import UnknownEntry
from tnbench.models import MODELS, build_model

MNIST = (1, 28, 10)


CIFAR10 = (3, 32, 10)


CIFAR100 = (3, 32, 100)


SMALL = ["fc2", "lenet5", "lenet5_dlrt", "cnn4"]


LARGE = ["vgg16", "resnet50"]


CASES = [(m, g) for m in SMALL for g in (MNIST, CIFAR10, CIFAR100)] + [
    ("vgg16", CIFAR10),
    ("vgg16", CIFAR100),
    ("vgg16", MNIST),
    ("resnet50", CIFAR10),
]


def test_registry_lists_all_models() -> None:
    assert MODELS.names() == sorted(SMALL + LARGE)


def _case_id(case: tuple[str, tuple[int, int, int]]) -> str:
    name, (channels, size, classes) = case
    return f"{name}-{channels}x{size}x{size}-{classes}cls"


@pytest.mark.parametrize("name,geometry", CASES, ids=[_case_id(c) for c in CASES])
def test_one_training_step(name: str, geometry: tuple[int, int, int]) -> None:
    torch.manual_seed(0)
    channels, size, classes = geometry
    model = build_model(name, in_channels=channels, image_size=size, num_classes=classes)
    batch = 2 if name in LARGE else 4
    x = torch.randn(batch, channels, size, size)
    y = torch.randint(0, classes, (batch,))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}

    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    logits = model(x)
    assert logits.shape == (batch, classes)
    loss = F.cross_entropy(logits, y)
    assert torch.isfinite(loss)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()

    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    if name == "resnet50":
        # zero_init_residual zeroes each block's last BN scale, so the convs inside the
        # residual branches get no gradient on the first step; stem and head must move.
        assert {"conv1.weight", "fc.weight", "fc.bias"} <= changed
    else:
        assert changed == set(before)


def test_unknown_model_lists_allowed_names() -> None:
    with pytest.raises(UnknownEntry) as info:
        build_model("alexnet", in_channels=3, image_size=32, num_classes=10)
    message = str(info.value)
    assert "\n" not in message
    for name in SMALL + LARGE:
        assert name in message


@pytest.mark.parametrize(
    "name,options",
    [
        ("fc2", {"hidden": 0}),
        ("vgg16", {"dropout": 1.5}),
        ("lenet5", {"hidden": 10}),  # lenet5 has no options at all
    ],
)
def test_bad_option_is_one_line_value_error(name: str, options: dict) -> None:
    with pytest.raises(ValueError) as info:
        build_model(name, in_channels=1, image_size=28, num_classes=10, **options)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("name", SMALL + LARGE)
def test_channels_last(name: str) -> None:
    torch.manual_seed(0)
    model = build_model(name, in_channels=3, image_size=32, num_classes=10).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = model(x)
        model = model.to(memory_format=torch.channels_last)
        got = model(x.to(memory_format=torch.channels_last))
    assert got.shape == (2, 10)
    assert torch.isfinite(got).all()
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
