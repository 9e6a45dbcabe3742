"""The entry point as a user runs it: bad input, help, multirun, DDP, the results command."""
from __future__ import annotations

import json

import pandas as pd
import pytest
from conftest import CONF, QUICK, run_cli

from tnbench.pipeline.configstore import register_configs
from tnbench.pipeline.jobs import preflight

register_configs()

BAD_INPUT = [
    (["dataset=imagenet"], "dataset='imagenet' is not known; allowed: cifar10, cifar100, fashion_mnist, mnist, synthetic"),
    (["model=alexnet"], "model='alexnet' is not known; allowed:"),
    (["method=prune"], "method='prune' is not known; allowed:"),
    (["method.rank=0"], "method.rank must be >= 1, got 0"),
    (["method.energy=2"], "method.energy must be in (0, 1]"),
    (["pipeline.pretrain_epochs=-1"], "pipeline.pretrain_epochs must be >= 0, got -1"),
    (["pipeline.retrain_epochs=-3"], "pipeline.retrain_epochs must be >= 0, got -3"),
    (["trainer.num_threads=0"], "trainer.num_threads must be null or >= 1, got 0"),
    (["method.rank=abc"], "method.rank"),
    (["method.bogus=1"], "bogus"),
    (["pipeline.pretrain_optimizer.name=lbfgs"], "pipeline.pretrain_optimizer.name must be one of sgd, adam, adamw"),
    (["logger=mlflow"], "logger='mlflow' is not known"),
    (["trainer.precision=8"], "trainer.precision must be one of"),
    (["dataset.batch_size=0"], "dataset.batch_size must be >= 1"),
    (["method.layers=[conv9]"], "method.layers names unknown layer(s) conv9"),  # checked against the model up front
    (["-m", "method=none,svd", "method.rank=4,0"], "method.rank must be >= 1, got 0"),  # every sweep value is checked
    # every method's own parameters
    (["method=svd_truncation", "method.cut=diag"], "method.cut must be one of out, in, kh, kw, out_in, out_kh, out_kw; got 'diag'"),
    (["method=svd_truncation", "method.norm_loss=1.5"], "method.norm_loss must be in [0, 1), got 1.5"),
    (["method=cp", "method.rank=0"], "method.rank must be >= 1, got 0"),
    (["method=tucker", "method.ranks=[0,4]"], "method.ranks entries must be integers >= 1 or fractions in (0, 1]"),
    (["method=tucker_adaptive", "method.tau=1.5"], "method.tau must be in (0, 1), got 1.5"),
    (["method=tucker_adaptive", "method.r_min=50", "method.r_max=10"], "method.r_min (50) must be <= method.r_max (10)"),
    (["method=dlrt", "method.tau=0"], "method.tau must be in (0, 1)"),
    (["method=mpo", "method.bond_dim=0"], "method.bond_dim must be >= 1, got 0"),
    (["method=tt", "method.tolerance=[2,1000]"], "method.tolerance a must be in (0, 1], got 2.0"),
    (["method=tt", "method.init=magic"], "method.init must be one of decompose, partial_norm, log_norm, gaussian"),
    (["method=adtn", "method.depth=0"], "method.depth must be >= 1, got 0"),
    # paths, data and types
    (["paths.results_dir=/etc/passwd/x"], "paths.results_dir=/etc/passwd/x is not writable"),
    (["dataset.train_subset=-5"], "dataset.train_subset must be >= 0 or null, got -5"),
    (["dataset=synthetic", "dataset.image_size=abc"], "Value 'abc' of type 'str' could not be converted to Integer"),
]


@pytest.mark.parametrize("overrides,message", BAD_INPUT, ids=[" ".join(o) for o, _ in BAD_INPUT])
def test_preflight_reports_bad_input_in_one_line(overrides, message):
    problem = preflight(overrides, CONF)
    if message is None:
        assert problem is None
        return
    assert problem is not None and message in problem
    assert "\n" not in problem


def test_preflight_accepts_good_input():
    assert preflight(["-m", "method=none,svd", "method.rank=4,8", "dataset=synthetic"], CONF) is None
    assert preflight(["--help"], CONF) is None


