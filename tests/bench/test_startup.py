"""Benchmark: how long the command line takes to answer, and a job to reach its first epoch.

Each variant is a fresh `python -m tnbench ...` process started from a directory outside the
checkout, W&B offline, stdout read line by line as it comes (PYTHONUNBUFFERED):

  --help          the help page (Hydra's groups and the composed config)
  --cfg job       the composed job config, nothing run
  default job     the README's default job (LeNet-5, Fashion-MNIST, SVD rank 8, W&B offline) with
                  an empty results dir, so nothing comes from the pretrain cache. Three times are
                  read off its output: the first line printed, the start of the pretrain stage
                  (its rule line: config checked, data loaded, model built, W&B started) and the
                  end of pretrain epoch 1 (its epoch line). The process is stopped there.
  import torch / import lightning   what those imports alone cost in a fresh interpreter, for scale

The variants are interleaved (help, cfg, job, imports, help, ...) so that other load hits all
alike; the figures are the median and the minimum of the repeats. Nothing is asserted about
speed: the test checks that every variant answered. Figures: results/bench/startup.{json,md}.

    make bench
    .venv/bin/python -m pytest -m bench tests/bench/test_startup.py -o addopts=""

`TNBENCH_BENCH_REPS` (default 5) sets the repeats.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO

pytestmark = [pytest.mark.bench, pytest.mark.timeout(3600)]

REPS = int(os.environ.get("TNBENCH_BENCH_REPS", "5"))
COMMANDS = {
    "make": "make bench",
    "pytest": '.venv/bin/python -m pytest -m bench tests/bench/test_startup.py -o addopts=""',
}
ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "WANDB_MODE": "offline", "PYTHONPATH": str(REPO)}


def answer(argv: list[str], cwd: Path) -> tuple[float, str]:
    """Wall seconds of `python -m tnbench argv` to its exit, and its stdout."""
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "tnbench", *argv], cwd=cwd, env=ENV, capture_output=True,
                       text=True, timeout=300)
    took = time.perf_counter() - t0
    assert r.returncode == 0, r.stderr[-2000:]
    return took, r.stdout


def first_epoch(cwd: Path, results: Path) -> dict[str, float]:
    """Seconds from the start of the default job to its first output line, to its pretrain stage
    and to the end of its first pretrain epoch; the job is stopped after that line."""
    argv = [sys.executable, "-m", "tnbench", f"paths.data_dir={REPO / 'data'}", f"paths.results_dir={results}"]
    marks: dict[str, float] = {}
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=cwd, env={**ENV, "COLUMNS": "120"}, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            now = time.perf_counter() - t0
            marks.setdefault("first_output_s", now)
            if "pretrain" in line and "─" in line:
                marks.setdefault("pretrain_stage_s", now)
            if line.startswith("pretrain epoch 1/"):
                marks["first_epoch_done_s"] = now
                break
    finally:
        proc.kill()
        proc.wait(timeout=60)
    assert set(marks) == {"first_output_s", "pretrain_stage_s", "first_epoch_done_s"}, marks
    return marks


def import_time(module: str, cwd: Path) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", f"import {module}"], cwd=cwd, env=ENV, check=True, timeout=300)
    return time.perf_counter() - t0


def test_startup_times(tmp_path: Path) -> None:
    results_dir = REPO / "results" / "bench"
    results_dir.mkdir(parents=True, exist_ok=True)
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    samples: dict[str, list[float]] = {}

    def add(name: str, value: float) -> None:
        samples.setdefault(name, []).append(value)

    for rep in range(REPS):
        took, out = answer(["--help"], cwd)
        assert out.startswith("tnbench: ")
        add("--help", took)
        took, out = answer(["--cfg", "job"], cwd)
        assert "pretrain_epochs" in out
        add("--cfg job", took)
        for name, value in first_epoch(cwd, tmp_path / f"results-{rep}").items():
            add(f"default job: {name[:-2].replace('_', ' ')}", value)
        add("import torch", import_time("torch", cwd))
        add("import lightning", import_time("lightning", cwd))

    rows = {name: {"median_s": round(statistics.median(v), 3), "min_s": round(min(v), 3),
                   "samples_s": [round(x, 3) for x in v]} for name, v in samples.items()}
    figures = {
        "benchmark": "startup",
        "date": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version()},
        "repeats": REPS,
        "commands": COMMANDS,
        "rows": rows,
    }
    (results_dir / "startup.json").write_text(json.dumps(figures, indent=2) + "\n")
    lines = [
        "# Start-up: time to answer and time to the first epoch",
        "",
        f"Measured {figures['date']} on {os.cpu_count()} CPUs ({platform.platform()}), {REPS} repeats, "
        "variants interleaved, each a fresh process started outside the checkout, W&B offline. "
        "The default job is the README's (LeNet-5, Fashion-MNIST, SVD rank 8) with an empty "
        "results dir (no pretrain cache), stopped after its first pretrain epoch.",
        "",
        "| what | median s | min s |",
        "|---|---|---|",
        *[f"| {name} | {r['median_s']:.2f} | {r['min_s']:.2f} |" for name, r in rows.items()],
        "",
        f"Command: `{COMMANDS['pytest']}` (or `{COMMANDS['make']}`).",
        "",
    ]
    (results_dir / "startup.md").write_text("\n".join(lines))
