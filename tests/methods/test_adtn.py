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
])
def test_bad_settings_are_one_line_config_errors(tmp_path, override, message):
    with pytest.raises(ConfigError) as e:
        _method(tmp_path, override)
    assert message in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("overrides, message", [
    (["method.qubits=12"], "method.qubits=12 is too small for group 0 (classifier.0): 401408 weights need qubits >= 19"),
    (["method.groups=[[classifier.0,classifier.9]]"], "method.groups names unknown layer(s) classifier.9; allowed:"),
    (["method.groups=[[flatten]]"], "method.groups names unknown layer(s) flatten"),
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
    calls = []
    original = BrickWallGenerator.circuit
    monkeypatch.setattr(BrickWallGenerator, "circuit", lambda self: calls.append(1) or original(self))
    model(torch.randn(3, 1, 8, 8)).sum().backward()
    assert len(calls) == 1
    model(torch.randn(3, 1, 8, 8))
    assert len(calls) == 2


def test_pipeline_record_counts_the_gates(check_gate_record):
    check_gate_record("adtn")