def test_cli_bad_input_exits_2_with_one_line(tmp_path):
    r = run_cli(["method.rank=0", "dataset=synthetic"], tmp_path)
    assert r.returncode == 2
    assert r.stderr.strip() == "error: method.rank must be >= 1, got 0"
    assert not (tmp_path / "results").exists()  # nothing started, nothing half-written
    r = run_cli(["dataset=cifar11"], tmp_path)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "allowed: cifar10, cifar100" in r.stderr


def test_cli_missing_data_is_one_line_and_recorded(tmp_path):
    r = run_cli(["dataset=mnist", "dataset.download=false", f"dataset.data_dir={tmp_path / 'nodata'}",
                 "logger=none", "trainer.progress=false"], tmp_path)
    assert r.returncode == 2
    errors = [l for l in r.stderr.splitlines() if l.startswith("error")]
    assert len(errors) == 1 and "mnist" in errors[0] and str(tmp_path / "nodata") in errors[0]
    (rec_path,) = list((tmp_path / "results").rglob("record.json"))
    rec = json.loads(rec_path.read_text())
    assert rec["status"] == "failed" and "DataMissing" in rec["error"]


def test_cli_help_and_cfg_job(tmp_path):
    r = run_cli(["--help"], tmp_path)
    assert r.returncode == 0 and "dataset: cifar10, cifar100, fashion_mnist, mnist, synthetic" in r.stdout
    r = run_cli(["--cfg", "job", "method=svd", "method.rank=3"], tmp_path)
    assert r.returncode == 0 and "rank: 3" in r.stdout and "pretrain_epochs" in r.stdout


def test_multirun_one_record_per_job_and_results_table(tmp_path):
    r = run_cli(["-m", "method=none,svd", "method.rank=4,8", *QUICK, "logger=none"], tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    records = sorted((tmp_path / "results").rglob("record.json"))
    assert len(records) == 4
    recs = [json.loads(p.read_text()) for p in records]
    assert sorted((x["method"], x["config"]["method"]["rank"]) for x in recs) == [
        ("none", 4), ("none", 8), ("svd", 4), ("svd", 8)]
    assert all(x["status"] == "ok" for x in recs)
    assert sum(x["pretrain_cache_hit"] for x in recs) == 3  # one pretraining serves all four
    out = tmp_path / "table.csv"
    r = run_cli([str(tmp_path / "results" / "runs"), "--csv", str(out)], tmp_path, module="tnbench.results")
    assert r.returncode == 0, r.stderr
    assert "4 runs under" in r.stdout
    df = pd.read_csv(out)
    assert len(df) == 4 and set(df["method"]) == {"none", "svd"}
    assert set(df.loc[df.method == "svd", "setting"]) == {"rank=4 skip_if_larger=True", "rank=8 skip_if_larger=True"}


def test_multirun_goes_on_past_a_failed_job(tmp_path):
    # an absurd learning rate is valid input but makes pretraining diverge at run time (a wrong
    # shape, e.g. an image too small for LeNet-5, is now refused before any job starts)
    r = run_cli(["-m", "pipeline.pretrain_optimizer.lr=0.01,1e30", *QUICK, "logger=none", "method=none"], tmp_path)
    assert r.returncode == 1
    recs = [json.loads(p.read_text()) for p in sorted((tmp_path / "results").rglob("record.json"))]
    assert sorted(x["status"] for x in recs) == ["diverged", "ok"]


def test_ddp_on_cpu_with_two_processes_writes_one_record(tmp_path):
    r = run_cli(["trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2", "trainer.precision=32-true",
                 *QUICK, "logger=wandb"], tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    records = list((tmp_path / "results").rglob("record.json"))
    assert len(records) == 1
    rec = json.loads(records[0].read_text())
    assert rec["status"] == "ok" and rec["config"]["trainer"]["strategy"] == "ddp"
    assert len(list((tmp_path / "results").rglob("run-*.wandb"))) == 1  # rank 0 alone logs
