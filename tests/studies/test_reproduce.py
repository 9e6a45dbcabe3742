"""`python -m tnbench.reproduce PAPER` (tnbench.studies.reproduce): published rows beside stand-in runs."""
from __future__ import annotations

import pandas as pd
import pytest

from tests.conftest import REPO, run_cli
from tnbench.reporting.records import write_record
from tnbench.studies.reproduce import PLANS, jobs_of, main, parse_args, table


def dlrt_record(run_dir, tau, acc, **fields):
    write_record(run_dir, {
        "status": "ok", "dataset": "fashion_mnist", "model": "lenet5_dlrt", "method": "dlrt", "seed": 0,
        "acc_pretrain": 10.0, "acc_compressed": 9.5, "acc_retrained": acc - 1, "acc_selected": acc,
        "compression_ratio": 10.0, "compression_ratio_layers": 10.0, "compression_rate": 89.0,
        "compression_rate_paper": 95.0, "params_paper": 21000, "count_rule": "dlrt", "params_compressed": 50000,
        "ranks": {"features.0": [9], "features.3": [16], "classifier.0": [30]},
        "config": {"method": {"name": "dlrt", "tau": tau}, "pipeline": {"pretrain_epochs": 0, "retrain_epochs": 3}},
        **fields})


def test_published_rows_beside_stand_ins_or_the_command_that_measures_them(tmp_path):
    dlrt_record(tmp_path / "runs" / "a", 0.15, 88.0, experiment="dlrt_lenet5_official")
    dlrt_record(tmp_path / "runs" / "ours", 0.15, 50.0, experiment="dlrt_lenet5")  # not the paper's protocol
    args = parse_args(["dlrt", "--taus", "0.15", "--epochs", "3", "--val-split", "2000", "trainer.num_threads=1"])
    jobs = jobs_of(PLANS["dlrt"], args)
    assert set(jobs) == {"tau=0.15", "full"}
    assert {"experiment=dlrt_lenet5_official", "dataset=fashion_mnist", "method.tau=0.15", "pipeline.retrain_epochs=3",
            "dataset.val_split=2000", "trainer.num_threads=1", "logger=none"} <= set(jobs["tau=0.15"])
    t = table(PLANS["dlrt"], jobs, tmp_path / "runs", REPO / "results" / "reference", tmp_path / "bench")
    t = t.set_index(["setting", "quantity"])
    acc = t.loc[("tau=0.15", "accuracy")]
    assert acc["status"] == "measured (stand-in)" and acc["measured_on"] == "fashion_mnist"
    assert acc["measured"] == pytest.approx(88.0) and acc["difference"] == pytest.approx(88.0 - 98.14)
    assert acc["runs"] == 1
    assert "method.tau=0.15" in acc["stand_in_command"] and acc["command"] == "python -m tnbench +sweep=dlrt_lenet5_official"
    rate = t.loc[("tau=0.15", "compression_rate")]  # DLRT's count beside DLRT's count
    assert rate["measured"] == pytest.approx(95.0) and rate["count_rule"] == "dlrt"
    assert t.loc[("tau=0.15", "compression_rate_stored"), "measured"] == pytest.approx(89.0)
    missing = t.loc[("tau=0.11", "accuracy")]
    assert missing["status"] == "not measured here" and "+sweep=dlrt_lenet5_official" in missing["command"]
    assert t.loc[("full", "accuracy"), "command"] == "python -m tnbench experiment=dlrt_lenet5_official method=none"


def test_every_paper_has_a_plan_and_writes_its_table(tmp_path):
    for name in PLANS:
        assert main([name, "--results", str(tmp_path), "--out", str(tmp_path / "out")]) == 0
        got = pd.read_csv(tmp_path / "out" / f"{name}.csv")
        assert len(got) > 0 and set(got["status"]) <= {"not measured here", "not run", "no published value",
                                                         "measured", "measured (stand-in)", "not measured"}
    assert main(["arXiv:2205.13571", "--results", str(tmp_path), "--out", str(tmp_path / "out")]) == 0


def test_unknown_paper_is_one_line(tmp_path):
    r = run_cli(["alexnet"], tmp_path, module="tnbench.reproduce")
    assert r.returncode == 2 and r.stderr.strip().startswith("error: PAPER must be one of dlrt, tdlrt")
