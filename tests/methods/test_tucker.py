"""`method=tucker`: fixed-rank partial Tucker by truncated HOSVD."""
from __future__ import annotations

import pytest
import torch

from tests.conftest import LENET_LAYERS, method_cfg, raises_one_line
from tnbench.layers.tucker import TuckerConv2d
from tnbench.methods import build_method
from tnbench.models import build_model


def test_tucker_method_reports_errors_that_match_the_reconstruction():
    torch.manual_seed(9)
    model = build_model("lenet5_dlrt", in_channels=1, image_size=28, num_classes=10).double()
    dense = {n: m.weight.detach().clone() for n, m in model.named_modules() if hasattr(m, "weight")}
    reports = build_method(method_cfg("tucker", ranks=[0.5, 8], layers=LENET_LAYERS[1:])).compress(model)
    assert [r.name for r in reports] == ["features.3", "classifier.0"]
    conv = model.get_submodule("features.3")
    assert isinstance(conv, TuckerConv2d) and conv.ranks() == [25, 8]
    assert reports[0].ranks == [25, 8] and reports[1].ranks == [250, 8]
    for r in reports:
        w, approx = dense[r.name], model.get_submodule(r.name).dense_weight().detach()
        assert r.relative_error == pytest.approx(float((w - approx).norm() / w.norm()), rel=1e-9)
        assert r.norm_loss == pytest.approx(1 - float(approx.norm() / w.norm()), rel=1e-9)
        assert r.weight_params_compressed < r.weight_params_dense
    assert model(torch.randn(2, 1, 28, 28, dtype=torch.float64)).shape == (2, 10)


@pytest.mark.parametrize("name,kw,match", [
    ("tucker", {"ranks": [600, 4]}, "rank 600 for mode out of layer features.3 exceeds the mode size 50$"),
    ("tucker", {"ranks": [0.5, 0.5, 0.5]}, "method.ranks has 3 entries for 2 modes"),
    ("tucker", {"ranks": -2}, "method.ranks entries"),
    ("tucker", {"ranks": 1.5}, "method.ranks entries"),
])
def test_bad_settings_are_one_line_config_errors(name, kw, match):
    with raises_one_line(match):
        method = build_method(method_cfg(name, layers=LENET_LAYERS[1:], **kw))
        method.compress(build_model("lenet5_dlrt", in_channels=1, image_size=28, num_classes=10))
