"""tnbench from Python: `tnbench.run` / `tnbench.compose` in this process, as a notebook uses them."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

import tnbench
from tests.conftest import QUICK, read_record
from tnbench.errors import ConfigError


def test_import_tnbench_is_light():
    code = "import sys, tnbench; tnbench.run; tnbench.compose; print(sorted(m for m in ('torch', 'lightning') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize("overrides,message", [
    (["method.rank=0"], "method.rank must be >= 1 or null, got 0"),
    (["method=nope"], "method='nope' is not known; allowed: adqc, adtn"),
    (["+sweep=dlrt_lenet5"], "tnbench.run runs one job"),
    (["run_id=../../elsewhere"], r"run_id='../../elsewhere' must be a plain directory name"),
])
def test_bad_input_raises_one_line_config_error(overrides, message, tmp_path):
    with pytest.raises(ConfigError, match=message) as info:
        tnbench.run(overrides=[*overrides, f"paths.results_dir={tmp_path}"])
    assert "\n" not in str(info.value)
    assert not (tmp_path / "runs").exists()  # nothing started


def test_run_returns_the_record_and_the_compressed_model(tmp_path):
    from torch import nn

    from tnbench.layers import LowRankLinear

    overrides = [*QUICK, "logger=none", "method.rank=4", f"paths.results_dir={tmp_path}"]
    result = tnbench.run(overrides=overrides)
    assert result.status == "ok"
    assert read_record(result.run_dir) == json.loads(json.dumps(result.record))
    assert isinstance(result.model, nn.Module) and isinstance(result.model.classifier[0], LowRankLinear)
    assert sum(p.numel() for p in result.model.parameters()) == result.record["params_compressed"]
    # a composed, edited config; run again in the same run dir (a finished record is replaced)
    cfg = tnbench.compose(overrides)
    again = tnbench.run(cfg)
    assert again.run_dir == result.run_dir and again.record["pretrain_cache_hit"] is True
    assert again.record["acc_retrained"] == pytest.approx(result.record["acc_retrained"])
    cfg.method.rank = 2
    assert tnbench.run(cfg).record["ranks"]["classifier.0"] == [2]
