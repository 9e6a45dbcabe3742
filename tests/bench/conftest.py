"""Shared set-up for the benchmarks in tests/bench (run with `make bench`, never in `make test`)."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from omegaconf import DictConfig

from tests.conftest import REPO, compose


def _compose(overrides: list[str]) -> DictConfig:
    """The real tnbench config, composed the way the CLI composes it (schema + conf/ + overrides)."""
    from tnbench.config import validate

    cfg = compose(overrides)
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
