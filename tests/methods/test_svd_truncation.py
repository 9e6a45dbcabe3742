"""`method=svd_truncation` (arXiv 2403.14379): the norm-loss target, factorized or dense, layer selection, bad settings."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from tests.conftest import method_cfg, raises_one_line, run_in_process
from tnbench.functional.approximation import truncation_curves
from tnbench.functional.bipartition import CUTS, spectrum, truncated_kernel
from tnbench.layers import LowRankLinear
from tnbench.layers.bipartition import BipartitionConv2d
from tnbench.methods import build_method
from tnbench.models import build_model


@pytest.mark.parametrize("cut", list(CUTS))
def test_svd_truncation_method_hits_the_norm_loss_and_keeps_outputs(cut):
    torch.manual_seed(0)
    model = build_model("lenet5", in_channels=1, image_size=28, num_classes=10).double()
    x = torch.randn(3, 1, 28, 28, dtype=torch.float64)
    before = model(x)
    dense = build_model("lenet5", in_channels=1, image_size=28, num_classes=10).double()
    dense.load_state_dict(model.state_dict())
    reports = build_method(method_cfg("svd_truncation", cut=cut, norm_loss=0.2)).compress(model)
    assert [r.name for r in reports] == ["features.0", "features.3"]  # convs only by default
    for r in reports:
        s = spectrum(dense.get_submodule(r.name).weight, cut)
        assert r.norm_loss <= 0.2 + 1e-9
        assert r.ranks[0] == 1 or float(truncation_curves(s)[0][r.ranks[0] - 1]) > 0.2
        assert r.extra["cut"] == cut and r.extra["max_rank"] == s.numel()
    # the truncated model equals the dense model with truncated kernels
    for r in reports:
        with torch.no_grad():
            dense.get_submodule(r.name).weight.copy_(truncated_kernel(dense.get_submodule(r.name).weight, cut, r.ranks[0]))
    assert torch.allclose(model(x), dense(x), atol=1e-9)
    # zero truncation reproduces the original outputs, factorized or not
    for factorized in (True, False):
        torch.manual_seed(0)
        fresh = build_model("lenet5", in_channels=1, image_size=28, num_classes=10).double()
        build_method(method_cfg("svd_truncation", cut=cut, norm_loss=0.0, factorized=factorized)).compress(fresh)
        assert torch.allclose(fresh(x), before, atol=1e-9)


def test_factorized_flag_and_parameter_savings():
    torch.manual_seed(0)
    model = build_model("cnn4", in_channels=1, image_size=28, num_classes=10)
    reports = build_method(method_cfg("svd_truncation", cut="out_kh", rank=2, layers="deep")).compress(model)
    assert [r.name for r in reports] == ["features.7", "features.11"]  # the second half of the convs
    assert all(isinstance(model.get_submodule(r.name), BipartitionConv2d) for r in reports)
    assert all(r.weight_params_compressed < r.weight_params_dense for r in reports)
    model = build_model("cnn4", in_channels=1, image_size=28, num_classes=10)
    reports = build_method(method_cfg("svd_truncation", cut="out_kh", rank=2, layers="shallow",
                                      factorized=False)).compress(model)
    assert [r.name for r in reports] == ["features.0", "features.3"]
    assert all(type(model.get_submodule(r.name)) is nn.Conv2d for r in reports)
    assert all(r.weight_params_compressed == r.weight_params_dense and "dense" in r.note for r in reports)
    # KH cut keeping all 3 rows: the factors would be larger, so the kernel stays dense
    model = build_model("cnn4", in_channels=1, image_size=28, num_classes=10)
    (r,) = build_method(method_cfg("svd_truncation", cut="kh", rank=3, layers=["features.7"])).compress(model)
    assert type(model.get_submodule("features.7")) is nn.Conv2d and "not smaller" in r.note


def test_linear_layers_only_when_asked():
    torch.manual_seed(0)
    model = build_model("lenet5", in_channels=1, image_size=28, num_classes=10)
    reports = build_method(method_cfg("svd_truncation", cut="out_kw", rank=4, include_linear=True,
                                      layers="all")).compress(model)
    kinds = [r.kind for r in reports]
    assert kinds == ["conv", "conv", "linear", "linear", "linear"]
    assert isinstance(model.classifier[0], LowRankLinear)
    assert "OUT | IN" in reports[2].note


@pytest.mark.parametrize("kw,match", [
    ({"cut": "diag"}, "method.cut must be one of out, in, kh, kw, out_in, out_kh, out_kw; got 'diag'"),
    ({"norm_loss": 1.0}, r"method.norm_loss must be in \[0, 1\) or null, got 1.0"),
    ({"norm_loss": -0.1}, r"method.norm_loss must be in \[0, 1\)"),
    ({"rank": 0}, "method.rank must be >= 1 or null, got 0"),
    ({"rel_error": 1.5}, r"method.rel_error must be in \[0, 1\)"),
    ({"rank": 2, "rel_error": 0.1}, "method.rank and method.rel_error are both set"),
    ({"norm_loss": None}, "set one of method.norm_loss"),
    ({"layers": "middle"}, "method.layers names unknown layer"),
])
def test_bad_truncation_settings_are_one_line_config_errors(kw, match):
    with raises_one_line(match):
        build_method(method_cfg("svd_truncation", **kw)).compress(
            build_model("lenet5", in_channels=1, image_size=28, num_classes=10))


@pytest.mark.parametrize("budget", ["budget.ratio=1.02", "budget.flops=600000"])
def test_a_budget_computes_each_layers_svd_once_and_compresses_as_without_one(tmp_path, decompositions, budget):
    """The search sizes the layers from their singular values (budget.ratio) or compresses copies
    (budget.flops); compress cuts the same SVD. One SVD per selected layer in the run, and the
    layers are those of a run at the chosen norm_loss without a budget."""
    quick = ["logger=none", "method=svd_truncation", "pipeline.retrain_epochs=0", "trainer.measure_speed=false"]
    rec = run_in_process(tmp_path, *quick, budget, name="budget")
    assert rec["status"] == "ok" and len(rec["budget_search"]["evaluations"]) > 3
    assert decompositions == {"svd": len(rec["layers"])} == {"svd": 2}  # LeNet-5's two convs
    plain = run_in_process(tmp_path, *quick, f"method.norm_loss={rec['budget_knob']['norm_loss']}", name="plain")
    assert plain["layers"] == rec["layers"] and plain["acc_compressed"] == rec["acc_compressed"]
