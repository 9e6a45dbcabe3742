"""Benchmark: ADTN / ADQC with their stage-1 fits dropped when no closer to W than zero weights
(`method.fit_max_distance=1`, the default) against every fit kept (`null`, the behaviour before).

The method matrix's Fashion-MNIST setting (tests/bench/test_method_matrix.py: 4,096/1,000-image
subsets, one Adam pretraining epoch, one retraining epoch with the method's defaults, 200 fit
steps) on the models where the defaults retrained to chance, seeds 0 and 1. Each (model, seed) is
pretrained first (`method=none`), so every compared run loads the same dense model from the
pretrain cache and draws the same initial gates. Figures to results/bench/adtn_fit_drop.{json,md}.

    .venv/bin/python -m pytest -m bench tests/bench/test_adtn_fit_drop.py -o addopts=""
"""
from __future__ import annotations

import json
import os
import time

import pytest
import torch

from tests.bench.test_method_matrix import FASHION
from tests.methods.test_method_matrix import CAPPED, run_matrix_entry

pytestmark = [pytest.mark.bench, pytest.mark.timeout(3600)]

COMMAND = '.venv/bin/python -m pytest -m bench tests/bench/test_adtn_fit_drop.py -o addopts=""'
MODELS = ["lenet5", "lenet5_dlrt", "fc2"]
SEEDS = [0, 1]
SETTINGS = {"dropped (default)": [], "kept (null)": ["method.fit_max_distance=null"]}


def test_dropping_poor_fits_on_fashion_mnist(tmp_path, results_dir):
    rows, t0 = [], time.perf_counter()
    cache = f"paths.cache_dir={tmp_path / 'cache'}"  # shared by every run below
    for seed in SEEDS:
        for model in MODELS:
            run_matrix_entry(tmp_path / f"none-{seed}", "none", model, [*FASHION, f"seed={seed}", cache])
            for method in ("adtn", "adqc"):
                for label, extra in SETTINGS.items():
                    t = time.perf_counter()
                    root = tmp_path / f"{label.split()[0]}-{seed}"
                    rec = run_matrix_entry(root, method, model, [*FASHION, *CAPPED[method], f"seed={seed}", cache, *extra])
                    rows.append({"method": method, "model": model, "seed": seed, "fits": label,
                                 "cache_hit": rec["pretrain_cache_hit"], "status": rec["status"], "acc_pretrain": rec["acc_pretrain"],
                                 "acc_compressed": rec["acc_compressed"], "acc_retrained": rec.get("acc_retrained"),
                                 "distances": [round(f["final_distance"], 3) for f in rec["adtn_fit"]],
                                 "kept": [f["kept"] for f in rec["adtn_fit"]],
                                 "seconds": round(time.perf_counter() - t, 1)})
    data = {"command": COMMAND, "overrides": FASHION, "capped": CAPPED, "settings": SETTINGS, "rows": rows,
            "seconds": round(time.perf_counter() - t0, 1),
            "machine": f"{os.cpu_count()} CPUs, torch {torch.__version__}, threads {torch.get_num_threads()}"}
    (results_dir / "adtn_fit_drop.json").write_text(json.dumps(data, indent=2) + "\n")
    fmt = lambda v: "-" if v is None else f"{v:.1f}"  # noqa: E731
    lines = ["# ADTN / ADQC: stage-1 fits no closer than zero weights dropped vs kept (Fashion-MNIST)", "",
             f"Command: `{COMMAND}`", "",
             f"Overrides: `{' '.join(FASHION)}` plus `method.fit_steps=200 seed=<seed>`; {data['machine']}; "
             f"{data['seconds']:.0f} s in all. Distances: each group's fitted relative distance; "
             "`x` marks a dropped fit (that group starts stage 2 unfitted).", "",
             "| method | model | seed | fits | acc pretrain | acc compressed | acc retrained | fit distances |",
             "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['method']} | {r['model']} | {r['seed']} | {r['fits']} | {fmt(r['acc_pretrain'])} | "
              f"{fmt(r['acc_compressed'])} | {fmt(r['acc_retrained'])} | "
              f"{' '.join(f'{d:.2f}' + ('' if k else 'x') for d, k in zip(r['distances'], r['kept']))} |"
              for r in rows]
    (results_dir / "adtn_fit_drop.md").write_text("\n".join(lines) + "\n")
    assert all(r["status"] == "ok" and r["cache_hit"] for r in rows)
    dropped = [r for r in rows if r["fits"].startswith("dropped")]
    assert all(r["acc_retrained"] > 15 for r in dropped), [(r["method"], r["model"], r["seed"]) for r in dropped]
