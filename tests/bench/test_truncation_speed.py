"""Benchmark: the cost of the post-training truncation study (arXiv 2403.14379).

1. Evaluation-only sweep, time per grid point vs a plain evaluation of the same model.
   LeNet-5 on Fashion-MNIST (the pipeline's pretrained model: pretrain cache or 3 epochs), the
   full 10k test split, through `tnbench.studies.truncation.Sweep`, exactly what
   `python -m tnbench.studies.truncation` runs per point: restore the dense weights, truncate
   every conv with `method=svd_truncation` (cut, norm loss), evaluate. The memo is cleared for
   every point so each one is evaluated. Both evaluation modes: dense-reconstructed kernels
   (the study's default) and factorized layers (`--factorized`).
2. CP truncation time per layer for VGG-16's largest convs (512 x 512 x 3 x 3, the last three),
   `tnbench.functional.cp.cp_decompose` (tensorly parafac, the `cp` / `cp_truncation` methods' own
   call) at the method's defaults (100 ALS iterations at most, tol 1e-6, SVD init), CP ranks
   16, 64, 256. The weights are VGG-16's initialization (no CIFAR-10 here to pretrain on), which
   ALS fits slowly, so iteration counts are near the cap: an upper bound for trained kernels.

    make bench
    .venv/bin/python -m pytest -q -m bench tests/bench/test_truncation_speed.py -o addopts=""

Writes results/bench/truncation_speed.{json,md}. Speed is reported, not asserted.
"""
from __future__ import annotations

import copy
import datetime as _dt
import json
import os
import platform
import statistics
import time

import pytest
import torch

from tests.conftest import REPO

pytestmark = [pytest.mark.bench, pytest.mark.timeout(3600)]

COMMAND = '.venv/bin/python -m pytest -q -m bench tests/bench/test_truncation_speed.py -o addopts=""'
CUTS = ("out", "in", "out_in", "out_kh")
NORM_LOSSES = (0.1, 0.3, 0.5)
CP_RANKS = tuple(int(r) for r in os.environ.get("TNBENCH_BENCH_CP_RANKS", "16,64,256").split(","))
VGG_LAYERS = ("features.34", "features.37", "features.40")


def sweep_timing(cfg, model, geometry, batches, factorized: bool) -> dict:
    from omegaconf import OmegaConf

    from tnbench.studies.truncation import Sweep

    sweep = Sweep(cfg, model, geometry, batches, factorized)
    plain = []
    for _ in range(3):
        m = sweep.restored()
        t0 = time.perf_counter()
        sweep.evaluate(m)
        plain.append(time.perf_counter() - t0)
    base = OmegaConf.to_container(cfg.method, resolve=True)
    points = []
    for cut in CUTS:
        for target in NORM_LOSSES:
            sweep.memo.clear()
            mcfg = {**base, "cut": cut, "norm_loss": target, "rank": None, "rel_error": None, "layers": "all",
                    "factorized": factorized}
            t0 = time.perf_counter()
            acc, reports, evaluated = sweep.point(mcfg, ("svd", cut))
            points.append({"cut": cut, "norm_loss": target, "s": time.perf_counter() - t0, "acc": acc,
                           "evaluated": evaluated, "ranks": [r.ranks for r in reports]})
    timed = [p["s"] for p in points if p["evaluated"]]
    med_plain, med_point = statistics.median(plain), statistics.median(timed)
    return {"plain_eval_s": plain, "points": points, "median_plain_s": med_plain, "median_point_s": med_point,
            "ratio": med_point / med_plain, "evaluated_points": len(timed), "dense_acc": sweep.dense_acc}


