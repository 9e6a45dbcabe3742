"""Benchmark: every registered method with its own defaults x every small model, on Fashion-MNIST.

The matrix of tests/methods/test_method_matrix.py on real data: a 4,096-image training subset and
a 1,000-image test subset (seeded), one pretraining epoch (Adam, lr 0.003: the dense model only
has to be a trained starting point; each model is pretrained once, through the pretrain cache)
and one retraining epoch with the method's own defaults (ADTN/ADQC: circuit fit capped at 200
steps, as their FC-2 experiment). A pair the up-front check refuses is listed as refused. Figures
to results/bench/method_matrix.{json,md}; a pair that diverges or ends at chance fails the test.

    .venv/bin/python -m pytest -m bench tests/bench/test_method_matrix.py -o addopts=""
"""
from __future__ import annotations

import json
import os
import time

import pytest
import torch

from tests.conftest import REPO
from tests.methods.test_method_matrix import CAPPED, CHANCE, METHOD_NAMES, MODELS, SMALL, run_matrix_entry

pytestmark = [pytest.mark.bench, pytest.mark.timeout(3600)]

COMMAND = '.venv/bin/python -m pytest -m bench tests/bench/test_method_matrix.py -o addopts=""'
FASHION = [o for o in SMALL if not o.startswith(("dataset=", "dataset.train_size", "dataset.test_size",
                                                 "dataset.batch_size"))]
FASHION += ["dataset=fashion_mnist", f"paths.data_dir={REPO / 'data'}", "dataset.train_subset=4096",
            "dataset.test_subset=1000"]


def test_method_matrix_on_fashion_mnist(tmp_path, results_dir):
    rows, t0 = [], time.perf_counter()
    for method in METHOD_NAMES:
        for model in MODELS:
            t = time.perf_counter()
            rec = run_matrix_entry(tmp_path, method, model, [*FASHION, *CAPPED.get(method, [])])
            row = {"method": method, "model": model, "seconds": round(time.perf_counter() - t, 1)}
            if rec is None:
                row["status"] = "refused up front"
            else:
                row.update({k: rec.get(k) for k in ("status", "acc_pretrain", "acc_compressed", "acc_retrained",
                                                    "compression_ratio", "error")})
            rows.append(row)
    data = {"command": COMMAND, "overrides": FASHION, "capped": CAPPED, "rows": rows,
            "seconds": round(time.perf_counter() - t0, 1),
            "machine": f"{os.cpu_count()} CPUs, torch {torch.__version__}, threads {torch.get_num_threads()}"}
    (results_dir / "method_matrix.json").write_text(json.dumps(data, indent=2) + "\n")
    fmt = lambda v: "-" if v is None else f"{v:.1f}"  # noqa: E731
    lines = ["# Method x model matrix on Fashion-MNIST (defaults)", "", f"Command: `{COMMAND}`", "",
             f"Overrides: `{' '.join(FASHION)}`; {data['machine']}; {data['seconds']:.0f} s in all.", "",
             "| method | model | status | acc pretrain | acc compressed | acc retrained | ratio | s |",
             "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['method']} | {r['model']} | {r['status']} | {fmt(r.get('acc_pretrain'))} | "
              f"{fmt(r.get('acc_compressed'))} | {fmt(r.get('acc_retrained'))} | {fmt(r.get('compression_ratio'))} | "
              f"{r['seconds']} |" for r in rows]
    (results_dir / "method_matrix.md").write_text("\n".join(lines) + "\n")
    bad = [r for r in rows if r["status"] not in ("ok", "refused up front")
           or (r["status"] == "ok" and r["acc_retrained"] <= CHANCE + 5)]
    assert not bad, bad
