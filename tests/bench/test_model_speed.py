"""Benchmark: whole-model inference speed of every method's compressed LeNet-5 (1x28x28) and VGG-16
(CIFAR-shaped, 3x32x32) against the dense model, at batch 1 and batch 128.

No training: each model is randomly initialised (seed 0) and compressed by each method with its
default settings (ADTN / ADQC with no fitting steps, CP with 5 ALS sweeps: the values do not
change the speed, the shapes do). A method that refuses a model (shape limits) is listed with its
reason. All variants of one model are timed in interleaved rounds (the order rotates every
round), so that a busy machine slows them alike: per round and batch, the median of a few
forward passes under `torch.inference_mode`, channels-last as tnbench runs them; the reported
time is the median over the rounds, the speedup dense / compressed. Run it under the CPU lock:

    flock /tmp/tnbench-cpu.lock .venv/bin/python -m pytest -q -m bench tests/bench/test_model_speed.py -p no:cacheprovider -o addopts=""

Writes results/bench/model_speed.json, .md and .png (one file, each model's rows replaced when
its case runs: `-k lenet5` or `-k vgg16` run one model).
"""
from __future__ import annotations

import json
import os
import platform
import statistics
import time
from typing import Any

import pytest
import torch
from torch import nn

from tests.conftest import method_cfg
from tnbench.errors import ConfigError
from tnbench.methods import METHODS, build_method
from tnbench.models import build_model
from tnbench.pipeline.metrics import count_flops

pytestmark = pytest.mark.bench

ROUNDS = int(os.environ.get("TNBENCH_BENCH_ROUNDS", "5"))
BATCHES = (1, 128)
PASSES = {1: 20, 128: 2}  # forward passes per round and batch (median taken)
MODELS = {"lenet5": (1, 28, 10), "vgg16": (3, 32, 10)}
CHEAP = {"adtn": {"fit_steps": 0}, "adqc": {"fit_steps": 0}, "cp": {"n_iter_max": 5}}
COMMAND = ("flock /tmp/tnbench-cpu.lock .venv/bin/python -m pytest -q -m bench tests/bench/test_model_speed.py "
           "-p no:cacheprovider -o addopts=\"\"")
NAME = "model_speed"


def variants(model_name: str) -> tuple[dict[str, nn.Module], dict[str, str]]:
    """The dense model and each method's compressed one (same initial weights); why others are missing."""
    channels, size, classes = MODELS[model_name]

    def dense() -> nn.Module:
        torch.manual_seed(0)
        return build_model(model_name, in_channels=channels, image_size=size, num_classes=classes)

    models, skipped = {"dense": dense()}, {}
    for name in METHODS.names():
        if name == "none":
            continue
        model = dense()
        try:
            method = build_method(method_cfg(name, **CHEAP.get(name, {})))
            method.check_model(model)
            method.compress(model)
        except (ConfigError, ValueError) as e:
            skipped[name] = str(e).splitlines()[0]
            continue
        models[name] = model
    for m in models.values():
        m.eval().to(memory_format=torch.channels_last)
    return models, skipped


@torch.inference_mode()
def median_pass(model: nn.Module, x: torch.Tensor, passes: int) -> float:
    times = []
    for _ in range(passes):
        t0 = time.perf_counter()
        model(x)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def time_models(models: dict[str, nn.Module], shape: tuple[int, int, int]) -> dict[tuple[str, int], float]:
    inputs = {b: torch.randn(b, *shape).contiguous(memory_format=torch.channels_last) for b in BATCHES}
    for model in models.values():  # warm-up: allocators, implementation choices, caches
        for b in BATCHES:
            median_pass(model, inputs[b], 2)
    names = list(models)
    rounds: dict[tuple[str, int], list[float]] = {(n, b): [] for n in names for b in BATCHES}
    for r in range(ROUNDS):
        order = names[r % len(names):] + names[:r % len(names)]
        for b in BATCHES:
            for n in order:
                rounds[(n, b)].append(median_pass(models[n], inputs[b], PASSES[b]))
    return {k: statistics.median(v) for k, v in rounds.items()}


def rows_for(model_name: str) -> list[dict[str, Any]]:
    channels, size, _ = MODELS[model_name]
    models, skipped = variants(model_name)
    times = time_models(models, (channels, size, size))
    flops = {(n, b): count_flops(m, (channels, size, size), b)["total"] for n, m in models.items() for b in BATCHES}
    params = {n: sum(p.numel() for p in m.parameters()) for n, m in models.items()}
    rows = []
    for n in models:
        if n == "dense":
            continue
        row = {"model": model_name, "method": n, "params_ratio": params["dense"] / params[n]}
        for b in BATCHES:
            row[f"flops_ratio_b{b}"] = flops[("dense", b)] / flops[(n, b)]
            row[f"dense_ms_b{b}"] = 1000 * times[("dense", b)]
            row[f"compressed_ms_b{b}"] = 1000 * times[(n, b)]
            row[f"speedup_b{b}"] = times[("dense", b)] / times[(n, b)]
        rows.append(row)
    rows += [{"model": model_name, "method": n, "skipped": why} for n, why in skipped.items()]
    return rows


