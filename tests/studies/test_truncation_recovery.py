"""The truncation recovery study (tnbench.studies.truncation_recovery): dense and factorized
series of real jobs, their table and plots, resuming, bad grids."""
from __future__ import annotations

import pandas as pd
import pytest

from tests.conftest import raises_one_line

ARGS = ["dataset=synthetic", "dataset.train_size=64", "dataset.test_size=64", "pipeline.pretrain_epochs=1",
        "trainer.progress=false"]


def test_recovery_runs_both_series_and_a_control_then_resumes(tmp_path, capsys):
    from tnbench.studies.truncation_recovery import main

    argv = [*ARGS, f"paths.results_dir={tmp_path}", "--norm-losses", "0.5", "--retrain-epochs", "1"]
    out = main(argv)
    assert out == tmp_path / "studies" / "truncation_lenet5_synthetic" / "recovery"
    frame = pd.read_csv(out / "recovery.csv")
    assert sorted(frame.series) == ["control", "dense", "factorized"]
    dense, fact = (frame[frame.series == s].iloc[0] for s in ("dense", "factorized"))
    # the same truncation in both series; only the factorized one stores factors
    assert dense.norm_loss == pytest.approx(fact.norm_loss) and 0 < dense.norm_loss <= 0.5
    assert dense.norm_loss_energy == pytest.approx(1 - (1 - dense.norm_loss) ** 2, abs=0.05)  # mean of 2 layers
    assert 0 < dense.correlation_loss < 1
    assert dense.compression_rate == 0 and fact.compression_rate > 0
    assert {"acc_compressed", "acc_epoch_1", "recovery_epochs"} <= set(frame.columns)
    for name in ("recovery.png", "recovery_epochs.png", "study.json"):
        assert (out / name).stat().st_size > 0
    # every job is a tnbench run sharing one pretrain cache; a second call runs nothing
    records = sorted((out / "runs").glob("*/record.json"))
    assert len(records) == 3 and len(list((tmp_path / "cache" / "pretrain").glob("*.pt"))) == 1
    stamps = [p.stat().st_mtime_ns for p in records]
    capsys.readouterr()
    main(argv)
    assert [p.stat().st_mtime_ns for p in records] == stamps
    assert "acc " not in capsys.readouterr().out


def test_recovery_rejects_bad_grids_in_one_line(tmp_path):
    from tnbench.studies.truncation_recovery import main

    with raises_one_line("--series must be dense, factorized or both"):
        main([*ARGS, f"paths.results_dir={tmp_path}", "--series", "sparse"])
    with raises_one_line(r"--norm-losses must be comma-separated values in \[0, 1\)"):
        main([*ARGS, f"paths.results_dir={tmp_path}", "--norm-losses", "1.5"])
