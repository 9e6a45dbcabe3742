"""What a job writes to W&B (offline run files, read back) and to the terminal: each stage on its
own monotone axis, the pretrain curve again on a pretrain-cache hit, a W&B run for a job a sweep
agent finds already done, and a default run's stderr without warnings."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import read_record, run_cli
from tnbench.reporting.wandb_offline import _payloads, read_run

pytestmark = pytest.mark.slow

STAGES = ("pretrain", "compress", "retrain")
# progress bars on (the default), W&B offline, a subset far shorter than Lightning's 50-step log interval
JOB = ["dataset=synthetic", "dataset.train_size=512", "dataset.test_size=128", "pipeline.pretrain_epochs=2",
       "pipeline.retrain_epochs=2", "logger=wandb"]


def run_dir(cwd: Path, rank: int) -> Path:
    (rec,) = [p.parent for p in cwd.glob("results/runs/*/record.json")
              if json.loads(p.read_text())["config"]["method"]["rank"] == rank]
    return rec


def wandb_runs(run: Path) -> list[Path]:
    return sorted(run.glob("wandb/offline-run-*"))


def metric_definitions(path: Path) -> dict[str, str]:
    """name or glob -> step metric, from the run file's define_metric records."""
    from wandb.proto import wandb_internal_pb2 as pb

    out = {}
    for payload in _payloads(next(path.glob("run-*.wandb")).read_bytes()):
        rec = pb.Record()
        rec.ParseFromString(payload)
        if rec.WhichOneof("record_type") == "metric":
            out[rec.metric.name or rec.metric.glob_name] = rec.metric.step_metric
    return out


def stage_rows(history: list[dict], stage: str) -> list[dict]:
    return [{k: v for k, v in row.items() if k.startswith(f"{stage}/")} for row in history
            if any(k.startswith(f"{stage}/") for k in row)]


def assert_monotone_per_stage(history: list[dict]) -> None:
    assert not any({"epoch", "trainer/global_step"} & set(row) for row in history)  # restart every stage
    for stage in STAGES:
        rows = stage_rows(history, stage)
        epochs = [r[f"{stage}/epoch"] for r in rows if f"{stage}/step" not in r]
        steps = [r[f"{stage}/step"] for r in rows if f"{stage}/step" in r]
        assert len(epochs) == len(rows) - len(steps)  # every epoch-level row carries its stage's epoch
        assert epochs == sorted(epochs) and steps == sorted(steps), (stage, epochs, steps)


@pytest.fixture(scope="module")
def jobs(tmp_path_factory):
    """The same dense model twice (the second from the pretrain cache), then the first job again
    as a W&B sweep agent would start it."""
    cwd = tmp_path_factory.mktemp("wandb")
    # as a user runs it: W&B's own console settings untouched
    env = {k: v for k, v in os.environ.items() if k not in ("WANDB_SILENT", "WANDB_QUIET")}
    first = subprocess.run([sys.executable, "-m", "tnbench", *JOB, "method.rank=4"], cwd=cwd, capture_output=True,
                           text=True, timeout=600, env={**env, "WANDB_MODE": "offline"})
    second = run_cli([*JOB, "method.rank=2"], cwd)
    again = run_cli([*JOB, "method.rank=4"], cwd, env={"WANDB_SWEEP_ID": "test-sweep"})
    for r in (first, second, again):
        assert r.returncode == 0, r.stderr[-3000:]
    return cwd, first, second, again


def test_each_stage_has_its_own_monotone_axis(jobs):
    cwd = jobs[0]
    (path,) = wandb_runs(run_dir(cwd, 2))
    defined = metric_definitions(path)
    for stage in STAGES:
        assert defined[f"{stage}/*"] == f"{stage}/epoch"
        assert defined[f"{stage}/train_loss_step"] == f"{stage}/step"
    for run in (run_dir(cwd, 4), run_dir(cwd, 2)):
        history = read_run(wandb_runs(run)[0])["history"]
        assert_monotone_per_stage(history)
        tested = {s: [r[f"{s}/epoch"] for r in stage_rows(history, s) if f"{s}/val_acc" in r] for s in STAGES}
        # once per epoch: the pretrained model's own test (acc_pretrain) is the last epoch's,
        # after a fit and on a cache hit alike, so it adds no second row at pretrain/epoch 2
        assert tested == {"pretrain": [1, 2], "compress": [0], "retrain": [1, 2]}
        assert all(f"{s}/val_loss" in r for s in STAGES for r in stage_rows(history, s) if f"{s}/val_acc" in r)


