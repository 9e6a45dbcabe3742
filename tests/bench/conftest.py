"""Shared set-up for the benchmarks in tests/bench (run with `make bench`, never in `make test`)."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from omegaconf import DictConfig

REPO = Path(__file__).resolve().parents[2]


def _compose(overrides: list[str]) -> DictConfig:
    """The real tnbench config, composed the way the CLI composes it (schema + conf/ + overrides)."""
    from hydra import compose, initialize_config_dir

    from tnbench.config import validate
    from tnbench.pipeline.configstore import register_configs

    register_configs()
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=overrides)
    validate(cfg)
    return cfg


@pytest.fixture(scope="session")
def compose_config() -> Callable[[list[str]], DictConfig]:
    return _compose


@pytest.fixture(scope="session")
def results_dir() -> Path:
    out = REPO / "results" / "bench"
    out.mkdir(parents=True, exist_ok=True)
    return out
