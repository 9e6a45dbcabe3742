"""The entry point as a user runs it: bad input, missing data, help."""
from __future__ import annotations

from tests.conftest import records, run_cli


def test_cli_bad_input_exits_2_with_one_line(tmp_path):
    r = run_cli(["method.rank=0", "dataset=synthetic"], tmp_path)
    assert r.returncode == 2
    assert r.stderr.strip() == "error: method.rank must be >= 1 or null, got 0"
    assert not (tmp_path / "results").exists()  # nothing started, nothing half-written
    r = run_cli(["dataset=cifar11"], tmp_path)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "allowed: cifar10, cifar100" in r.stderr


def test_cli_missing_data_is_one_line_and_recorded(tmp_path):
    r = run_cli(["dataset=mnist", "dataset.download=false", f"dataset.data_dir={tmp_path / 'nodata'}",
                 "logger=none", "trainer.progress=false"], tmp_path)
    assert r.returncode == 2
    errors = [l for l in r.stderr.splitlines() if l.startswith("error")]
    assert len(errors) == 1 and "mnist" in errors[0] and str(tmp_path / "nodata") in errors[0]
    (rec,) = records(tmp_path / "results")
    assert rec["status"] == "failed" and "DataMissing" in rec["error"]


def test_cli_help_and_cfg_job(tmp_path):
    r = run_cli(["--help"], tmp_path)
    assert r.returncode == 0 and "dataset: cifar10, cifar100, fashion_mnist, mnist, synthetic" in r.stdout
    r = run_cli(["--cfg", "job", "method=svd", "method.rank=3"], tmp_path)
    assert r.returncode == 0 and "rank: 3" in r.stdout and "pretrain_epochs" in r.stdout
