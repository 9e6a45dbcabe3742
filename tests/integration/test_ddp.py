"""DDP on CPU with two processes: one record, one W&B run, no warnings."""
from __future__ import annotations

import pytest

from tests.conftest import QUICK, records, run_cli


@pytest.mark.slow
def test_ddp_on_cpu_with_two_processes_writes_one_record(tmp_path):
    r = run_cli(["trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2", "trainer.precision=32-true",
                 *QUICK, "logger=wandb"], tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    (rec,) = records(tmp_path / "results")
    assert rec["status"] == "ok" and rec["config"]["trainer"]["strategy"] == "ddp"
    assert len(list((tmp_path / "results").rglob("run-*.wandb"))) == 1  # rank 0 alone logs
    # e.g. torch's "Grad strides do not match bucket view strides" from a 1x1 factor conv's
    # weight under channels_last (tnbench.pipeline.classifier.to_channels_last)
    assert not [line for line in r.stderr.splitlines() if "warn" in line.lower()], r.stderr