def write_results(results_dir, rows: list[dict[str, Any]]) -> None:
    path = results_dir / f"{NAME}.json"
    old = json.loads(path.read_text())["rows"] if path.is_file() else []
    done = {r["model"] for r in rows}
    rows = [r for r in old if r["model"] not in done] + rows
    rows.sort(key=lambda r: (list(MODELS).index(r["model"]), r["method"]))
    meta = {"command": COMMAND, "rounds": ROUNDS, "passes": PASSES, "threads": torch.get_num_threads(),
            "torch": torch.__version__, "machine": f"{platform.machine()}, {os.cpu_count()} cores",
            "defaults": "each method's default settings; " + ", ".join(f"{k}: {v}" for k, v in CHEAP.items())}
    path.write_text(json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")
    lines = [f"# Whole-model inference speed, compressed vs dense ({meta['machine']}, {meta['threads']} threads, "
             f"torch {meta['torch']})", "", f"Command: `{COMMAND}`", "",
             f"Random initialisation (seed 0), {meta['defaults']}. Medians over {ROUNDS} interleaved rounds of "
             f"{PASSES[1]} (batch 1) / {PASSES[128]} (batch 128) forward passes, inference mode, channels-last. "
             "speedup = dense time / compressed time; flops = dense / compressed FLOPs per example at that batch "
             "(torch.utils.flop_counter, factorized form).", "",
             "| model | method | params ratio | flops b1 | dense ms b1 | ms b1 | speedup b1 | flops b128 | "
             "dense ms b128 | ms b128 | speedup b128 |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if "skipped" in r:
            lines.append(f"| {r['model']} | {r['method']} | skipped: {r['skipped']} ||||||||| ")
            continue
        lines.append(f"| {r['model']} | {r['method']} | {r['params_ratio']:.1f} | {r['flops_ratio_b1']:.2f} | "
                     f"{r['dense_ms_b1']:.3f} | {r['compressed_ms_b1']:.3f} | {r['speedup_b1']:.2f} | "
                     f"{r['flops_ratio_b128']:.2f} | {r['dense_ms_b128']:.1f} | {r['compressed_ms_b128']:.1f} | "
                     f"{r['speedup_b128']:.2f} |")
    (results_dir / f"{NAME}.md").write_text("\n".join(lines) + "\n")
    plot(results_dir, [r for r in rows if "skipped" not in r])


def plot(results_dir, rows: list[dict[str, Any]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = [m for m in MODELS if any(r["model"] == m for r in rows)]
    fig, axes = plt.subplots(1, len(models), figsize=(6.2 * len(models), 4.8), squeeze=False)
    for ax, model in zip(axes[0], models):
        sub = [r for r in rows if r["model"] == model]
        values = [v for r in sub for v in (r["flops_ratio_b1"], r["flops_ratio_b128"], r["speedup_b1"],
                                            r["speedup_b128"])]
        lo, hi = min(min(values), 1.0) / 1.4, max(max(values), 1.0) * 1.4
        for i, r in enumerate(sub):
            color = plt.get_cmap("tab20")(i % 20)
            ax.scatter(r["flops_ratio_b128"], r["speedup_b128"], color=color, marker="o", s=36, label=r["method"])
            ax.scatter(r["flops_ratio_b1"], r["speedup_b1"], color=color, marker="x", s=36)
            ax.annotate(r["method"], (r["flops_ratio_b128"], r["speedup_b128"]), fontsize=7, xytext=(4, 2),
                        textcoords="offset points")
        ax.plot([lo, hi], [lo, hi], color="0.5", ls="--", lw=1, label="speedup = FLOP reduction")
        ax.axhline(1.0, color="C3", lw=0.8)
        ax.set(xscale="log", yscale="log", xlim=(lo, hi), ylim=(lo, hi),
               xlabel="FLOP reduction (dense / compressed)", ylabel="measured speedup (dense / compressed time)",
               title=f"{model}: o batch 128, x batch 1")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=6, loc="upper left", ncol=2)
    fig.tight_layout()
    fig.savefig(results_dir / f"{NAME}.png", dpi=110)
    plt.close(fig)


@pytest.mark.parametrize("model_name", list(MODELS))
def test_whole_model_speed(model_name, results_dir):
    rows = rows_for(model_name)
    timed = [r for r in rows if "skipped" not in r]
    assert timed, f"no method compressed {model_name}"
    assert all(r["dense_ms_b1"] > 0 and r["compressed_ms_b128"] > 0 for r in timed)
    write_results(results_dir, rows)
