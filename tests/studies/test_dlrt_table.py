"""The DLRT settings study's table (tnbench.studies.dlrt_table): both counting rules per run."""
from __future__ import annotations

import pytest

from tnbench.functional.counting import stored_matrix_params
from tnbench.reporting.records import write_record
from tnbench.studies.dlrt_table import build

SHAPES = {"features.0": [20, 1, 5, 5], "features.3": [50, 20, 5, 5], "classifier.0": [500, 800]}


def test_each_run_has_its_rate_under_both_rules(tmp_path):
    layers = [{"name": n, "shape": s, "ranks": [r], "weight_params_dense": s[0] * (s[1] * (s[2] * s[3] if len(s) > 2 else 1)),
               "weight_params_compressed": stored_matrix_params(s, r), "compressed": True}
              for (n, s), r in zip(SHAPES.items(), (9, 16, 28))]
    method = {"name": "dlrt", "tau": 0.15, "rank_cap": "half", "init": "random", "rank_init": "cap"}
    write_record(tmp_path / "a", {"status": "ok", "method": "dlrt", "layers": layers, "weights_dense": 430_500,
                                  "ranks": {n: [r] for n, r in zip(SHAPES, (9, 16, 28))}, "acc_selected": 85.0,
                                  "acc_dense_twin": 86.0, "selected_epoch": 2,
                                  "config": {"method": method, "pipeline": {"select": "best_val_loss", "retrain_epochs": 3}}})
    write_record(tmp_path / "b", {"status": "ok", "method": "none", "acc_retrained": 86.5,
                                  "config": {"method": {"name": "none"}, "pipeline": {"retrain_epochs": 3}}})
    df = build(tmp_path)
    official = df[df["settings"] == "official"].iloc[0]
    assert official["rate stored (%)"] == pytest.approx(89.02, abs=0.01)
    assert official["rate dlrt rule (%)"] == pytest.approx(100 * (1 - 20_033 / 430_500))
    assert official["vs dense (pts)"] == pytest.approx(-1.0) and official["ranks"] == "9; 16; 28"
    assert official["published acc / ranks / rate dlrt rule / rate stored (MNIST)"] == "98.14 / 9;16;28 / 95.3 / 89.0"
    assert df.iloc[0]["settings"] == "dense"
