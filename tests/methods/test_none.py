"""`method=none`: the dense baseline."""
from __future__ import annotations

import pytest
import torch

from tests.conftest import method_cfg, run_in_process
from tnbench.methods import build_method
from tnbench.models import build_model


def test_none_leaves_the_model_as_it_is():
    model = build_model("lenet5", in_channels=1, image_size=28, num_classes=10)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    method = build_method(method_cfg("none"))
    assert method.compress(model) == []
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items()) and len(before) == len(model.state_dict())
    assert method.callbacks() == [] and method.describe(model) is None and method.extra_record() == {}


def test_dense_baseline_recovers_trivially(tmp_path):
    rec = run_in_process(tmp_path, "method=none", "logger=none")
    assert rec["status"] == "ok"
    assert rec["recovery_epochs"] == 0
    assert rec["compression_ratio"] == 1.0
    assert rec["acc_compressed"] == pytest.approx(rec["acc_pretrain"])
    assert rec["layers"] == []
