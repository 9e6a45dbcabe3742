"""Methods, models and datasets from outside the package: the README's example (a pruning
method and a small model named by `_target_`) plus a dataset registered through an entry point
of a package installed in a temp folder, run end to end from the CLI and from `tnbench.run`."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from tests.conftest import REPO, run_cli
from tnbench.errors import ConfigError

QUICK = ["pipeline.pretrain_epochs=1", "pipeline.retrain_epochs=1", "logger=none", "trainer.progress=false"]

# A dataset plugin (not in the README): two classes of blobs, options checked by its own schema.
BLOBS = '''
from dataclasses import dataclass

import torch

from tnbench.config import DatasetConfig
from tnbench.data import TensorData


@dataclass
class BlobsConfig(DatasetConfig):
    name: str = "blobs"
    download: bool = False
    size: int = 8
    count: int = 256


def make_blobs(data_dir, download, seed=0, size=8, count=256):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (count,), generator=g)
    x = (y.view(-1, 1, 1, 1) * 0.5 + 0.5 * torch.rand(count, 1, size, size, generator=g)).mul(255).to(torch.uint8)
    half = count // 2
    return TensorData(x[:half], y[:half], x[half:], y[half:], 2, (0.5,), (0.3,), False)


make_blobs.config_class = BlobsConfig
'''

ENTRY_POINT = '''
[project.entry-points."tnbench.datasets"]
blobs = "my_plugins.blobs:make_blobs"
'''


def readme_example() -> dict[str, str]:
    """The README's plugin files, by path (each code block starts with a `# my_tnbench/...` line)."""
    text = (REPO / "README.md").read_text()
    files = dict(re.findall(r"```(?:python|yaml|toml)\n# (my_tnbench/[^\n]+)\n(.*?)```", text, re.S))
    assert {"my_tnbench/my_plugins/prune.py", "my_tnbench/my_plugins/tiny.py", "my_tnbench/conf/method/prune.yaml",
            "my_tnbench/conf/model/mymodel.yaml", "my_tnbench/pyproject.toml"} <= set(files)
    return files


@pytest.fixture
def plugin(tmp_path) -> Path:
    """The README's folder plus the dataset, installed (not editable) into `site` with pip."""
    for name, text in readme_example().items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    folder = tmp_path / "my_tnbench"
    (folder / "my_plugins" / "__init__.py").write_text("")
    (folder / "my_plugins" / "blobs.py").write_text(BLOBS)
    (folder / "conf" / "dataset").mkdir()
    (folder / "conf" / "dataset" / "blobs.yaml").write_text("name: blobs\ndownload: false\nsize: 8\n")
    with open(folder / "pyproject.toml", "a") as f:
        f.write(ENTRY_POINT)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--no-index",
                    "--target", str(tmp_path / "site"), str(folder)], check=True, capture_output=True)
    return tmp_path


def check_record(rec: dict) -> None:
    assert rec["status"] == "ok", rec.get("error")
    assert (rec["method"], rec["model"], rec["dataset"]) == ("prune", "mymodel", "blobs")
    assert rec["config"]["method"]["amount"] == 0.75 and rec["num_train"] == 128
    (layer,) = rec["layers"]  # the middle Linear: all_but_first_last
    assert layer["name"] == "3" and layer["weight_params_compressed"] == layer["weight_params_dense"] // 4


@pytest.mark.slow
def test_plugin_runs_from_the_cli_and_from_python(plugin, tmp_path):
    site, conf = plugin / "site", plugin / "my_tnbench" / "conf"
    env = {"PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", str(REPO))])}
    args = [f"hydra.searchpath=[file://{conf}]", "method=prune", "model=mymodel", "dataset=blobs",
            "method.amount=0.75", *QUICK]
    # `_target_` (method, model: my_plugins imported from the installed package) and an entry
    # point (dataset, no `_target_`), from a directory that is neither the plugin's nor tnbench's
    r = run_cli(args, tmp_path / "cli", env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    (record,) = (tmp_path / "cli").glob("results/runs/*/record.json")
    check_record(json.loads(record.read_text()))
    bad = run_cli([*args, "method.amount=2"], tmp_path / "cli", env=env)
    assert bad.returncode == 2 and bad.stderr.strip() == "error: method.amount must be in [0, 1), got 2.0"

    script = (f"import json, tnbench\n"
              f"r = tnbench.run(overrides={args[1:]!r}, config_dir={str(conf)!r})\n"
              f"print(json.dumps({{'record': r.record, 'model': type(r.model).__name__, "
              f"'pruned': hasattr(r.model[3], 'weight_mask'), 'run_dir': str(r.run_dir)}}))\n")
    api = subprocess.run([sys.executable, "-c", script], cwd=tmp_path / "cli", capture_output=True, text=True,
                         env={**os.environ, **env, "WANDB_MODE": "offline"}, timeout=600)
    assert api.returncode == 0, api.stderr[-3000:]
    out = json.loads(api.stdout.strip().splitlines()[-1])
    check_record(out["record"])
    assert out["model"] == "Sequential" and out["pruned"]
    assert Path(tmp_path / "cli" / out["run_dir"]) == record.parent  # the CLI's run directory


def test_bad_targets_are_one_line_config_errors():
    from tnbench.methods import METHODS
    from tnbench.models import MODELS

    def resolve(registry, **section):
        with pytest.raises(ConfigError) as info:
            registry.resolve(OmegaConf.create(section))
        assert "\n" not in str(info.value)
        return str(info.value)

    assert resolve(METHODS, _target_="no_such_pkg.Prune", name="prune") == \
        "method._target_='no_such_pkg.Prune' cannot be imported: No module named 'no_such_pkg'"
    assert "is not a tnbench Method subclass" in resolve(METHODS, _target_="collections.OrderedDict", name="x")
    assert "is not a model builder" in resolve(MODELS, _target_="math.pi", name="x")
    assert "method.name='svd' is taken" in resolve(METHODS, _target_="tnbench.methods.none.NoCompression", name="svd")
    assert "method.name must be set" in resolve(METHODS, _target_="tnbench.methods.none.NoCompression")
