"""Benchmark: generating weights with a brick-wall circuit (ADTN), Q = 20..24 indices, M = 4..16
gate layers, on CPU in float32: time and peak memory of a forward pass and of forward+backward,
against the flop count of gate application.

Flops. A gate multiplies the 2^(Q-2) four-vectors of the state by a 4x4 matrix: 16
multiply-adds = 32 flops per four-vector, 8 * 2^Q per gate. A gate layer has floor(Q/2) or
floor((Q-1)/2) gates, so a forward pass is n_gates(Q, M) * 8 * 2^Q ~ 4 M Q 2^Q flops. Backward
costs two such passes (the gradient pushed back through each gate, and each gate's gradient,
another 8 * 2^Q) plus the recomputation its checkpointing needs: about one more forward pass
for "sqrt", none for "none", ~log2(n)/2 for "log" (tnbench.functional.brickwall.recomputed_gates).

Memory. Each grid point runs in a fresh process; the peak is the rise of the process's maximum
resident set (ru_maxrss) over its size just before the pass, for the first forward pass and
then the first forward+backward. Python's tracemalloc does not see torch's allocations, hence
the RSS. glibc serves blocks under its (dynamic, up to 32 MiB) mmap threshold from the heap
and keeps them after free, which inflates the RSS of small-Q runs, so these two passes run
with the threshold pinned at 128 KiB (MALLOC_MMAP_THRESHOLD_): every state vector is mapped
and unmapped and the RSS follows the live tensors. That costs a page fault per 4 KiB per
gate (2-4x slower at Q = 20), so the timed passes come after, with glibc set back to reusing
freed blocks (mallopt: mmap threshold 32 MiB, trim threshold 64 MiB, what a long-running
process converges to). A forward pass should hold ~2 vectors of 2^Q floats (input and output
of the current gate); backward holds the checkpointed states plus the span being recomputed.

The circuit runs as the method runs it: one intra-op thread (`method.threads`, default 1) and
`checkpoint: auto`. The figures go to results/bench/adtn_generation.{json,md}.

    .venv/bin/python -m pytest -m bench tests/bench/test_adtn_speed.py -o addopts=""

TNBENCH_ADTN_GRID overrides the grid (default "20:4,8,16;22:4,8,16;24:4,8,16", a few minutes
on 2 quiet cores; a smaller one for a loaded machine), e.g. "20:4,8,16;22:8;24:4".
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.bench

# not tests.conftest.REPO: this file also runs as a script (run_point), without the repository on sys.path
REPO = Path(__file__).resolve().parents[2]
OUT = REPO / "results" / "bench"
COMMAND = '.venv/bin/python -m pytest -m bench tests/bench/test_adtn_speed.py -o addopts=""'
DEFAULT_GRID = "20:4,8,16;22:4,8,16;24:4,8,16"
# the memory/recompute trade of the checkpoint modes, at one point
MODES_POINT = (20, 8)
REPS = 2  # timed passes per grid point after the two measured for memory (1 at Q >= 24)
SLACK_MIB = 16  # allocator and library buffers that do not scale with 2^Q


def grid() -> list[tuple[int, int]]:
    spec = os.environ.get("TNBENCH_ADTN_GRID", DEFAULT_GRID)
    points = []
    for part in spec.split(";"):
        q, depths = part.split(":")
        points += [(int(q), int(m)) for m in depths.split(",")]
    return points


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _maxrss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _reuse_freed_blocks() -> None:
    """glibc: serve blocks up to 32 MiB from the heap and keep up to 64 MiB free at its top."""
    import ctypes

    libc = ctypes.CDLL("libc.so.6")
    m_trim_threshold, m_mmap_threshold = -1, -3
    libc.mallopt(m_trim_threshold, 64 * 2**20)
    libc.mallopt(m_mmap_threshold, 32 * 2**20)


def measure(qubits: int, depth: int, mode: str) -> dict:
    """One grid point, in this (fresh) process."""
    import torch

    from tnbench.functional.brickwall import (
        brick_wall,
        checkpoint_plan,
        forward_flops,
        gate_flops,
        gate_positions,
        num_gates,
        product_state,
        recomputed_gates,
    )

    torch.manual_seed(0)
    positions = gate_positions(qubits, depth)
    n = num_gates(qubits, depth)
    gates = (torch.eye(4) + 0.1 * torch.randn(n, 4, 4)).requires_grad_()
    state = product_state(qubits)
    weight = torch.randn(2**qubits)  # a fixed upstream gradient: loss = <weight, output>
    vector = 4 * 2**qubits
    threads = 1

    def forward():
        with torch.no_grad():
            return brick_wall(state, gates, positions, qubits, mode, threads)

    def forward_backward():
        gates.grad = None
        out = brick_wall(state, gates, positions, qubits, mode, threads)
        torch.dot(out, weight).backward()
        return gates.grad

    base = _rss_bytes()
    out = forward()
    peak_fwd = _maxrss_bytes() - base
    del out
    base2 = _rss_bytes()
    grad = forward_backward()
    peak_fb = _maxrss_bytes() - base2
    assert torch.isfinite(grad).all()
    _reuse_freed_blocks()
    fwd_times, fb_times = [], []
    for _ in range(REPS if qubits < 24 else 1):
        t = time.perf_counter()
        forward()
        fwd_times.append(time.perf_counter() - t)
        t = time.perf_counter()
        forward_backward()
        fb_times.append(time.perf_counter() - t)
    split, leaf = checkpoint_plan(mode, n, qubits, 4)
    recomputed = recomputed_gates(n, split, leaf)
    flops_fwd = forward_flops(qubits, depth)
    flops_fb = (3 * n + recomputed) * gate_flops(qubits)
    t_fwd, t_fb = min(fwd_times), min(fb_times)
    return {
        "qubits": qubits, "depth": depth, "gates": n, "entries": 2**qubits, "checkpoint": mode,
        "plan_split_leaf": [split, leaf], "recomputed_gates": recomputed, "threads": threads,
        "forward_s": t_fwd, "forward_backward_s": t_fb,
        "forward_gflop": flops_fwd / 1e9, "forward_backward_gflop": flops_fb / 1e9,
        "forward_gflops_per_s": flops_fwd / t_fwd / 1e9, "forward_backward_gflops_per_s": flops_fb / t_fb / 1e9,
        "forward_gb_per_s": n * 2 * vector / t_fwd / 1e9,  # each gate reads and writes the state once
        "peak_forward_mib": peak_fwd / 2**20, "peak_forward_backward_mib": peak_fb / 2**20,
        "peak_forward_vectors": peak_fwd / vector, "peak_forward_backward_vectors": peak_fb / vector,
        "vector_mib": vector / 2**20, "times_forward": fwd_times, "times_forward_backward": fb_times,
    }


def run_point(qubits: int, depth: int, mode: str) -> dict:
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "131072"}
    proc = subprocess.run([sys.executable, __file__, str(qubits), str(depth), mode], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _markdown(rows: list[dict], modes: list[dict], meta: dict) -> str:
    lines = [
        "# ADTN weight generation: time and memory",
        "",
        f"Command: `{COMMAND}`",
        "",
        f"{meta['date']}, {meta['machine']}, torch {meta['torch']}, float32, {meta['threads']} intra-op thread, "
        f"load average at start {meta['load_start']}, at end {meta['load_end']}.",
        "",
        "Forward flops = n_gates x 8 x 2^Q (4x4 gate on each four-vector of the state, ~4 M Q 2^Q);",
        "forward+backward = (3 n_gates + recomputed gates) x 8 x 2^Q: the forward pass, the gradient pushed",
        "back through each gate, each gate's gradient, and the states `checkpoint` recomputes (~one",
        "forward pass for sqrt, none for none, ~log2(n)/2 passes for log). A gate reads and writes the",
        "state once, 8 bytes per 8 flops, so fwd GB/s = fwd GFLOP/s: the contraction is memory bound.",
        "Peak memory = rise of the process's max RSS over a first pass (glibc mmap threshold pinned at 128 KiB),",
        "in MiB and in vectors of 2^Q floats; times are later passes with glibc reusing freed blocks.",
        "",
        "| Q | M | gates | checkpoint | fwd s | fwd GFLOP/s | fwd GB/s | fwd+bwd s | fwd+bwd GFLOP/s | peak fwd (vectors) | peak fwd+bwd (vectors) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows + modes:
        lines.append(
            f"| {r['qubits']} | {r['depth']} | {r['gates']} | {r['checkpoint']} {tuple(r['plan_split_leaf'])} | "
            f"{r['forward_s']:.3f} | {r['forward_gflops_per_s']:.2f} | {r['forward_gb_per_s']:.2f} | "
            f"{r['forward_backward_s']:.3f} | {r['forward_backward_gflops_per_s']:.2f} | "
            f"{r['peak_forward_mib']:.0f} MiB ({r['peak_forward_vectors']:.1f}) | "
            f"{r['peak_forward_backward_mib']:.0f} MiB ({r['peak_forward_backward_vectors']:.1f}) |")
    lines += ["", "(split, leaf) is the checkpoint plan: states kept at `split` cuts, spans of `leaf` gates",
              "recomputed whole. The machine is shared: timings are the best of "
              f"{REPS} runs (1 at Q >= 24) and move with the load (see the load averages above)."]
    return "\n".join(lines) + "\n"


def _load() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def test_adtn_generation_speed_and_memory():
    import torch

    load_start = _load()
    rows = [run_point(q, m, "auto") for q, m in grid()]
    modes = [run_point(*MODES_POINT, mode) for mode in ("none", "sqrt", "log")]
    meta = {"date": _dt.datetime.now().isoformat(timespec="seconds"), "machine": f"{platform.machine()} "
            f"{os.cpu_count()} CPUs", "torch": torch.__version__, "threads": 1, "load_start": load_start,
            "load_end": _load(), "command": COMMAND}
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "adtn_generation.json").write_text(json.dumps({"meta": meta, "grid": rows, "checkpoint_modes": modes},
                                                         indent=2) + "\n")
    (OUT / "adtn_generation.md").write_text(_markdown(rows, modes, meta))
    for r in rows + modes:
        # a forward pass holds the current gate's input and output (allocator slack aside)
        assert r["peak_forward_mib"] < 4 * r["vector_mib"] + SLACK_MIB, r
        split, leaf = r["plan_split_leaf"]
        kept = min(split, r["gates"]) + leaf if r["checkpoint"] != "log" else 2 * r["gates"].bit_length() + 2
        assert r["peak_forward_backward_mib"] < (kept + 6) * r["vector_mib"] + SLACK_MIB, r


if __name__ == "__main__":
    q, m, mode = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    print(json.dumps(measure(q, m, mode)))
