"""A run's identity: the hashes that name its directory and its dense model in the cache.

The rule: a key is a hash of the **whole** config, each section typed by its entry's schema,
minus settings that cannot change a number the run reports. Those are listed here, each with
the reason, and nowhere else (the README's "Run identity" repeats them; a test walks every
leaf of the config and fails on one that changes no key without being listed):

- `NOT_RESULTS`: left out of both keys (where files go, displays, speed knobs, `rerun`);
- `NOT_PRETRAIN`: left out of the pretrain-cache key as well (what only acts after the dense
  model exists: the method, retraining);
- the method's own list (`Method.ignored`): options its section carries but it does not read
  (`method=none` has the shared `rank`) or that only trade speed or memory, and without a
  budget the options only a budget reads (`Method.budget_options`: dlrt's `budget_knob`);
- `ADDED`: options added after the key's version whose default does what every run did before
  them; at that default they are left out, so adding an option keeps every earlier run and
  cache entry its name (at another value they are hashed like any setting). The report reads a
  record written before the option existed as having that default (`with_added_defaults`).

A dataset, model or method from outside tnbench (tnbench.registry) is keyed by the object it
resolves to, not by the route that found it: its section's `_target_` is replaced by that
object's import path (`module.qualname`) whether the section named it by `_target_` or the
entry was found by name through an entry point. Moving a plugin from a folder (`_target_`) to
an installed package (entry point) keeps every run and cache entry its name, and two different
classes under one name never share a key. A built-in entry keeps no `_target_` in the key (nor
does a `_target_` naming the class tnbench itself registers under that name), so built-in keys
are unchanged; a `_target_` naming one of tnbench's classes under another name is keyed by it.

`run_key` is registered as the OmegaConf resolver `tnbench_key`, used by conf/config.yaml's
`run_id`. This module imports no torch at module level; the key needs the method's and the
dataset's schemas, so resolving it loads their registries (as any run does anyway).
"""
from __future__ import annotations

import hashlib
import json
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

KEY_VERSION = 2  # changes every run directory name and cache entry: bump only with the rule

NOT_RESULTS: dict[str, str] = {
    "run_id": "the key itself",
    "paths": "where results, caches and data live",
    "logger": "where metrics are sent (W&B / CSV); the numbers are the same",
    "dataset.data_dir": "where the data files are (the files themselves are checksummed)",
    "dataset.download": "whether missing data may be fetched; the data are the same",
    "trainer.progress": "the progress display",
    "trainer.measure_speed": "whether inference is timed (tnbench.pipeline.speed); timings are measurements "
                             "of this machine, every other number is the same",
    "trainer.num_threads": "torch intra-op threads: speed (and at most the rounding of parallel reductions)",
    "pipeline.rerun": "whether a finished run is done again",
    "pipeline.keep_checkpoints": "whether epoch checkpoints are kept after the run",
    "pipeline.pretrain_cache": "whether the dense model may come from the cache: a cached model is the same model",
}

NOT_PRETRAIN: dict[str, str] = {
    "method": "compression comes after pretraining",
    "pipeline.retrain_epochs": "retraining comes after pretraining",
    "pipeline.retrain_optimizer": "retraining comes after pretraining",
    "pipeline.recovery_tolerance": "read from the retraining curve",
    "pipeline.select": "chooses among the retraining epochs",
    "pipeline.dense_twin": "where a run from scratch finds its dense reference, after training",
    "pipeline.init_checkpoint": "a run that starts from a checkpoint does not use the cache",
    "experiment_name": "a label of the run, not of its dense model",
    "budget": "the budget sets the method's size knob, after pretraining",
}

ADDED: dict[str, tuple[Any, str]] = {
    "pipeline.bn_recalibration": (False, "evaluation with the running BatchNorm averages, as before the option"),
}

HIDDEN = ("hydra",)  # Hydra's own section, present while composing


def _typed_section(group: str, plain: Any) -> Any:
    """A dataset/model/method section (plain data) typed by its entry's schema, as the up-front
    check types it, so that e.g. `method.energy=1` and `method.energy=1.0` are one run. Bad
    input is left as it is: the check reports it."""
    if not isinstance(plain, dict):
        return plain
    try:
        from tnbench.config import ModelConfig, typed

        node = OmegaConf.create(plain)
        if group == "method":
            from tnbench.methods import METHODS

            schema = METHODS.resolve(node).config_class
        elif group == "dataset":
            from tnbench.data import config_class

            schema = config_class(node)
        else:
            schema = ModelConfig
        return OmegaConf.to_container(typed(node, schema, group), resolve=True)
    except Exception:  # unknown entry, wrong type: the check says what is wrong, one line
        return plain


