"""Benchmark: a fault campaign against the real command line.

Kills: 20 SIGKILLs at seeded random moments of real runs (LeNet-5 on small synthetic data, 2
pretrain + 3 retrain epochs of 8 steps, W&B off), each in a fresh results directory, each
followed by rerunning the same command; the resumed record must equal the record of an
uninterrupted run in every numeric field (times and the attempt counter aside). The moments
are drawn among the named failpoints (tnbench.pipeline.failpoints: any optimizer step or epoch
end of either training stage, after compression) and, for a quarter of them, as a SIGKILL sent
by this (parent) process after a random delay into the run.

Corruptions: 10 kinds of damage to the files a run reads back, each made to a real run's
directory or cache and followed by rerunning the same command, which must finish ok with the
same numbers and no manual step (the damaged file set aside as `<name>.corrupt-<n>`).

Figures to results/bench/fault_campaign.{json,md}. The two parts run separately (each well
under 8 minutes here):

    .venv/bin/python -m pytest -m bench tests/bench/test_fault_campaign.py -o addopts=""
"""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from tests.conftest import records

pytestmark = [pytest.mark.bench, pytest.mark.timeout(3600)]

ARGS = ["dataset=synthetic", "trainer.progress=false", "dataset.train_size=1024", "dataset.test_size=256",
        "pipeline.pretrain_epochs=2", "pipeline.retrain_epochs=3", "method.rank=4", "logger=none"]
COMMAND = ".venv/bin/python -m pytest -m bench tests/bench/test_fault_campaign.py -o addopts=\"\""
KILLS, SEED, STEPS = 20, 12, 8  # STEPS: optimizer steps an epoch (1024 / 128)
# not results: the attempt counter, and what the clock measures (every time_* field, the speed
# measurements of tnbench.pipeline.speed)
SKIP = ("attempt", "torch_threads", "speed", "latency_dense_ms", "latency_compressed_ms", "throughput_dense",
        "throughput_compressed", "speedup_measured", "speedup_latency")


def numbers(rec: Any, prefix: str = "") -> dict[str, float]:
    """Every numeric leaf of a record (booleans, times and the attempt counter aside)."""
    out: dict[str, float] = {}
    if isinstance(rec, dict):
        for k, v in rec.items():
            if k in SKIP or str(k).startswith("time_"):
                continue
            out.update(numbers(v, f"{prefix}{k}."))
    elif isinstance(rec, list):
        for i, v in enumerate(rec):
            out.update(numbers(v, f"{prefix}{i}."))
    elif isinstance(rec, (int, float)) and not isinstance(rec, bool):
        out[prefix.rstrip(".")] = rec
    return out


