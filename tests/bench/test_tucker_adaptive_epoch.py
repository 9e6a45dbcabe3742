"""Benchmark: one rank-adaptive Tucker (TDLRT) training epoch against fixed-rank Tucker at the same
final ranks and against the dense model.

The DLRT LeNet-5 variant (`model=lenet5_dlrt`, 430,500 weights) on Fashion-MNIST, batch 128, on
this machine's CPU, through the objects `tnbench.pipeline.fit` uses (`Classifier`,
`InMemoryDataModule`, `make_trainer`, the method's own callbacks), validation off:

  dense            the dense model; its first (untimed) epoch is the pretraining every variant
                   starts from;
  tucker_adaptive  `method=tucker_adaptive` (defaults, tau 0.1) from the HOSVD of those weights,
                   with its integrator callback (augment / core step / truncate every
                   `adapt_every` steps); an untimed first epoch settles its ranks;
  tucker           `TuckerConv2d` / `TuckerLinear` from the same dense weights at exactly the
                   per-layer ranks the adaptive model ended the settling epoch with, trained by
                   plain back-propagation (what `method=tucker` trains). The adaptive model
                   keeps adapting in the timed epochs, so its ranks can drift a little below.

The timed epochs are interleaved (the order rotates each round) so that other load on the
machine hits all three alike; the ratios are of medians. FLOPs are forward FLOPs per image from
`torch.utils.flop_counter`. Speed is reported, never asserted: the test checks that every
variant trained and that the fixed-rank model has the adaptive model's ranks.

    make bench
    .venv/bin/python -m pytest -q -m bench tests/bench/test_tucker_adaptive_epoch.py -o addopts=""

Writes results/bench/tucker_adaptive_epoch.{json,md}. `TNBENCH_BENCH_ROUNDS` (default 3) sets
the timed epochs per variant.
"""
from __future__ import annotations

import copy
import datetime as _dt
import gc
import json
import os
import platform
import statistics
import time

import pytest
import torch
from torch import nn

from tests.conftest import REPO

pytestmark = [pytest.mark.bench, pytest.mark.timeout(3600)]

ROUNDS = int(os.environ.get("TNBENCH_BENCH_ROUNDS", "3"))
COMMAND = '.venv/bin/python -m pytest -q -m bench tests/bench/test_tucker_adaptive_epoch.py -o addopts=""'
OVERRIDES = [
    "dataset=fashion_mnist", "model=lenet5_dlrt", "method=tucker_adaptive", "trainer=cpu", "logger=none",
    f"paths.data_dir={REPO / 'data'}", "dataset.batch_size=128", "trainer.limit_val_batches=0",
    "trainer.progress=false",
]


