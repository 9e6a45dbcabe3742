"""`method=adtn` (arXiv 2305.06058): groups, settings, one network per group, the record of a pipeline run."""
from __future__ import annotations

import pytest
import torch

from tests.conftest import QUICK, compose
from tnbench.errors import ConfigError
from tnbench.functional.brickwall import adtn_params
from tnbench.layers.brickwall import BrickWallGenerator
from tnbench.methods import build_method
from tnbench.methods.families.brickwall import apportion
from tnbench.models import build_model
from tnbench.pipeline.metrics import count_params

pytestmark = pytest.mark.usefixtures("one_thread")


def test_apportion_sums_exactly():
    assert apportion(10, [1, 1, 1]) == [4, 3, 3]
    assert sum(apportion(1153, [401408, 5120, 3])) == 1153
    assert apportion(7, [100, 0]) == [7, 0]


def _method(tmp_path, *overrides):
    cfg = compose([*QUICK, "model=fc2", "method=adtn", "logger=none", f"paths.results_dir={tmp_path}", *overrides])
    return cfg, build_method(cfg.method)


@pytest.mark.parametrize("override, message", [
    ("method.depth=0", "method.depth must be >= 1, got 0"),
    ("method.qubits=1", "method.qubits must be in [2, 30] or null, got 1"),
    ("method.init=zeros", "method.init must be one of near_identity, random; got 'zeros'"),
    ("method.fit_lr=0", "method.fit_lr must be > 0, got 0"),
    ("method.groups=some", "method.groups must be one of each, all"),
    ("method.groups=[[classifier.0],[classifier.0,classifier.2]]", "in more than one group"),
    ("method.checkpoint=most", "method.checkpoint must be one of auto, none, sqrt, log"),
    ("method.gates=0", "method.gates must be >= 1 or null, got 0"),
])
def test_bad_settings_are_one_line_config_errors(tmp_path, override, message):
    with pytest.raises(ConfigError) as e:
        _method(tmp_path, override)
    assert message in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("overrides, message", [
    (["method.qubits=12"], "method.qubits=12 is too small for group 0 (classifier.0): 401408 weights need qubits >= 19"),
    (["method.groups=[[classifier.0,classifier.9]]"], "method.groups names unknown layer(s) classifier.9; allowed:"),
    (["method.groups=[[flatten]]"], "method.groups names unknown layer(s) flatten"),
    (["method.depth=2", "method.gates=40"], "method.gates=40 is more than the 18 gates of depth 2 on group 0's 19 qubits"),
])
def test_bad_groups_for_the_model_are_one_line_config_errors(tmp_path, overrides, message):
    _, method = _method(tmp_path, *overrides)
    model = build_model("fc2", in_channels=1, image_size=28, num_classes=10)
    with pytest.raises(ConfigError) as e:
        method.compress(model)
    assert message in str(e.value) and "\n" not in str(e.value)
    assert count_params(model) == 407050  # nothing was changed


def test_one_network_for_two_layers_is_built_once_per_forward(tmp_path, monkeypatch):
    _, method = _method(tmp_path, "method.groups=all", "method.fit_steps=5", "method.depth=2")
    model = build_model("fc2", in_channels=1, image_size=8, num_classes=10, hidden=16)
    reports = method.compress(model)
    gen = model.classifier[0].parametrizations["weight"][0].generator
    assert gen is model.classifier[2].parametrizations["weight"][0].generator
    assert [r.weight_params_dense for r in reports] == [1024, 160]
    assert sum(r.weight_params_compressed for r in reports) == gen.trained_params() == adtn_params(11, 2)
    assert method.fits[0]["gates"] == 10 and method.fits[0]["params"] == 16 * 10 + 1
    calls = []
    original = BrickWallGenerator.circuit
    monkeypatch.setattr(BrickWallGenerator, "circuit", lambda self: calls.append(1) or original(self))
    model(torch.randn(3, 1, 8, 8)).sum().backward()
    assert len(calls) == 1
    model(torch.randn(3, 1, 8, 8))
    assert len(calls) == 2


def test_pipeline_record_counts_the_gates(check_gate_record):
    check_gate_record("adtn")


def test_a_gate_budget_cuts_the_last_layer_short(tmp_path):
    _, method = _method(tmp_path, "method.groups=all", "method.fit_steps=2", "method.depth=2", "method.gates=7")
    model = build_model("fc2", in_channels=1, image_size=8, num_classes=10, hidden=16)
    reports = method.compress(model)
    gen = model.classifier[0].parametrizations["weight"][0].generator
    assert gen.positions == [0, 2, 4, 6, 8, 1, 3]  # Q = 11: 5 gates, then 2 of the second layer's 5
    assert sum(r.weight_params_compressed for r in reports) == gen.trained_params() == adtn_params(11, 2, 7) == 113
    assert method.fits[0]["gates"] == 7


def test_vgg16_three_conv_preset_is_as_close_to_the_papers_632_as_16_per_gate_allows():
    from tnbench.functional.brickwall import qubits_for

    cfg = compose(["experiment=adtn_vgg16_cifar10"])
    q = qubits_for(3 * 512 * 512 * 9)
    params = adtn_params(q, cfg.method.depth, cfg.method.gates)
    assert (q, params) == (23, 625)
    # every 16 g + 1 is at least as far from 632
    assert min(abs(16 * g + 1 - 632) for g in range(1, 100)) == abs(params - 632) == 7


def test_a_fit_no_closer_than_zero_weights_is_dropped(tmp_path):
    """Stage 2 gets the circuit the fit started from when the fit ends at a relative distance
    >= fit_max_distance (default 1); such fits left LeNet-5 untrainable (see the family's notes)."""
    def compress(*overrides):
        _, method = _method(tmp_path, "method.fit_steps=30", "method.depth=2", *overrides)
        torch.manual_seed(0)  # the same dense weights and initial gates in every call
        model = build_model("fc2", in_channels=1, image_size=8, num_classes=10, hidden=16)
        reports = method.compress(model)
        return method.fits[0], reports[0], model.classifier[0].weight.detach()

    fit, report, dropped = compress()
    # random dense weights, 145 numbers for 1024: the fit gets closer, but not below 1
    assert 1.0 <= fit["final_distance"] < fit["initial_distance"] and fit["kept"] is False
    _, _, unfitted = compress("method.fit_steps=0")
    torch.testing.assert_close(dropped, unfitted)
    assert report.norm_loss == fit["initial_distance"]
    assert report.relative_error == pytest.approx(fit["initial_distance"], rel=1e-4)
    kept, kept_report, fitted = compress("method.fit_max_distance=null")
    assert kept["kept"] is True and kept_report.norm_loss == kept["final_distance"] == fit["final_distance"]
    assert not torch.allclose(fitted, unfitted)
