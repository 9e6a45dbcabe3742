"""Low-rank math and layers against dense reconstructions; the SVD method on real models."""
import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from tnbench.errors import ConfigError
from tnbench.functional.approximation import norm_loss, rank_for_energy, relative_error, truncation_curves
from tnbench.functional.lowrank import matricize_conv, truncated_svd
from tnbench.layers import LowRankConv2d, LowRankLinear
from tnbench.methods import METHODS, build_method
from tnbench.methods.base import select_layers
from tnbench.models import build_model
from tnbench.pipeline.metrics import compression_summary, count_flops, count_params, recovery_epochs


def svd_cfg(**kw):
    base = OmegaConf.structured(METHODS.get("svd").config_class)
    return OmegaConf.merge(base, kw)


def test_truncated_svd_is_best_rank_r_and_norms_follow_spectrum():
    torch.manual_seed(0)
    w = torch.randn(30, 50, dtype=torch.float64)
    a, b, s = truncated_svd(w, 7)
    approx = a @ b
    assert torch.linalg.matrix_rank(approx) == 7
    err = torch.linalg.norm(w - approx) / torch.linalg.norm(w)
    losses, errors = truncation_curves(s)
    assert err == pytest.approx(float(errors[7]), rel=1e-10)
    assert err == pytest.approx(relative_error(w, approx), rel=1e-10)
    assert 1 - torch.linalg.norm(approx) / torch.linalg.norm(w) == pytest.approx(float(losses[7]), rel=1e-10)
    assert norm_loss(w, approx) == pytest.approx(float(losses[7]), rel=1e-10)
    # full rank reproduces the matrix exactly and loses nothing
    a, b, s = truncated_svd(w, 100)
    assert torch.allclose(a @ b, w, atol=1e-12)
    assert float(truncation_curves(s)[0][30]) == pytest.approx(0.0, abs=1e-15)


def test_rank_for_energy_is_smallest_rank_meeting_it():
    s = torch.tensor([4.0, 2.0, 1.0, 1.0])  # squares 16, 4, 1, 1 of 22
    assert rank_for_energy(s, 16 / 22) == 1
    assert rank_for_energy(s, 16 / 22 + 1e-6) == 2
    assert rank_for_energy(s, 0.99) == 4
    assert rank_for_energy(s, 1.0) == 4
    with pytest.raises(ValueError):
        rank_for_energy(s, 0.0)


def test_lowrank_linear_equals_dense_with_truncated_weight():
    torch.manual_seed(1)
    dense = nn.Linear(40, 24).double()
    layer, s = LowRankLinear.from_dense(dense, 5)
    a, b, _ = truncated_svd(dense.weight.detach(), 5)
    x = torch.randn(8, 40, dtype=torch.float64)
    ref = x @ (a @ b).T + dense.bias
    assert torch.allclose(layer(x), ref, atol=1e-12)
    assert torch.allclose(layer.dense_weight(), a @ b, atol=1e-12)
    assert layer.weight_params() == 5 * (40 + 24)


@pytest.mark.parametrize("stride,padding,dilation", [(1, 0, 1), (2, 1, 1), (1, 2, 2)])
def test_lowrank_conv_equals_dense_conv_with_truncated_kernel(stride, padding, dilation):
    torch.manual_seed(2)
    conv = nn.Conv2d(6, 10, 3, stride=stride, padding=padding, dilation=dilation).double()
    layer, _ = LowRankConv2d.from_dense(conv, 4)
    a, b, _ = truncated_svd(matricize_conv(conv.weight.detach()), 4)
    kernel = (a @ b).reshape(conv.weight.shape)
    x = torch.randn(2, 6, 13, 13, dtype=torch.float64)
    ref = nn.functional.conv2d(x, kernel, conv.bias, stride, padding, dilation)
    assert torch.allclose(layer(x), ref, atol=1e-12)
    # zero truncation (full rank) reproduces the original conv
    full, _ = LowRankConv2d.from_dense(conv, 10)
    assert torch.allclose(full(x), conv(x), atol=1e-10)


def test_svd_method_compresses_middle_layers_of_lenet5():
    torch.manual_seed(0)
    model = build_model("lenet5", in_channels=1, image_size=28, num_classes=10)
    dense_params = count_params(model)
    dense_flops = count_flops(model, (1, 28, 28))
    x = torch.randn(4, 1, 28, 28)
    method = build_method(svd_cfg(rank=4))
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
    assert count_flops(model, (1, 28, 28)) < dense_flops
    assert 0 < summary["norm_loss"]["mean"] < 1


def test_svd_method_energy_one_keeps_accuracy_exactly():
    torch.manual_seed(0)
    model = build_model("fc2", in_channels=1, image_size=28, num_classes=10, hidden=64).double()
    x = torch.randn(5, 1, 28, 28, dtype=torch.float64)
    before = model(x)
    reports = build_method(svd_cfg(energy=1.0, layers="all", skip_if_larger=False)).compress(model)
    assert all(r.norm_loss == pytest.approx(0, abs=1e-12) for r in reports)
    assert torch.allclose(model(x), before, atol=1e-9)


def test_svd_method_skips_layers_where_factors_are_larger():
    model = build_model("fc2", in_channels=1, image_size=28, num_classes=10, hidden=16)
    reports = build_method(svd_cfg(rank=15, layers="all")).compress(model)
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
    with pytest.raises(ConfigError, match=match) as e:
        m = build_method(svd_cfg(**kw))
        m.compress(build_model("lenet5", in_channels=1, image_size=28, num_classes=10))
    assert "\n" not in str(e.value)


def test_recovery_epochs_definition():
    assert recovery_epochs(90.0, 89.6, [], 0.5) == 0
    assert recovery_epochs(90.0, 50.0, [80.0, 89.5, 91.0], 0.5) == 2
    assert recovery_epochs(90.0, 50.0, [80.0, 89.4], 0.5) is None
