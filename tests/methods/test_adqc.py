"""`method=adqc`: ADTN with orthogonal gates."""
from __future__ import annotations

import pytest
import torch

from tests.conftest import method_cfg
from tnbench.functional.brickwall import adqc_params
from tnbench.methods import build_method
from tnbench.models import build_model

pytestmark = pytest.mark.usefixtures("one_thread")


def test_pipeline_record_counts_the_gates(check_gate_record):
    check_gate_record("adqc")


def test_adqc_generates_the_weights_with_orthogonal_gates():
    torch.manual_seed(0)
    model = build_model("fc2", in_channels=1, image_size=8, num_classes=10, hidden=16)
    reports = build_method(method_cfg("adqc", groups="all", fit_steps=5, depth=2)).compress(model)
    gen = model.classifier[0].parametrizations["weight"][0].generator
    assert gen is model.classifier[2].parametrizations["weight"][0].generator  # one network for the group
    # 64*16 + 16*10 = 1184 weights -> Q = 11; 6 numbers a gate, not ADTN's 16
    assert sum(r.weight_params_compressed for r in reports) == gen.trained_params() == adqc_params(11, 2)
    g = gen.gates.detach()
    assert (g.transpose(1, 2) @ g - torch.eye(4, dtype=g.dtype)).abs().max() < 1e-5
    assert (torch.linalg.det(g) - 1).abs().max() < 1e-5
