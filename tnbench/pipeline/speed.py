"""Measured inference speed: latency at batch 1 and throughput at the evaluation batch size.

Each figure is the median of several timed forward passes after warm-up, on the model's
device, under `torch.inference_mode` (and the run's autocast for bf16/16-mixed precision),
with the job's intra-op threads. The passes stop once `budget_s` seconds are spent (at least
`min_passes`, at most `max_passes`), so a run pays a second or two, and a model slow on this
device pays a few passes. Timings are never part of a run's identity (`trainer.measure_speed`
turns them off without changing the run key); they say what the FLOP counts do not.
"""
from __future__ import annotations

import contextlib
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from tnbench.methods.base import is_channels_last
from tnbench.pipeline.metrics import record_flops
from tnbench.pipeline.progress import status_line


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def autocast_for(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    """The autocast that Lightning's mixed precision would run the evaluation under."""
    if "bf16" in str(precision) and "mixed" in str(precision):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    if str(precision).startswith("16") and "mixed" in str(precision):
        return torch.autocast(device.type, dtype=torch.float16)
    return contextlib.nullcontext()


@torch.inference_mode()
def time_forward(model: nn.Module, input_shape: Sequence[int], batch: int, precision: str = "32-true",
                 budget_s: float = 0.3, min_passes: int = 3, max_passes: int = 25, warmup: int = 2) -> dict[str, Any]:
    """Median seconds of one forward pass of `batch` examples (and how many passes were timed)."""
    p = next(model.parameters())
    device = p.device
    x = torch.randn(batch, *input_shape, device=device, dtype=p.dtype)
    if is_channels_last(model) and x.dim() == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    was_training = model.training
    model.eval()
    times: list[float] = []
    try:
        with autocast_for(precision, device):
            for _ in range(warmup):
                model(x)
            _sync(device)
            spent = 0.0
            while len(times) < max_passes and (len(times) < min_passes or spent < budget_s):
                t0 = time.perf_counter()
                model(x)
                _sync(device)
                times.append(time.perf_counter() - t0)
                spent += times[-1]
    finally:
        model.train(was_training)
    return {"seconds": statistics.median(times), "passes": len(times)}


def measure(model: nn.Module, input_shape: Sequence[int], eval_batch: int, precision: str = "32-true",
            budget_s: float = 0.3, step: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Latency at batch 1 (ms) and throughput at `eval_batch` (examples/s) of `model`; `step` is
    told each batch size before it is timed (a progress line)."""
    step = step or (lambda batch: None)
    step(1)
    one = time_forward(model, input_shape, 1, precision, budget_s)
    step(eval_batch)
    many = time_forward(model, input_shape, eval_batch, precision, budget_s)
    return {"latency_ms": 1000.0 * one["seconds"], "throughput": eval_batch / many["seconds"],
            "passes": [one["passes"], many["passes"]]}


def speed_record(dense: dict[str, Any], compressed: dict[str, Any], device: torch.device | str, eval_batch: int,
                 precision: str) -> dict[str, Any]:
    """The record's speed fields from the dense and the compressed measurement."""
    return {
        "latency_dense_ms": dense["latency_ms"],
        "latency_compressed_ms": compressed["latency_ms"],
        "throughput_dense": dense["throughput"],
        "throughput_compressed": compressed["throughput"],
        "speedup_measured": compressed["throughput"] / dense["throughput"],
        "speedup_latency": dense["latency_ms"] / compressed["latency_ms"],
        "speed": {"device": str(device), "threads": torch.get_num_threads(), "batch_latency": 1,
                  "batch_throughput": eval_batch, "precision": str(precision),
                  "passes_dense": dense["passes"], "passes_compressed": compressed["passes"]},
    }


def measure_cost(rec: dict[str, Any], model: nn.Module, input_shape: Sequence[int], which: str, *, flops: bool = True,
                 speed: bool = False, precision: str = "32-true", layers: Sequence[str] | None = None,
                 show: bool = False) -> dict[str, Any] | None:
    """The model's FLOP counts into `rec` (tnbench.pipeline.metrics.record_flops, for `which`:
    dense or compressed) and, with `speed`, its measured speed (returned), under one progress
    line: each is a forward pass or several at the evaluation batch, seconds for a VGG-16 on a CPU."""
    batch, subject = rec["flops_batch_size"], f"{which} model"
    total = int(flops) + 2 * int(speed)
    timed = None
    with status_line("measure", total, enabled=show) as line:
        if flops:
            line.show(f"{subject}: counting FLOPs at batch {batch}" + (" and 1" if batch != 1 else ""), f"0/{total}", 0)
            record_flops(rec, model, input_shape, which, layers)
        if speed:
            done = iter(range(int(flops), total))

            def timing(b: int) -> None:
                n = next(done)
                line.show(f"{subject}: timing batch {b}", f"{n}/{total}", n)

            timed = measure(model, input_shape, batch, precision, step=timing)
        parts = [f"{rec[f'flops_{which}_b1'] / 1e6:,.2f} MFLOPs"] if flops else []
        if timed is not None:
            parts.append(f"{timed['latency_ms']:.2f} ms at batch 1, {timed['throughput']:,.0f}/s at batch {batch}")
        line.finish(f"{subject}: " + ", ".join(parts), f"{total}/{total}")
    return timed
