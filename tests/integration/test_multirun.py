"""Multiruns through the CLI: one record per job, the results table, failed jobs."""
from __future__ import annotations

import pandas as pd
import pytest

from tests.conftest import QUICK, records, run_cli


@pytest.mark.slow
@pytest.mark.parametrize("launcher", ["basic", "joblib"])
def test_multirun_one_record_per_run_and_results_table(tmp_path, launcher):
    """`method=none` does not read `method.rank`: its two jobs are one run (under joblib they run
    at the same time; the run directory's lock makes the second find the first's record)."""
    r = run_cli(["-m", "method=none,svd", "method.rank=4,8", *QUICK, "logger=none", f"hydra/launcher={launcher}"],
                tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stderr.count("already done") == 1
    recs = records(tmp_path / "results")
    assert len(recs) == 3
    assert sorted((x["method"], x["config"]["method"]["rank"]) for x in recs if x["method"] == "svd") == [
        ("svd", 4), ("svd", 8)]
    assert all(x["status"] == "ok" for x in recs)
    assert sum(x["pretrain_cache_hit"] for x in recs) == 2  # one pretraining serves all three
    out = tmp_path / "table.csv"
    r = run_cli([str(tmp_path / "results" / "runs"), "--csv", str(out)], tmp_path, module="tnbench.results")
    assert r.returncode == 0, r.stderr
    assert "3 runs under" in r.stdout
    df = pd.read_csv(out)
    assert len(df) == 3 and set(df["method"]) == {"none", "svd"}
    assert set(df.loc[df.method == "svd", "setting"]) == {"rank=4 skip_if_larger=True", "rank=8 skip_if_larger=True"}


@pytest.mark.parametrize("launcher", [
    "basic", pytest.param("joblib", marks=pytest.mark.slow), pytest.param("submitit_local", marks=pytest.mark.slow)])
def test_multirun_goes_on_past_a_failed_job_and_exits_1_under_any_launcher(tmp_path, launcher):
    """The exit code and the summary come from the records, after all jobs ran, whatever the
    launcher does with a job's failure (joblib and submitit run jobs in other processes)."""
    # an absurd learning rate is valid input but makes pretraining diverge at run time (a wrong
    # shape, e.g. an image too small for LeNet-5, is refused before any job starts)
    r = run_cli(["-m", f"hydra/launcher={launcher}", "pipeline.pretrain_optimizer.lr=1e30,0.01", *QUICK,
                 "dataset.train_size=256", "dataset.test_size=128", "logger=none", "method=none"], tmp_path)
    assert r.returncode == 1, r.stderr[-2000:]
    recs = records(tmp_path / "results")
    assert sorted(x["status"] for x in recs) == ["diverged", "ok"]  # the job after the failed one ran
    summary = [line for line in r.stderr.splitlines() if line.startswith("failed job")]
    assert len(summary) == 1
    assert summary[0].startswith("failed job (diverged): pipeline.pretrain_optimizer.lr=1e+30: diverged in pretrain")
    assert r.stderr.strip().splitlines()[-1] == "1 of 2 jobs failed"
