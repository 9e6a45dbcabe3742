"""`method=none`: the dense baseline."""
from __future__ import annotations

import pytest

from tests.conftest import run_in_process


def test_dense_baseline_recovers_trivially(tmp_path):
    rec = run_in_process(tmp_path, "method=none", "logger=none")
    assert rec["status"] == "ok"
    assert rec["recovery_epochs"] == 0
    assert rec["compression_ratio"] == 1.0
    assert rec["acc_compressed"] == pytest.approx(rec["acc_pretrain"])
    assert rec["layers"] == []
