"""`method=svd` on real models: which layers, the energy criterion, skipped layers, bad settings."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from tests.conftest import method_cfg, raises_one_line
from tnbench.layers import LowRankConv2d
from tnbench.methods import build_method
from tnbench.methods.base import select_layers
from tnbench.models import build_model
from tnbench.pipeline.metrics import compression_summary, count_flops, count_params


def test_svd_method_compresses_middle_layers_of_lenet5():
    torch.manual_seed(0)
    model = build_model("lenet5", in_channels=1, image_size=28, num_classes=10)
    dense_params = count_params(model)
    dense_flops = count_flops(model, (1, 28, 28))["total"]
    x = torch.randn(4, 1, 28, 28)
    method = build_method(method_cfg("svd", rank=4))
    reports = method.compress(model)
    names = [r.name for r in reports if r.compressed]
    layers = [n for n, _ in select_layers(build_model("lenet5", in_channels=1, image_size=28, num_classes=10), "all")]
    assert names == layers[1:-1]  # first and last stay dense by default
    assert all(r.ranks == [4] for r in reports)
    assert isinstance(model.get_submodule(layers[1]), LowRankConv2d)
    assert model(x).shape == (4, 10)
    summary = compression_summary(dense_params, count_params(model), [r.as_dict() for r in reports])
    assert summary["compression_ratio"] > 1
    assert 0 < summary["compression_rate"] < 100
    assert count_flops(model, (1, 28, 28))["total"] < dense_flops
    assert 0 < summary["norm_loss"]["mean"] < 1


def test_svd_method_energy_one_keeps_accuracy_exactly():
    torch.manual_seed(0)
    model = build_model("fc2", in_channels=1, image_size=28, num_classes=10, hidden=64).double()
    x = torch.randn(5, 1, 28, 28, dtype=torch.float64)
    before = model(x)
    reports = build_method(method_cfg("svd", energy=1.0, layers="all", skip_if_larger=False)).compress(model)
    assert all(r.norm_loss == pytest.approx(0, abs=1e-12) for r in reports)
    assert torch.allclose(model(x), before, atol=1e-9)


def test_svd_method_skips_layers_where_factors_are_larger():
    model = build_model("fc2", in_channels=1, image_size=28, num_classes=10, hidden=16)
    reports = build_method(method_cfg("svd", rank=15, layers="all")).compress(model)
    # 784x16 at rank 15 is smaller; 16x10 at rank 10 is not
    assert [r.compressed for r in reports] == [True, False]
    assert isinstance(model.classifier[-1], nn.Linear)


@pytest.mark.parametrize("kw,match", [
    ({"rank": 0}, "method.rank must be >= 1"),
    ({"rank": None}, "method.rank or method.energy"),
    ({"energy": 1.5}, "method.energy must be in"),
    ({"layers": ["nope"]}, "method.layers names unknown layer"),
])
def test_svd_method_bad_settings_are_one_line_errors(kw, match):
    with raises_one_line(match):
        m = build_method(method_cfg("svd", **kw))
        m.compress(build_model("lenet5", in_channels=1, image_size=28, num_classes=10))
