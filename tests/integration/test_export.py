"""`python -m tnbench.export`: a finished run's model exported and checked, the difference in its
record; bad input (format, run directory, a record from before models were saved) one line, exit 2."""
from __future__ import annotations

import json

import pytest

from tests.conftest import read_record, run_cli, run_in_process


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    results = tmp_path_factory.mktemp("export")
    run_in_process(results, "logger=none", "method=mpo", name="mpo")  # channels_last, the default
    return results / "mpo"


@pytest.mark.slow
def test_export_writes_the_file_and_the_difference_into_the_record(run_dir, tmp_path):
    for fmt, name in (("onnx", "model.onnx"), ("torch-export", "model.pt2")):
        r = run_cli([str(run_dir), "--format", fmt], tmp_path, module="tnbench.export")
        assert r.returncode == 0, r.stderr[-2000:]
        assert "Warning" not in r.stderr, r.stderr[-2000:]  # quiet: torch's archive and exporter notes
        assert (run_dir / name).is_file()
        assert f"{fmt}: {run_dir / name}" in r.stdout and "max abs difference" in r.stdout
    done = read_record(run_dir)["export"]
    assert set(done) == {"onnx", "torch-export"}
    assert all(d["max_abs_diff"] <= 1e-5 and d["images"] == 8 for d in done.values())


@pytest.mark.parametrize("args,message", [
    (["--format", "tflite"], "error: --format must be one of torch-export, onnx; got 'tflite'"),
    (["--images", "0"], "error: --images must be >= 1, got 0"),
])
def test_bad_options_are_one_line(args, message, run_dir, tmp_path):
    r = run_cli([str(run_dir), *args], tmp_path, module="tnbench.export")
    assert r.returncode == 2 and r.stderr.strip() == message


def test_a_missing_or_old_run_dir_is_one_line(tmp_path):
    r = run_cli([str(tmp_path / "nope")], tmp_path, module="tnbench.export")
    assert r.returncode == 2 and r.stderr.strip() == f"error: {tmp_path / 'nope'} is not a run directory (no record.json)"
    old = tmp_path / "old"
    old.mkdir()
    (old / "record.json").write_text(json.dumps({"status": "ok", "config": {}}))
    r = run_cli([str(old)], tmp_path, module="tnbench.export")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    assert r.stderr.startswith(f"error: {old} has no model.safetensors or model.json")
