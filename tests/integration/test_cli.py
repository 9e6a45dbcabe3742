"""The entry point as a user runs it: bad input, missing data, help."""
from __future__ import annotations

import os

import pytest

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
    # a header saying what tnbench is and how to start, not Hydra's "<module> is powered by Hydra"
    assert r.stdout.startswith("tnbench: compress neural networks") and "powered by Hydra" not in r.stdout
    assert "python -m tnbench method=tucker_adaptive dataset=cifar10" in r.stdout
    groups = r.stdout.split("== Configuration groups ==")[1].split("== Config ==")[0]
    listed = {line.split(":")[0] for line in groups.splitlines() if ": " in line}
    assert listed == {"dataset", "experiment", "launcher", "logger", "method", "model", "retrain_optimizer", "sweep",
                      "trainer"}, listed  # no internal schema/* group
    r = run_cli(["--cfg", "job", "method=svd", "method.rank=3"], tmp_path)
    assert r.returncode == 0 and "rank: 3" in r.stdout and "pretrain_epochs" in r.stdout


# a job of a few seconds: LeNet-5 on a little synthetic data, no logger
TINY = ["dataset=synthetic", "trainer.progress=false", "pipeline.pretrain_epochs=1", "pipeline.retrain_epochs=1",
        "dataset.train_size=256", "dataset.test_size=128", "logger=none"]


def _errors(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error")]


def test_internal_value_error_keeps_its_traceback(tmp_path):
    """Only the project's own input errors are one-liners: a ValueError raised inside the
    pipeline is a bug, shown with its traceback (stderr and record), exit code 1, not 2."""
    r = run_cli(TINY, tmp_path, env={"TNBENCH_FAILPOINT": "compress:done=valueerror"})
    assert r.returncode == 1, r.stderr[-2000:]
    assert "Traceback (most recent call last)" in r.stderr and "ValueError: failpoint compress:done" in r.stderr
    assert _errors(r.stderr) == [e for e in _errors(r.stderr) if e.startswith("error (failed): ")]
    (rec,) = records(tmp_path / "results")
    assert rec["status"] == "failed" and rec["error"].startswith("ValueError")
    assert "Traceback" in rec["traceback"] and "failpoints.py" in rec["traceback"]


@pytest.mark.slow
def test_ctrl_c_is_one_line_exit_130_and_the_same_command_resumes(tmp_path):
    r = run_cli(TINY, tmp_path, env={"TNBENCH_FAILPOINT": "pretrain:step:2=sigint"})
    assert r.returncode == 130, r.stderr[-2000:]
    assert r.stderr.strip().splitlines()[-1] == "interrupted; rerun the same command to resume"
    assert "Traceback" not in r.stderr
    (rec,) = records(tmp_path / "results")
    assert rec["status"] == "failed" and rec["error"] == "interrupted; rerun the same command to resume"
    r = run_cli(TINY, tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stderr == ""  # quiet: no warning from Lightning about logging without a logger (logger=none)
    (rec,) = records(tmp_path / "results")
    assert rec["status"] == "ok"


def test_full_disk_is_one_line_and_leaves_no_temp_file(tmp_path):
    """ENOSPC while the record is written (its temp file open): one line naming the file, no
    traceback, no `.record.json.*.tmp` left behind, exit code 1."""
    r = run_cli(TINY, tmp_path, env={"TNBENCH_FAILPOINT": "write:record.json=enospc"})
    assert r.returncode == 1, r.stderr[-2000:]
    assert "Traceback" not in r.stderr and "Logging error" not in r.stderr
    (line,) = _errors(r.stderr)
    assert line.startswith("error (disk full): no space left on the device writing ") and "record.json" in line
    assert not list((tmp_path / "results").rglob("*.tmp*"))
    assert not records(tmp_path / "results")  # the record could not be written; nothing else claims to be one


def test_file_size_limit_is_a_full_disk_too(tmp_path):
    """A real write failure, from the kernel (ulimit -f: EFBIG on every file over 20 kB, the
    training checkpoints first): one line, no traceback (Lightning's or logging's)."""
    import resource
    import subprocess
    import sys

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))

    env = {**os.environ, "WANDB_MODE": "offline", "TNBENCH_FAILPOINT": ""}
    r = subprocess.run([sys.executable, "-m", "tnbench", *TINY], cwd=tmp_path, env=env, capture_output=True,
                       text=True, timeout=600, preexec_fn=limit)
    assert r.returncode == 1, r.stderr[-2000:]
    assert "Traceback" not in r.stderr and "Logging error" not in r.stderr
    (line,) = _errors(r.stderr)
    assert line.startswith("error (disk full): file too large")
    assert not list((tmp_path / "results").rglob("*.tmp*"))


@pytest.mark.parametrize("args,message", [
    (["trainer=gpu"], "error: trainer.accelerator=gpu but this machine has no GPU that torch can use; allowed here: "
                      "cpu (trainer=cpu)"),
    (["seed=99999999999999999999"], "error: seed must be in [0, 4294967294], got 99999999999999999999"),
    (["method=tucker", "method.ranks=[100,100]"], "error: method.ranks: rank 100 for mode out of layer features.3 "
                                                  "exceeds the mode size 16"),
    (["-m", "run_id=../x,ok"], "error: run_id='../x' must be a plain directory name"),
])
def test_bad_input_through_the_real_command_exits_2_and_leaves_records_alone(tmp_path, args, message):
    """A few cases of the catalogue (tests/pipeline/test_checks.py) as a user meets them."""
    if args == ["trainer=gpu"]:
        import torch

        if torch.cuda.is_available():
            pytest.skip("this machine has a GPU")
    old = tmp_path / "results" / "runs" / "old"
    old.mkdir(parents=True)
    (old / "record.json").write_text('{"status": "ok"}')
    r = run_cli([*args, "dataset=synthetic"], tmp_path)
    assert r.returncode == 2
    assert r.stderr.splitlines() == [r.stderr.strip()] and r.stderr.startswith(message), r.stderr
    assert [p.name for p in (tmp_path / "results" / "runs").iterdir()] == ["old"]
    assert (old / "record.json").read_text() == '{"status": "ok"}' and not (tmp_path / "outputs").exists()
