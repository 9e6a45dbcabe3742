"""Shared helpers for every test folder: the repository's paths, the real config composed as the
CLI composes it, the real entry point in a subprocess or the real pipeline in process, and the
few small pieces many tests repeat. Folder conftest.py files hold only that folder's fixtures."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tnbench.errors import ConfigError

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "tnbench"
CONF = str(PACKAGE / "conf")

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")

# Small, fast, deterministic jobs: synthetic data, no progress bars.
QUICK = ["dataset=synthetic", "trainer.progress=false", "pipeline.pretrain_epochs=1",
         "pipeline.retrain_epochs=1", "dataset.train_size=1024", "dataset.test_size=256"]

# The layers of LeNet-5's DLRT variant (model=lenet5_dlrt) that DLRT / TDLRT compress: all but the last.
LENET_LAYERS = ["features.0", "features.3", "classifier.0"]

# (stride, padding, dilation, kernel size) the factorized conv layers are checked on
CONV_GEOMETRIES = [
    (1, 0, 1, (3, 3)),
    (2, 1, 1, (3, 5)),
    ((1, 2), (2, 1), (2, 1), (5, 3)),
]


def compose(overrides: list[str], hydra: bool = False):
    """The real config, composed from tnbench/conf the way the CLI composes it (schema, resolvers,
    launcher defaults); with `hydra`, the `hydra` section too (sweeps, launchers)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from tnbench.pipeline.configstore import register_configs

    register_configs()
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        return hydra_compose(config_name="config", overrides=overrides, return_hydra_config=hydra)


def method_cfg(name: str, **kw: Any):
    """A method's config section: its own schema's defaults with `kw` on top (no YAML)."""
    from omegaconf import OmegaConf

    from tnbench.methods import METHODS

    return OmegaConf.merge(OmegaConf.structured(METHODS.get(name).config_class), kw)


def run_cli(args: list[str], cwd: Path, module: str = "tnbench", timeout: int = 600,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """`python -m <module> <args>` in `cwd`, W&B offline, output captured."""
    Path(cwd).mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "WANDB_MODE": "offline", "WANDB_SILENT": "true", **(env or {})}
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


def read_record(run_dir: Path) -> dict[str, Any]:
    return json.loads((Path(run_dir) / "record.json").read_text())


def records(root: Path) -> list[dict[str, Any]]:
    """Every run record below `root`, in path order."""
    return [json.loads(p.read_text()) for p in sorted(Path(root).rglob("record.json"))]


def run_in_process(results: Path, *overrides: str, name: str = "run", quick: bool = True) -> dict[str, Any]:
    """The real pipeline in this process (QUICK settings unless `quick=False`), results under
    `results`, the run in `results/<name>`; returns its record."""
    from tnbench.pipeline.stages import run_pipeline

    cfg = compose([*(QUICK if quick else []), f"paths.results_dir={results}", *overrides])
    run_pipeline(cfg, Path(results) / name)
    return read_record(Path(results) / name)


@contextmanager
def raises_one_line(match: str, exc: type[BaseException] = ConfigError) -> Iterator[Any]:
    """`exc` whose message matches `match` and is one line (what the CLI shows as is)."""
    with pytest.raises(exc, match=match) as info:
        yield info
    assert "\n" not in str(info.value)


def random_conv(stride, padding, dilation, kernel, cin=4, cout=6, bias=True):
    """A seeded float64 Conv2d of the given geometry."""
    import torch
    from torch import nn

    torch.manual_seed(0)
    return nn.Conv2d(cin, cout, kernel, stride=stride, padding=padding, dilation=dilation, bias=bias).double()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Benchmarks run only when asked for (`-m bench`): pyproject's addopts deselects them with
    `-m 'not bench'`, but a `-m` on the command line (`-m "not slow"`) replaces that one."""
    if "bench" in (config.getoption("markexpr") or ""):
        return
    benches = [item for item in items if item.get_closest_marker("bench")]
    if benches:
        config.hook.pytest_deselected(items=benches)
        items[:] = [item for item in items if not item.get_closest_marker("bench")]


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Thousands of tiny contractions: extra intra-op threads only add overhead (and on a busy
    machine spin against other jobs, 100x slower)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def data_dir() -> str:
    """The repo's data dir (Fashion-MNIST is unpacked there from Debian's package)."""
    return str(REPO / "data")


@pytest.fixture
def decompositions(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Calls of torch's SVD and eigen-solvers (svd, svdvals, eigh, eigvalsh) from here on, by name:
    the real functions, counted."""
    import torch

    calls: dict[str, int] = {}
    for name in ("svd", "svdvals", "eigh", "eigvalsh"):
        real = getattr(torch.linalg, name)

        def counted(*args: Any, _real: Any = real, _name: str = name, **kwargs: Any) -> Any:
            calls[_name] = calls.get(_name, 0) + 1
            return _real(*args, **kwargs)

        monkeypatch.setattr(torch.linalg, name, counted)
    return calls
