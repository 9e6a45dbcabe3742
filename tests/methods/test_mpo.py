"""`method=mpo`: TT-matrix Linear layers, convolutions dense."""
from __future__ import annotations

import pytest
import torch

from tests.conftest import method_cfg, raises_one_line, run_in_process
from tnbench.layers.tensorized import TTConv2d, TTLinear
from tnbench.methods import build_method

pytestmark = pytest.mark.usefixtures("one_thread")


def test_mpo_tensorizes_linear_layers_and_tt_convs_too(lenet):
    x = torch.randn(3, 1, 28, 28)
    model = lenet()
    reports = build_method(method_cfg("mpo", bond_dim=4)).compress(model)
    assert [(r.name, r.compressed) for r in reports] == [("features.3", False), ("classifier.0", True), ("classifier.2", True)]
    assert isinstance(model.classifier[0], TTLinear) and model.classifier[0].out_factors == [6, 5, 4]
    assert model(x).shape == (3, 10)
    model = lenet()
    reports = build_method(method_cfg("tt", bond_dim=4, factors={"classifier.0": {"out": [4, 5, 6], "in": [4, 10, 10]}})).compress(model)
    assert all(r.compressed for r in reports) and isinstance(model.features[3], TTConv2d)
    assert model.classifier[0].in_factors == [4, 10, 10]
    assert all(0 < r.weight_params_compressed < r.weight_params_dense and r.ranks for r in reports)
    assert model(x).shape == (3, 10)


@pytest.mark.parametrize("name,kw,match", [
    ("mpo", {"bond_dim": 0}, "method.bond_dim must be >= 1"),
    ("mpo", {"tolerance": [2.0, 10.0]}, r"method.tolerance a must be in \(0, 1\]"),
    ("mpo", {"tolerance": [1e-3, 0.5]}, "method.tolerance b must be >= 1"),
    ("mpo", {"init": "xavier"}, "method.init must be one of"),
    ("mpo", {"target_norm": "huge"}, "method.target_norm must be"),
    ("mpo", {"factors": {"classifier.0": {"out": [4, 5, 6], "in": [3, 10, 10]}}},
     r"method.factors.classifier.0.in factors \[3, 10, 10\] multiply to 300, not the layer size 400"),
    ("mpo", {"factors": {"classifier.0": {"out": [4, 5, 6]}}}, "must be {out:"),
    ("mpo", {"factors": 3}, "method.factors must be null or"),
])
def test_bad_settings_are_one_line_config_errors(name, kw, match, lenet):
    with raises_one_line(match):
        build_method(method_cfg(name, **kw)).compress(lenet())


def test_mpo_pipeline_run_writes_an_ok_record(tmp_path):
    rec = run_in_process(tmp_path, "method=mpo", "logger=none")
    assert rec["status"] == "ok", rec.get("error")
    assert rec["method"] == "mpo" and rec["params_compressed"] < rec["params_dense"]
    assert rec["ranks"]["classifier.0"] == [8, 8]
    assert rec["layers"][1]["extra"]["layout"] == "tt-matrix"
