"""Shared helpers: compose the real config, run the real entry point."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
CONF = str(REPO / "tnbench" / "conf")

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")

# Small, fast, deterministic jobs: synthetic data, no progress bars.
QUICK = ["dataset=synthetic", "trainer.progress=false", "pipeline.pretrain_epochs=1",
         "pipeline.retrain_epochs=1", "dataset.train_size=1024", "dataset.test_size=256"]


def compose(overrides: list[str]):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from tnbench.pipeline.configstore import register_configs

    register_configs()
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        return hydra_compose(config_name="config", overrides=overrides)


def run_cli(args: list[str], cwd: Path, module: str = "tnbench", timeout: int = 600,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    Path(cwd).mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "WANDB_MODE": "offline", "WANDB_SILENT": "true", **(env or {})}
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture
def data_dir() -> str:
    """The repo's data dir (Fashion-MNIST is unpacked there from Debian's package)."""
    return str(REPO / "data")
