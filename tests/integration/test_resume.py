"""Killed runs resume to the same record; finished jobs are skipped; concurrent jobs share one
pretraining."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.conftest import records, run_cli

ARGS = ["dataset=synthetic", "trainer.progress=false", "dataset.train_size=1024", "dataset.test_size=256",
        "pipeline.pretrain_epochs=2", "pipeline.retrain_epochs=3", "method.rank=4", "logger=wandb"]


METRICS = ["acc_pretrain", "acc_compressed", "acc_retrained", "acc_retrained_best", "recovery_epochs",
           "pretrain_history", "retrain_history", "params_compressed", "compression_ratio", "norm_loss",
           "flops_compressed", "ranks", "pretrain_cache_hit"]


def record(results: Path) -> dict:
    (rec,) = records(results)
    return rec


@pytest.mark.slow
def test_sigkill_in_every_stage_then_resume_gives_the_uninterrupted_record(tmp_path):
    # A W&B service started by this (parent) process is advertised to children in WANDB_SERVICE;
    # a killed child's run would stay "in use" there. tnbench must start its own service.
    import wandb

    wandb.init(dir=str(tmp_path), mode="offline", project="parent").finish()
    assert "WANDB_SERVICE" in os.environ
    ref = run_cli(ARGS, tmp_path / "ref")
    assert ref.returncode == 0, ref.stderr[-2000:]
    want = record(tmp_path / "ref" / "results")
    work = tmp_path / "killed"
    # 8 batches an epoch: kill mid-pretraining, after a pretrain epoch, after compression,
    # after a retrain epoch and in the middle of the next one
    faults = ["pretrain:step:3", "pretrain:epoch:1", "compress:done", "retrain:epoch:1", "retrain:step:12"]
    for fault in faults:
        r = run_cli(ARGS, work, env={"TNBENCH_FAILPOINT": fault})
        assert r.returncode == -9, (fault, r.returncode, r.stderr[-2000:])
        state = json.loads(next((work / "results").rglob("state.json")).read_text())
        assert state["attempts"] >= 1
    r = run_cli(ARGS, work)
    assert r.returncode == 0, r.stderr[-2000:]
    got = record(work / "results")
    assert got["status"] == "ok" and got["attempt"] == len(faults) + 1
    assert {k: got[k] for k in METRICS} == {k: want[k] for k in METRICS}
    assert "retrain" in got["resumed_stages"]
    # every attempt logged into the same W&B run
    ids = {p.name.rsplit("-", 1)[-1] for p in (work / "results").rglob("offline-run-*")}
    assert ids == {got["wandb_run_id"]}
    # the same command again skips the finished job; pipeline.rerun=true redoes it
    again = run_cli(ARGS, work)
    assert again.returncode == 0 and "already done" in again.stderr
    assert record(work / "results")["attempt"] == len(faults) + 1


@pytest.mark.slow
def test_four_parallel_jobs_share_one_pretraining(tmp_path):
    r = run_cli(["-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=4", "method=svd", "method.rank=2,3,4,5",
                 *[a for a in ARGS if not a.startswith(("method.rank", "logger"))], "logger=none",
                 "pipeline.retrain_epochs=1"], tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    recs = records(tmp_path / "results")
    assert len(recs) == 4 and all(x["status"] == "ok" for x in recs)
    assert sorted(x["pretrain_cache_hit"] for x in recs) == [False, True, True, True]  # trained once
    assert len({x["acc_pretrain"] for x in recs}) == 1
    assert len(list((tmp_path / "results" / "cache" / "pretrain").glob("*.pt"))) == 1
