"""`method=cp` and its preset `method=cp_truncation` (conf/method/cp_truncation.yaml: cp without retraining)."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from tests.conftest import compose, method_cfg, raises_one_line
from tnbench.layers.cp import CPConv2d
from tnbench.methods import build_method
from tnbench.models import build_model


def test_cp_method_replaces_convs_and_dense_option():
    torch.manual_seed(0)
    model = build_model("cnn4", in_channels=1, image_size=28, num_classes=10)
    x = torch.randn(2, 1, 28, 28)
    reports = build_method(method_cfg("cp", rank=4, n_iter_max=10, layers="deep")).compress(model)
    assert [r.name for r in reports] == ["features.7", "features.11"]
    assert all(isinstance(model.get_submodule(r.name), CPConv2d) for r in reports)
    assert all(0 < r.relative_error < 1 and r.ranks == [4] for r in reports)
    assert model(x).shape == (2, 10)
    model = build_model("lenet5", in_channels=1, image_size=28, num_classes=10)
    reports = build_method(method_cfg("cp", rank=2, n_iter_max=10, factorized=False)).compress(model)
    assert all(type(model.get_submodule(r.name)) is nn.Conv2d for r in reports)


@pytest.mark.parametrize("kw,match", [
    ({"rank": 0}, "method.rank must be >= 1, got 0"),
    ({"init": "tucker"}, "method.init must be one of svd, random"),
    ({"n_iter_max": 0}, "method.n_iter_max must be >= 1"),
])
def test_bad_cp_settings_are_one_line_config_errors(kw, match):
    with raises_one_line(match):
        build_method(method_cfg("cp", **kw))


def test_truncation_configs_compose():
    cfg = compose(["method=svd_truncation", "method.cut=out_kw", "method.norm_loss=0.5"])
    assert cfg.method.name == "svd_truncation" and cfg.method.paper == "arXiv:2403.14379"
    build_method(cfg.method)
    cfg = compose(["method=cp_truncation", "method.rank=4"])
    assert cfg.method.name == "cp" and cfg.method.rank == 4
    build_method(cfg.method)


def test_cp_truncation_is_cp_without_retraining():
    cfg = compose(["method=cp_truncation"])
    assert cfg.method.name == "cp" and cfg.pipeline.retrain_epochs == 0
    assert compose(["method=cp"]).pipeline.retrain_epochs > 0
