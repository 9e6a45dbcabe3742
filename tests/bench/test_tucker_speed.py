"""Benchmark: forward+backward time and FLOPs of `TuckerConv2d` against the dense Conv2d and
tensorly-torch's factorized Tucker convolution, at equal ranks, on VGG-16-sized layers.

Each case (channels x map size x rank) builds the three layers from one dense 3x3 conv; the
three are then timed in interleaved rounds (the order rotates every round) so that a busy
machine slows them alike, and the reported ratios are of per-layer medians over the rounds.
All inputs are channels-last, as tnbench trains. Ranks are a fraction of the channels on the
OUT and IN modes; tensorly-torch gets rank (r, r, 3, 3), its kernel modes whole like ours.

    make bench        # or: .venv/bin/python -m pytest -q -m bench tests/bench/test_tucker_speed.py -o addopts=""

Writes results/bench/tucker_conv.json and tucker_conv.md.
"""
from __future__ import annotations

import json
import os
import platform
import statistics
import time

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from tnbench.layers.tucker import TuckerConv2d

pytestmark = pytest.mark.bench

CHANNELS = (256, 512)
MAPS = (8, 16, 32)
RANK_FRACTIONS = (0.25, 0.5)
BATCH = 32
ROUNDS = int(os.environ.get("TNBENCH_BENCH_ROUNDS", "3"))
COMMAND = ".venv/bin/python -m pytest -q -m bench tests/bench/test_tucker_speed.py -p no:cacheprovider -o addopts=\"\""


def build_layers(channels: int, fraction: float) -> dict[str, nn.Module]:
    import tltorch

    torch.manual_seed(0)
    conv = nn.Conv2d(channels, channels, 3, padding=1, bias=True)
    rank = int(channels * fraction)
    tucker, _ = TuckerConv2d.from_dense(conv, [rank, rank])
    # the values do not change the speed; skipping tensorly's decomposition saves minutes
    tl = tltorch.FactorizedConv.from_conv(conv, rank=[rank, rank, 3, 3], factorization="tucker",
                                          implementation="factorized", decompose_weights=False)
    layers = {"dense": conv, "tucker": tucker, "tltorch": tl}
    return {k: m.to(memory_format=torch.channels_last) for k, m in layers.items()}


def step(layer: nn.Module, x: torch.Tensor, grad: torch.Tensor) -> None:
    layer(x).backward(grad)


def timed(layer: nn.Module, x: torch.Tensor, grad: torch.Tensor) -> float:
    layer.zero_grad(set_to_none=True)
    x.grad = None
    t0 = time.perf_counter()
    step(layer, x, grad)
    return time.perf_counter() - t0


def flops(layer: nn.Module, x: torch.Tensor, grad: torch.Tensor) -> tuple[int, int]:
    """(forward, forward+backward) FLOPs as counted by torch.utils.flop_counter."""
    with FlopCounterMode(display=False) as fwd:
        y = layer(x)
    with FlopCounterMode(display=False) as bwd:
        y.backward(grad)
    return int(fwd.get_total_flops()), int(fwd.get_total_flops() + bwd.get_total_flops())


def weight_params(layer: nn.Module) -> int:
    return sum(p.numel() for n, p in layer.named_parameters() if "bias" not in n)


def write_results(results_dir, rows: list[dict]) -> None:
    meta = {
        "command": COMMAND,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
        "rounds": ROUNDS,
        "note": "ratios are of medians over interleaved rounds; < 1 means faster than the reference",
    }
    (results_dir / "tucker_conv.json").write_text(json.dumps({"meta": meta, "cases": rows}, indent=2) + "\n")
    lines = [
        "# TuckerConv2d vs dense Conv2d vs tensorly-torch (Tucker, factorized), forward+backward",
        "",
        f"Command: `{COMMAND}`  ",
        f"torch {meta['torch']}, {meta['threads']} threads, {meta['cpu']}, batch {BATCH}, 3x3 conv, "
        f"channels-last input, {ROUNDS} interleaved rounds (medians).",
        "",
        "| C | map | rank | dense ms | tucker ms | tltorch ms | tucker/dense | tltorch/dense | tucker/tltorch "
        "| GFLOP fwd+bwd dense / tucker / tltorch |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        g = r["gflops_forward_backward"]
        lines.append(
            f"| {r['channels']} | {r['map']} | {r['rank']} ({int(100 * r['rank_fraction'])}%) "
            f"| {r['ms']['dense']:.1f} | {r['ms']['tucker']:.1f} | {r['ms']['tltorch']:.1f} "
            f"| {r['ratio_tucker_vs_dense']:.2f} | {r['ratio_tltorch_vs_dense']:.2f} | {r['ratio_tucker_vs_tltorch']:.2f} "
            f"| {g['dense']:.2f} / {g['tucker']:.2f} / {g['tltorch']:.2f} |"
        )
    (results_dir / "tucker_conv.md").write_text("\n".join(lines) + "\n")


@pytest.mark.timeout(7200)  # the whole grid on a busy 2-core CPU takes a while
def test_tucker_conv_speed(results_dir):
    rows: list[dict] = []
    for channels in CHANNELS:
        for size in MAPS:
            for fraction in RANK_FRACTIONS:
                layers = build_layers(channels, fraction)
                x = torch.randn(BATCH, channels, size, size).to(memory_format=torch.channels_last).requires_grad_()
                grad = torch.randn(BATCH, channels, size, size).to(memory_format=torch.channels_last)
                with torch.no_grad():  # the same function up to the factorization
                    assert layers["tucker"](x).shape == layers["tltorch"](x).shape == layers["dense"](x).shape
                names = list(layers)
                for name in names:  # warm-up
                    timed(layers[name], x, grad)
                times: dict[str, list[float]] = {n: [] for n in names}
                for r in range(ROUNDS):
                    order = names[r % len(names):] + names[:r % len(names)]
                    for name in order:
                        times[name].append(timed(layers[name], x, grad))
                med = {n: statistics.median(t) for n, t in times.items()}
                counted = {n: flops(layers[n], x, grad) for n in names}
                rows.append({
                    "channels": channels, "map": size, "batch": BATCH, "rank_fraction": fraction,
                    "rank": int(channels * fraction),
                    "ms": {n: 1e3 * v for n, v in med.items()},
                    "ms_all": {n: [1e3 * v for v in t] for n, t in times.items()},
                    "ratio_tucker_vs_dense": med["tucker"] / med["dense"],
                    "ratio_tltorch_vs_dense": med["tltorch"] / med["dense"],
                    "ratio_tucker_vs_tltorch": med["tucker"] / med["tltorch"],
                    "gflops_forward": {n: c[0] / 1e9 for n, c in counted.items()},
                    "gflops_forward_backward": {n: c[1] / 1e9 for n, c in counted.items()},
                    "weight_params": {n: weight_params(m) for n, m in layers.items()},
                })
                write_results(results_dir, rows)  # after every case: a cut-short run keeps its rows
                # fewer FLOPs than dense is what the factorization is for
                assert counted["tucker"][1] < counted["dense"][1]

