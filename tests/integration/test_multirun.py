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


def test_multirun_goes_on_past_a_failed_job(tmp_path):
    # an absurd learning rate is valid input but makes pretraining diverge at run time (a wrong
    # shape, e.g. an image too small for LeNet-5, is now refused before any job starts)
    r = run_cli(["-m", "pipeline.pretrain_optimizer.lr=0.01,1e30", *QUICK, "logger=none", "method=none"], tmp_path)
    assert r.returncode == 1
    recs = records(tmp_path / "results")
    assert sorted(x["status"] for x in recs) == ["diverged", "ok"]
