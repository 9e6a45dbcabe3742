"""What Hydra needs before it composes: the root schema, our resolvers, launcher defaults.

Light on purpose (no torch, no methods): `--help` and `--cfg job` go through here.
"""
from __future__ import annotations

from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf

from tnbench.config import Config, DatasetConfig, MethodConfig, ModelConfig
from tnbench.pipeline.identity import register_resolvers


def entry_defaults() -> dict:
    """The options every dataset, model and method has, with their defaults, as plain (open)
    sections: merged under each group's YAML, so `dataset.train_subset=...` works for every
    dataset while a dataset's own options come from its YAML. Each entry's schema checks the
    result (tnbench.pipeline.checks)."""
    return {group: OmegaConf.to_container(OmegaConf.structured(schema))
            for group, schema in (("dataset", DatasetConfig), ("model", ModelConfig), ("method", MethodConfig))}


def register_configs() -> None:
    """Put the root schema and the shared entry options into Hydra's ConfigStore (conf/config.yaml
    names both in `defaults`)."""
    register_resolvers()
    cs = ConfigStore.instance()
    cs.store(name="config_schema", node=Config)
    cs.store(name="entry_defaults", node=entry_defaults())
    register_launcher_defaults(cs)


def register_launcher_defaults(cs: ConfigStore) -> None:
    """`hydra/launcher=joblib` runs 2 jobs at a time: the plugin's own default (n_jobs=-1) starts
    one job per core, each with a multi-threaded torch. The plugin's entry is replaced in the
    ConfigStore after Hydra's one-time plugin scan (which re-runs each plugin's own `store`); a
    YAML of the same name in conf/ would trigger Hydra's deprecated automatic schema matching."""
    from hydra.core.plugins import Plugins

    try:
        from hydra_plugins.hydra_joblib_launcher.config import JobLibLauncherConf
    except ImportError:  # the plugin is optional
        return
    Plugins.instance()  # the scan, now rather than later
    cs.store(group="hydra/launcher", name="joblib", node=JobLibLauncherConf(n_jobs=2), provider="tnbench")