def test_truncation_sweep_point_and_cp_layer_times(results_dir, tmp_path):
    from tnbench.functional.cp import cp_decompose
    from tnbench.models import build_model
    from tnbench.studies.truncation import compose_config, eval_batches, pretrained_model

    cfg = compose_config(["dataset=fashion_mnist", "model=lenet5", f"paths.data_dir={REPO / 'data'}",
                          f"paths.cache_dir={REPO / 'results' / 'cache'}", "trainer.progress=false"])
    model, dm, _, geometry = pretrained_model(cfg, tmp_path / "pretrain")
    batches = eval_batches(dm, 0, cfg.seed)
    # each sweep gets its own copy: the dense-reconstructed mode truncates the model in place
    sweeps = {mode: sweep_timing(cfg, copy.deepcopy(model), geometry, batches, mode == "factorized")
              for mode in ("dense-reconstructed", "factorized")}
    assert sweeps["dense-reconstructed"]["dense_acc"] == sweeps["factorized"]["dense_acc"] > 80
    for s in sweeps.values():
        assert s["evaluated_points"] >= len(CUTS) * len(NORM_LOSSES) - 2  # the points really ran
        assert all(0 <= p["acc"] <= 100 for p in s["points"])

    torch.manual_seed(0)
    vgg = build_model("vgg16", in_channels=3, image_size=32, num_classes=10)
    cp = []
    for name in VGG_LAYERS:
        w = vgg.get_submodule(name).weight.detach()
        for rank in CP_RANKS:
            t0 = time.perf_counter()
            _, info = cp_decompose(w, rank)
            cp.append({"layer": name, "shape": list(w.shape), "rank": rank, "s": time.perf_counter() - t0, **info})
    assert all(c["relative_error"] < 1.0 for c in cp)

    out = {"benchmark": "truncation_speed", "command": COMMAND, "make": "make bench",
           "date": _dt.datetime.now().isoformat(timespec="seconds"), "host": platform.node(),
           "cpu_threads": torch.get_num_threads(), "torch": torch.__version__, "load_avg": os.getloadavg(),
           "sweep": sweeps, "cp": cp}
    (results_dir / "truncation_speed.json").write_text(json.dumps(out, indent=2, default=str))
    lines = ["# Truncation study: time per sweep point, CP time per VGG-16 layer", "",
             f"`{COMMAND}` (or `make bench`), {out['date']}, {out['cpu_threads']} CPU threads, torch {torch.__version__}, "
             f"load average {', '.join(f'{x:.1f}' for x in out['load_avg'])}.", "",
             "## Evaluation-only sweep: LeNet-5, Fashion-MNIST (10k test images), every conv truncated", "",
             f"Grid: cuts {', '.join(CUTS)} x norm loss {', '.join(map(str, NORM_LOSSES))}; a point = restore the "
             "dense weights, truncate (`svd_truncation`), evaluate.", "",
             "| mode | plain evaluation s (median of 3) | s per point (median) | per point / plain | points |",
             "|---|---:|---:|---:|---:|"]
    for mode, s in sweeps.items():
        lines.append(f"| {mode} | {s['median_plain_s']:.3f} | {s['median_point_s']:.3f} | {s['ratio']:.2f}x | "
                     f"{s['evaluated_points']} |")
    lines += ["", f"Dense accuracy {sweeps['factorized']['dense_acc']:.2f}%; per-point times, accuracies and ranks "
                  "are in the JSON.", "",
              "## CP truncation per layer: VGG-16 (CIFAR variant), 512 x 512 x 3 x 3 convs", "",
              "`cp_decompose` = tensorly parafac (ALS, einsum backend), single-threaded, at most 100 iterations, "
              "tol 1e-6, SVD init; initialization weights (see the module docstring).", "",
              "| layer | CP rank | s | ALS iterations | relative error |", "|---|---:|---:|---:|---:|"]
    for c in cp:
        lines.append(f"| {c['layer']} | {c['rank']} | {c['s']:.1f} | {c['iterations']} | {c['relative_error']:.3f} |")
    lines.append("")
    (results_dir / "truncation_speed.md").write_text("\n".join(lines))
    print("\n".join(lines))