REGISTRIES = {"dataset": ("tnbench.data", "DATASETS"), "model": ("tnbench.models", "MODELS"),
              "method": ("tnbench.methods", "METHODS")}


def entry_path(group: str, section: dict[str, Any]) -> str | None:
    """The import path (`module.qualname`) of the dataset/model/method a section names, if it
    comes from outside tnbench (by `_target_` or an entry point); None for a built-in entry or
    one that cannot be resolved (the check says why)."""
    import importlib

    try:
        module, attr = REGISTRIES[group]
        registry = getattr(importlib.import_module(module), attr)
        obj = registry.resolve(OmegaConf.create(section))
    except Exception:
        return None
    if registry.is_builtin(section.get("name"), obj):
        return None
    where = str(getattr(obj, "__module__", None) or "")
    return f"{where}.{getattr(obj, '__qualname__', type(obj).__qualname__)}"


def _keyed_by_entry(group: str, section: Any) -> Any:
    """`section` with `_target_` replaced by the entry's import path (outside tnbench) or dropped."""
    if not isinstance(section, dict):
        return section
    path = entry_path(group, section)
    section = {k: v for k, v in section.items() if k != "_target_"}
    if path is not None:
        section["_target_"] = path
    return section


def method_ignores(section: dict[str, Any], budgeted: bool = True) -> set[str]:
    """The options of a (typed, plain) method section that its method does not read or that
    cannot change its numbers (`Method.ignored`; without a budget also `Method.budget_options`)."""
    try:
        from tnbench.methods import METHODS

        node = OmegaConf.create(section)
        method = METHODS.resolve(node)
        return set(method.ignored(node)) | (set() if budgeted else set(method.budget_options))
    except Exception:
        return set()


def _drop(tree: dict[str, Any], dotted: str, only_if: Any = ...) -> None:
    """Remove a dotted leaf (only where it equals `only_if`, when given)."""
    *parents, leaf = dotted.split(".")
    for p in parents:
        tree = tree.get(p)
        if not isinstance(tree, dict):
            return
    if leaf in tree and (only_if is ... or tree[leaf] == only_if):
        del tree[leaf]


def with_added_defaults(config: dict[str, Any]) -> dict[str, Any]:
    """A recorded config with every `ADDED` option it predates set to that option's default."""
    out = json.loads(json.dumps(config, default=str))
    for dotted, (default, _) in ADDED.items():
        *parents, leaf = dotted.split(".")
        tree = out
        for p in parents:
            tree = tree.get(p) if isinstance(tree, dict) else None
        if isinstance(tree, dict):
            tree.setdefault(leaf, default)
    return out


def identity(cfg: DictConfig, leave_out: tuple[dict[str, str], ...] = (NOT_RESULTS,)) -> dict[str, Any]:
    """The config as plain data, sections typed, minus the settings in `leave_out` and the
    options the method ignores: what a key hashes."""
    drop = {k for listing in leave_out for k in listing}
    plain: dict[str, Any] = {}
    for key in cfg:
        key = str(key)
        if key in HIDDEN or key in drop:  # never resolved: `run_id` would recurse
            continue
        node = cfg[key]
        plain[key] = OmegaConf.to_container(node, resolve=True) if isinstance(node, (DictConfig, ListConfig)) \
            else node
        if key in ("dataset", "model", "method"):
            plain[key] = _typed_section(key, plain[key])
    if isinstance(plain.get("method"), dict):
        from tnbench.config import budget_kind

        budget = plain.get("budget")
        for option in method_ignores(plain["method"], budget_kind(budget if isinstance(budget, dict) else None)
                                     is not None):
            plain["method"].pop(option, None)
    for group in REGISTRIES:
        if group in plain:
            plain[group] = _keyed_by_entry(group, plain[group])
    for dotted in sorted(drop):
        _drop(plain, dotted)
    for dotted, (default, _) in ADDED.items():
        _drop(plain, dotted, only_if=default)
    return plain


def digest(data: Any, length: int) -> str:
    blob = json.dumps({"version": KEY_VERSION, **data}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:length]


def run_key(cfg: DictConfig) -> str:
    """The run directory's hash: everything that can change a number the run reports."""
    return digest(identity(cfg), 10)


def pretrain_identity(cfg: DictConfig) -> dict[str, Any]:
    return identity(cfg, (NOT_RESULTS, NOT_PRETRAIN))


def pretrain_key(cfg: DictConfig) -> str:
    """The pretrain cache's key: everything that can change the dense model or its curve."""
    return digest(pretrain_identity(cfg), 20)


def _resolve_run_key(*, _root_: DictConfig) -> str:
    return run_key(_root_)


def register_resolvers() -> None:
    if not OmegaConf.has_resolver("tnbench_key"):
        OmegaConf.register_new_resolver("tnbench_key", _resolve_run_key)