def launch(cwd: Path, env: dict[str, str] | None = None, kill_after: float | None = None) -> int:
    """`python -m tnbench ARGS` in `cwd`; with `kill_after`, SIGKILLed that many seconds in."""
    cwd.mkdir(parents=True, exist_ok=True)
    full = {**os.environ, "PYTHONUNBUFFERED": "1", "WANDB_MODE": "offline", "OMP_NUM_THREADS": "1", **(env or {})}
    p = subprocess.Popen([sys.executable, "-m", "tnbench", *ARGS], cwd=cwd, env=full,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if kill_after is None:
        _, err = p.communicate(timeout=600)
        assert p.returncode == 0, err[-2000:]
        return 0
    try:
        p.wait(timeout=kill_after)
    except subprocess.TimeoutExpired:
        p.send_signal(signal.SIGKILL)
    p.communicate(timeout=60)
    return p.returncode


def record(results: Path) -> dict:
    (rec,) = records(results)
    return rec


def write_part(results_dir: Path, part: str, data: dict[str, Any]) -> None:
    """Merge one part's figures into fault_campaign.json and rewrite the table."""
    path = results_dir / "fault_campaign.json"
    all_parts = json.loads(path.read_text()) if path.exists() else {}
    all_parts[part] = data
    all_parts["command"] = COMMAND
    all_parts["machine"] = f"{os.cpu_count()} CPUs, torch {torch.__version__}, OMP_NUM_THREADS=1"
    path.write_text(json.dumps(all_parts, indent=2) + "\n")
    lines = ["# Fault campaign", "", f"Command: `{COMMAND}`", "",
             f"Runs: `python -m tnbench {' '.join(ARGS)}` ({all_parts['machine']}).", ""]
    if "kills" in all_parts:
        k = all_parts["kills"]
        lines += ["## SIGKILLs", "", f"{k['kills']} kills (seed {k['seed']}): {k['identical']} resumed to a record "
                  f"identical in every numeric field ({k['fields']} fields) to the uninterrupted run; "
                  f"{k['seconds']:.0f} s in all.", "", "| # | moment | exit | attempts | identical |",
                  "|---|---|---|---|---|"]
        lines += [f"| {i + 1} | {r['moment']} | {r['exit']} | {r['attempts']} | {r['identical']} |"
                  for i, r in enumerate(k["runs"])]
        lines.append("")
    if "corruptions" in all_parts:
        c = all_parts["corruptions"]
        lines += ["## Corruptions", "", f"{c['recovered']} of {c['kinds']} kinds recovered without a manual step "
                  f"(same numbers as the uninterrupted run); {c['seconds']:.0f} s in all.", "",
                  "| kind | recovered | set aside |", "|---|---|---|"]
        lines += [f"| {r['kind']} | {r['recovered']} | {', '.join(r['set_aside']) or '-'} |" for r in c["runs"]]
        lines.append("")
    (results_dir / "fault_campaign.md").write_text("\n".join(lines))


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict[str, float]:
    work = tmp_path_factory.mktemp("reference")
    t0 = time.perf_counter()
    launch(work)
    REFERENCE_SECONDS.append(time.perf_counter() - t0)
    return numbers(record(work / "results"))


REFERENCE_SECONDS: list[float] = []


def moments(rng: random.Random) -> list[tuple[str, str | float]]:
    """Failpoints, and every fourth kill a timer: between 30% and 95% of an uninterrupted run."""
    points = [f"pretrain:step:{n}" for n in range(1, 2 * STEPS)] + [f"retrain:step:{n}" for n in range(1, 3 * STEPS)]
    points += ["pretrain:epoch:1", "retrain:epoch:1", "retrain:epoch:2", "compress:done"]
    out: list[tuple[str, str | float]] = []
    for i in range(KILLS):
        if i % 4 == 3:
            out.append(("timer", round(rng.uniform(0.3, 0.95) * REFERENCE_SECONDS[0], 2)))
        else:
            out.append(("failpoint", rng.choice(points)))
    return out


def test_sigkills_resume_to_identical_records(reference, tmp_path, results_dir):
    t0 = time.perf_counter()
    runs = []
    for i, (kind, moment) in enumerate(moments(random.Random(SEED))):
        work = tmp_path / f"kill{i}"
        if kind == "failpoint":
            code = launch(work, env={"TNBENCH_FAILPOINT": str(moment)}, kill_after=600)
        else:
            code = launch(work, kill_after=float(moment))
        launch(work)
        got = record(work / "results")
        same = got["status"] == "ok" and numbers(got) == reference
        runs.append({"moment": f"{kind} {moment}{' s' if kind == 'timer' else ''}", "exit": code, "attempts": got.get("attempt"), "identical": same})
    data = {"kills": KILLS, "seed": SEED, "identical": sum(r["identical"] for r in runs), "fields": len(reference),
            "seconds": time.perf_counter() - t0, "runs": runs}
    write_part(results_dir, "kills", data)
    assert data["identical"] == KILLS, [r for r in runs if not r["identical"]]


# --- corruptions -------------------------------------------------------------------------------

def run_dir_of(work: Path) -> Path:
    (path,) = (work / "results" / "runs").iterdir()
    return path


def cache_entry(work: Path) -> Path:
    (path,) = (work / "results" / "cache" / "pretrain").glob("*.pt")
    return path


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def refuse(path: Path) -> None:
    blob = torch.load(path, map_location="cpu", weights_only=False)
    blob["optimizer_states"] = [{"state": {}, "param_groups": []}]
    torch.save(blob, path)


def stray_temps(work: Path) -> None:
    run = run_dir_of(work)
    for p in (run / ".record.json.a1b2.tmp", run / ".state.json.c3d4.tmp", run / "checkpoints" / "retrain-last.tmp"):
        p.parent.mkdir(exist_ok=True)
        p.write_bytes(b"half")
    entry = cache_entry(work)
    (entry.parent / f".{entry.name}.e5f6.tmp").write_bytes(b"half")


def half_written_checkpoints(work: Path) -> None:
    ckpt = run_dir_of(work) / "checkpoints"
    (ckpt / "retrain-last.ckpt").write_bytes(b"")
    (ckpt / "retrain-last.tmp").write_bytes(b"PK\x03\x04 half")


# kind -> (the failpoint that leaves the run to damage, or None for a finished run; the damage)
CORRUPTIONS = {
    "truncated epoch checkpoint": ("retrain:epoch:2", lambda w: truncate(run_dir_of(w) / "checkpoints" / "retrain-last.ckpt")),
    "checkpoint Lightning refuses": ("retrain:epoch:1", lambda w: refuse(run_dir_of(w) / "checkpoints" / "retrain-last.ckpt")),
    "half-written checkpoint dir": ("retrain:epoch:1", half_written_checkpoints),
    "state.json of the wrong shape": ("compress:done", lambda w: (run_dir_of(w) / "state.json").write_text("[1, 2]")),
    "state.json missing a field": ("compress:done", lambda w: (run_dir_of(w) / "state.json").write_text(
        json.dumps({"attempts": 1, "pretrain": {"weights": "gone.pt"}}))),
    "garbage state.json": ("retrain:step:5", lambda w: (run_dir_of(w) / "state.json").write_bytes(b"\x00\xffgarbage")),
    "empty record.json": (None, lambda w: (run_dir_of(w) / "record.json").write_text("")),
    "cache entry without sidecar": ("compress:done", lambda w: (cache_entry(w).with_name(cache_entry(w).name + ".sha256")).unlink()),
    "truncated cache entry": ("compress:done", lambda w: truncate(cache_entry(w))),
    "stray temp files of killed writes": ("retrain:epoch:1", stray_temps),
}


def test_corruptions_are_recovered_without_manual_steps(reference, tmp_path, results_dir):
    t0 = time.perf_counter()
    runs = []
    for i, (kind, (point, damage)) in enumerate(CORRUPTIONS.items()):
        work = tmp_path / f"c{i}"
        if point is None:
            launch(work)
        else:
            launch(work, env={"TNBENCH_FAILPOINT": point}, kill_after=600)
        damage(work)
        launch(work)
        got = record(work / "results")
        aside = sorted(p.name for p in (work / "results").rglob("*.corrupt-*"))
        temps = [p for p in (work / "results").rglob("*.tmp")]
        ok = got["status"] == "ok" and numbers(got) == reference and not temps
        runs.append({"kind": kind, "recovered": ok, "set_aside": aside})
    data = {"kinds": len(CORRUPTIONS), "recovered": sum(r["recovered"] for r in runs),
            "seconds": time.perf_counter() - t0, "runs": runs}
    write_part(results_dir, "corruptions", data)
    assert data["recovered"] == len(CORRUPTIONS), [r for r in runs if not r["recovered"]]