def test_tucker_adaptive_epoch_vs_fixed_rank_vs_dense(compose_config, results_dir, tmp_path):
    import lightning as L

    from tnbench.data.module import InMemoryDataModule
    from tnbench.layers.tucker import CONV_MODES, LINEAR_MODES, TuckerConv2d, TuckerLinear
    from tnbench.methods import build_method
    from tnbench.methods.base import replace_module
    from tnbench.models import build_model
    from tnbench.pipeline.classifier import Classifier
    from tnbench.pipeline.metrics import count_flops, count_params
    from tnbench.pipeline.stages import load_dataset
    from tnbench.pipeline.trainer import make_trainer

    cfg = compose_config(OVERRIDES)
    data = load_dataset(cfg)
    shape = (data.in_channels, data.image_size, data.image_size)
    L.seed_everything(0, verbose=False)
    dm = InMemoryDataModule(data, batch_size=cfg.dataset.batch_size, eval_batch_size=cfg.dataset.eval_batch_size,
                            seed=0, channels_last=cfg.trainer.channels_last)
    dense_model = build_model("lenet5_dlrt", in_channels=data.in_channels, image_size=data.image_size,
                              num_classes=data.num_classes)
    optim = cfg.pipeline.retrain_optimizer

    def epoch(model: nn.Module, callbacks: list, tag: str) -> float:
        module = Classifier(model, data.num_classes, channels_last=cfg.trainer.channels_last).for_stage(
            "retrain", optim, 1)
        trainer = make_trainer(cfg, epochs=1, logger=None, run_dir=tmp_path / tag, callbacks=callbacks)
        gc.collect()
        t0 = time.perf_counter()
        trainer.fit(module, datamodule=dm)
        return time.perf_counter() - t0

    epoch(dense_model, [], "pretrain")  # the shared starting point (untimed)
    pretrained = copy.deepcopy(dense_model.state_dict())

    method = build_method(cfg.method)
    adaptive = copy.deepcopy(dense_model)
    method.compress(adaptive)
    ranks_start = {name: list(layer.ranks()) for name, layer in adaptive.named_modules()
                   if isinstance(layer, (TuckerConv2d, TuckerLinear))}
    callbacks = method.callbacks()
    epoch(adaptive, callbacks, "settle")  # ranks settle during the first epoch (untimed)
    final = {name: layer for name, layer in adaptive.named_modules() if isinstance(layer, (TuckerConv2d, TuckerLinear))}
    ranks_final = {name: list(layer.ranks()) for name, layer in final.items()}

    fixed = copy.deepcopy(dense_model)
    fixed.load_state_dict(pretrained)
    for name, layer in final.items():
        dense_layer = fixed.get_submodule(name)
        names = CONV_MODES if isinstance(dense_layer, nn.Conv2d) else LINEAR_MODES
        spec = {m: r for m, r in zip(layer.modes, layer.ranks())}
        assert all(m in names for m in spec)
        cls = TuckerConv2d if isinstance(dense_layer, nn.Conv2d) else TuckerLinear
        replace_module(fixed, name, cls.from_dense(dense_layer, spec, tuple(spec))[0])
    assert {n: list(m.ranks()) for n, m in fixed.named_modules()
            if isinstance(m, (TuckerConv2d, TuckerLinear))} == ranks_final

    variants = {"dense": (dense_model, lambda: []), "tucker_adaptive": (adaptive, lambda: callbacks),
                "tucker": (fixed, lambda: [])}
    before = {k: [p.detach().clone() for p in m.parameters()] for k, (m, _) in variants.items()}
    times: dict[str, list[float]] = {k: [] for k in variants}
    order = list(variants)
    for r in range(ROUNDS):
        for k in order[r % 3:] + order[: r % 3]:
            model, cbs = variants[k]
            times[k].append(epoch(model, cbs(), f"{k}{r}"))
    for k, (model, _) in variants.items():  # every variant really trained
        after = list(model.parameters())
        assert len(after) != len(before[k]) or any(not torch.equal(b, a.detach()) for b, a in zip(before[k], after))

    ranks_after = {n: list(m.ranks()) for n, m in adaptive.named_modules() if isinstance(m, (TuckerConv2d, TuckerLinear))}
    med = {k: statistics.median(v) for k, v in times.items()}
    rows = {}
    for k, (model, _) in variants.items():
        rows[k] = {"epoch_s": times[k], "median_s": med[k], "vs_dense": med[k] / med["dense"],
                   "params": count_params(model), "flops_per_image": count_flops(model, shape)["total"]}
    rows["tucker_adaptive"]["vs_fixed_rank"] = med["tucker_adaptive"] / med["tucker"]
    out = {
        "benchmark": "tucker_adaptive_epoch", "command": COMMAND, "make": "make bench",
        "date": _dt.datetime.now().isoformat(timespec="seconds"), "host": platform.node(),
        "cpu_threads": torch.get_num_threads(), "torch": torch.__version__, "rounds": ROUNDS,
        "setting": "lenet5_dlrt, Fashion-MNIST 60k train, batch 128, Adam lr 3e-3 (retrain optimizer), CPU, "
                   "validation off; tucker_adaptive defaults (tau 0.1, adapt_every 10, modes out+in)",
        "ranks_start": ranks_start, "ranks_final": ranks_final, "ranks_adaptive_after_timing": ranks_after,
        "variants": rows,
    }
    (results_dir / "tucker_adaptive_epoch.json").write_text(json.dumps(out, indent=2))
    lines = [
        "# One training epoch: rank-adaptive Tucker vs fixed-rank Tucker (same final ranks) vs dense",
        "", f"`{COMMAND}` (or `make bench`), {out['date']}, {out['cpu_threads']} CPU threads, torch {torch.__version__}.",
        "", out["setting"] + ".", "",
        f"Ranks at the start (HOSVD, rank_init clamped): {ranks_start}", "",
        f"Ranks after the settling epoch (the fixed-rank model uses these): {ranks_final}", "",
        f"Ranks of the adaptive model after the timed epochs (it keeps adapting; its params below are "
        f"counted here): {ranks_after}", "",
        f"| variant | epoch s (median of {ROUNDS}) | vs dense | params | forward MFLOPs/image |",
        "|---|---:|---:|---:|---:|",
    ]
    for k, row in rows.items():
        lines.append(f"| {k} | {row['median_s']:.1f} | {row['vs_dense']:.2f}x | {row['params']:,} | "
                     f"{row['flops_per_image'] / 1e6:.2f} |")
    lines += ["", f"tucker_adaptive / tucker (the integrator's overhead at equal ranks): "
                  f"{rows['tucker_adaptive']['vs_fixed_rank']:.2f}x", ""]
    (results_dir / "tucker_adaptive_epoch.md").write_text("\n".join(lines))
    print("\n".join(lines))
