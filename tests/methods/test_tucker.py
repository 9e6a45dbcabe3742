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


def test_a_flops_budget_decomposes_each_mode_once_and_compresses_as_without_one(lenet, decompositions):
    """A FLOP budget compresses copies at many rank fractions; they share the modes' singular pairs
    with the model (methods.base.weight_pairs, copy_model), so the search and the compression
    after it decompose each factored mode once, as a plain compression does, with the same layers
    (skip_if_larger off: every layer is factored at every fraction)."""
    from omegaconf import OmegaConf

    from tnbench.pipeline.budget import sizer

    plain = lenet()
    build_method(method_cfg("tucker", ranks=0.3, skip_if_larger=False)).compress(plain)
    once = dict(decompositions)
    decompositions.clear()
    net, section = lenet(), method_cfg("tucker", skip_if_larger=False)
    knob = build_method(section).knob
    size = sizer(OmegaConf.create({"method": section}), knob, net, "flops", (1, 28, 28))
    # fractions at which no mode asks for more vectors than its unfolding has columns (that would
    # take a tall unfolding's full basis, a decomposition of its own)
    assert size(0.1) < size(0.2) < size(0.3)
    build_method(method_cfg("tucker", ranks=0.3, skip_if_larger=False)).compress(net)
    assert decompositions == once and sum(once.values()) == 6  # out and in of features.3, classifier.0, .2
    assert net.state_dict().keys() == plain.state_dict().keys()
    assert all(torch.equal(v, plain.state_dict()[k]) for k, v in net.state_dict().items())