def test_pretrain_curve_is_logged_on_a_cache_hit(jobs):
    cwd = jobs[0]
    trained, cached = (read_record(run_dir(cwd, r)) for r in (4, 2))
    assert not trained["pretrain_cache_hit"] and cached["pretrain_cache_hit"]
    assert cached["pretrain_history"] == trained["pretrain_history"] and len(trained["pretrain_history"]) == 2
    curves = []
    for rank in (4, 2):
        by_epoch: dict = {}
        for row in stage_rows(read_run(wandb_runs(run_dir(cwd, rank))[0])["history"], "pretrain"):
            if "pretrain/epoch" in row:
                by_epoch.setdefault(row["pretrain/epoch"], {}).update(row)
        curves.append([(e, r["pretrain/val_acc"], r["pretrain/val_loss"], r["pretrain/train_loss_epoch"],
                        r["pretrain/train_acc"]) for e, r in by_epoch.items()])
    # the cached curve is the trained one: per-epoch test accuracy and loss, training loss and accuracy
    assert [c[0] for c in curves[1]] == [1, 2]
    assert [pytest.approx(c) for c in curves[1]] == curves[0]


def epoch_rows(history: list[dict], stage: str) -> dict:
    """A stage's epoch-level numbers, by epoch (the per-step rows left out)."""
    by_epoch: dict = {}
    for row in stage_rows(history, stage):
        if f"{stage}/step" not in row:
            by_epoch.setdefault(row[f"{stage}/epoch"], {}).update(row)
    return by_epoch


@pytest.mark.parametrize("stage,action", [("pretrain", "kill"), ("retrain", "kill"), ("retrain", "sigint")])
def test_a_run_resumed_after_a_kill_logs_the_epochs_done_before_it(jobs, tmp_path, stage, action):
    """A SIGKILL loses the killed attempt's W&B rows (its offline file keeps little more than its
    header): the resumed attempt logs the epoch done before the kill (from the epoch checkpoint)
    and, killed in retraining, the finished pretraining (from its weights' entry) again, so the
    run's curves are the uninterrupted run's. A Ctrl-C leaves its rows in its file: those are not
    logged again, so over all attempts' files every tested epoch has one row."""
    stopped = run_cli([*JOB, "method.rank=4"], tmp_path, env={"TNBENCH_FAILPOINT": f"{stage}:epoch:1={action}"})
    assert stopped.returncode == (-9 if action == "kill" else 130), stopped.stderr[-2000:]
    resumed = run_cli([*JOB, "method.rank=4"], tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    run = run_dir(tmp_path, 4)
    assert read_record(run)["resumed_stages"] == [stage]
    *earlier, last = wandb_runs(run)
    history = read_run(last)["history"]
    assert_monotone_per_stage(history)
    want = read_run(wandb_runs(run_dir(jobs[0], 4))[0])["history"]  # the same job, never killed
    every = [row for path in [*earlier, last] for row in read_run(path)["history"]]
    for stage in STAGES:
        if action == "kill":  # the resumed attempt's file alone holds the whole curve
            got, ref = epoch_rows(history, stage), epoch_rows(want, stage)
            assert list(got) == list(ref) == ([0] if stage == "compress" else [1, 2])
            assert {e: pytest.approx(r) for e, r in got.items()} == ref
        tested = sorted(r[f"{stage}/epoch"] for r in every if f"{stage}/val_acc" in r)
        assert tested == sorted(r[f"{stage}/epoch"] for r in want if f"{stage}/val_acc" in r), (stage, tested)


def test_a_job_found_done_under_a_sweep_agent_logs_its_record(jobs):
    cwd, again = jobs[0], jobs[3]
    run = run_dir(cwd, 4)
    assert "already done" in again.stderr
    rec = read_record(run)
    first, logged = wandb_runs(run)
    assert first.name != logged.name
    wb = read_run(logged)
    assert wb["summary"]["acc_retrained"] == pytest.approx(rec["acc_retrained"])
    assert wb["summary"]["status"] == "ok"
    assert [r["retrain/val_acc"] for r in stage_rows(wb["history"], "retrain")] == \
        pytest.approx(rec["retrain_history"])
    assert_monotone_per_stage(wb["history"])


def test_default_run_stderr_has_no_warnings(jobs):
    first, second = jobs[1], jobs[2]
    for r in (first, second):
        lines = r.stderr.splitlines()
        assert not [l for l in lines if "warn" in l.lower() or "weights_only" in l or "anonymous" in l], r.stderr
        assert "retrain  epoch 2/2" in r.stdout  # the kept per-epoch progress lines
        assert "compress" in r.stdout and "layers" in r.stdout


def test_the_compressed_model_is_logged_as_a_model_artifact(jobs):
    run = run_dir(jobs[0], 2)
    rec = read_record(run)
    (path,) = wandb_runs(run)
    (artifact,) = read_run(path)["artifacts"]
    assert artifact["type"] == "model" and artifact["name"] == f"model-{run.name}"
    assert artifact["files"] == ["model.json", "model.safetensors"]
    assert artifact["metadata"]["compression_ratio"] == pytest.approx(rec["compression_ratio"])
    assert rec["model_file"] == str(run / "model.safetensors")
