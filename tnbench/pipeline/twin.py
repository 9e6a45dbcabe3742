"""The dense twin of a run trained from scratch, and recovery epochs measured against it.

A run with `pipeline.pretrain_epochs=0` compresses a random model (`acc_pretrain` ~ chance), so
"back within tolerance of the pretrained accuracy" says nothing. Its fair reference is the dense
model trained with the same budget: same dataset, model and seed, `retrain_epochs` epochs with
the retrain optimizer. That is exactly what the pretraining of a run with
`pipeline.pretrain_epochs=<retrain_epochs>` and that optimizer produces, so the twin lives in the
pretrain cache under that spec: any run that pretrained it (or an earlier twin) supplies it.
`pipeline.dense_twin`: `cache` (default: use it when it is there), `train` (train it into the
cache when missing: one dense training per budget, shared by every method), `off`.
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from tnbench.pipeline.cache import PretrainCache, save_checkpoint
from tnbench.pipeline.identity import pretrain_identity, pretrain_key
from tnbench.pipeline.metrics import recovery_epochs


def twin_config(cfg: DictConfig) -> DictConfig:
    """The config whose pretraining is this run's dense twin: `retrain_epochs` epochs with the
    retrain optimizer (its pretrain-cache key names the twin)."""
    twin = copy.deepcopy(cfg)
    twin.pipeline.pretrain_epochs = cfg.pipeline.retrain_epochs
    twin.pipeline.pretrain_optimizer = copy.deepcopy(cfg.pipeline.retrain_optimizer)
    return twin


def needs_twin(cfg: DictConfig) -> bool:
    return cfg.pipeline.pretrain_epochs == 0 and cfg.pipeline.retrain_epochs > 0 and cfg.pipeline.dense_twin != "off"


def find_or_train(cfg: DictConfig, train: Any) -> dict[str, Any]:
    """The twin's per-epoch test accuracies from the pretrain cache; when missing and
    `pipeline.dense_twin=train`, `train()` (-> (state_dict, history, curve)) makes it first.
    Returns {"history", "checkpoint"} or {"missing": checkpoint path}."""
    twin = twin_config(cfg)
    cache = PretrainCache(Path(cfg.paths.cache_dir))
    key = pretrain_key(twin)
    path = cache.path(key, f"{cfg.model.name}_{cfg.dataset.name}")
    with cache.lock(path, enabled=cfg.pipeline.pretrain_cache and "ddp" not in str(cfg.trainer.strategy)):
        entry = cache.lookup(path)
        history = ((entry or {}).get("meta") or {}).get("history")
        if not history and cfg.pipeline.dense_twin == "train":
            state, history, curve = train()
            save_checkpoint(path, state, {"identity": pretrain_identity(twin), "key": key, "history": history,
                                          "curve": curve})
    if not history:
        return {"missing": str(path)}
    return {"history": [float(a) for a in history], "checkpoint": str(path)}


def record_recovery(rec: dict[str, Any], cfg: DictConfig, twin: dict[str, Any] | None, accs: list[float]) -> None:
    """`recovery_epochs` and what it is measured against: the pretrained accuracy, or for a run
    from scratch its dense twin's final accuracy (null, with the reason, without one)."""
    tol = cfg.pipeline.recovery_tolerance
    if cfg.pipeline.pretrain_epochs > 0 or cfg.pipeline.init_checkpoint:
        rec["recovery_reference"] = "acc_pretrain"
        rec["recovery_epochs"] = recovery_epochs(rec["acc_pretrain"], rec["acc_compressed"], accs, tol)
        return
    if twin and "history" in twin:
        rec["acc_dense_twin"] = twin["history"][-1]
        rec["dense_twin_checkpoint"] = twin["checkpoint"]
        rec["recovery_reference"] = "dense twin"
        rec["recovery_epochs"] = recovery_epochs(rec["acc_dense_twin"], rec["acc_compressed"], accs, tol)
        return
    rec["recovery_reference"] = None
    rec["recovery_epochs"] = None
    if cfg.pipeline.retrain_epochs == 0:
        rec["recovery_note"] = "trained from scratch for 0 epochs: nothing to recover"
    elif cfg.pipeline.dense_twin == "off":
        rec["recovery_note"] = "trained from scratch and pipeline.dense_twin=off: no dense reference"
    else:
        rec["recovery_note"] = (f"trained from scratch; its dense twin (same data, model, seed and budget) is not in "
                                f"the pretrain cache ({(twin or {}).get('missing')}); pipeline.dense_twin=train "
                                f"trains it")
