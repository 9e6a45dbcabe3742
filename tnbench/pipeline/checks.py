"""Everything that can be known wrong about a job before any work is done."""
from __future__ import annotations

from omegaconf import DictConfig, open_dict

from tnbench.config import ModelConfig, typed, validate


def resolve_entries(cfg: DictConfig) -> DictConfig:
    """Type the `dataset`, `model` and `method` sections by their registry entries' own schemas
    (unknown keys and wrong types are ConfigErrors; omitted options take their defaults), in
    place, and return `cfg`."""
    from tnbench.data import config_class
    from tnbench.methods import METHODS
    from tnbench.models import MODELS

    MODELS.resolve(cfg.model)  # an unknown name is a one-line error here
    with open_dict(cfg):
        cfg.dataset = typed(cfg.dataset, config_class(cfg.dataset), "dataset")
        cfg.model = typed(cfg.model, ModelConfig, "model")
        cfg.method = typed(cfg.method, METHODS.resolve(cfg.method).config_class, "method")
    return cfg


def check(cfg: DictConfig) -> DictConfig:
    """Names, types and ranges of every option, and each method's own settings; raises the
    first problem as a ConfigError. Returns the typed config (`resolve_entries`)."""
    from tnbench.methods import build_method

    resolve_entries(cfg)
    validate(cfg)
    build_method(cfg.method)
    return cfg
