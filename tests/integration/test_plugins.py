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


def entry_points_of_readme() -> dict[str, dict[str, str]]:
    """The README's pyproject entry points: {group: {name: "module:attr"}}."""
    import tomllib

    return tomllib.loads(readme_example()["my_tnbench/pyproject.toml"])["project"]["entry-points"]


def without_target(conf: Path, out: Path) -> Path:
    """A copy of the config folder `conf` whose YAML files name no `_target_` (entries found by name)."""
    for path in conf.rglob("*.yaml"):
        target = out / path.relative_to(conf)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text("".join(line for line in path.read_text().splitlines(True) if not line.startswith("_target_")))
    return out


@pytest.fixture
def plugin_here(tmp_path, monkeypatch) -> Path:
    """The README's example in this process, without pip: `site/` holds `my_plugins` and the
    dist-info pip would write for it (its METADATA and entry_points.txt, from the README's
    pyproject), and is put on sys.path; `conf/` names the entries by `_target_`, `conf_ep/` by
    name only. The registries, sys.path and sys.modules are restored afterwards."""
    import importlib
    import shutil

    from tnbench.data import DATASETS
    from tnbench.methods import METHODS
    from tnbench.models import MODELS

    for name, text in readme_example().items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    site = tmp_path / "site"
    shutil.copytree(tmp_path / "my_tnbench" / "my_plugins", site / "my_plugins")
    (site / "my_plugins" / "__init__.py").write_text("")
    info = site / "my_tnbench_plugins-0.1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: my-tnbench-plugins\nVersion: 0.1.0\n")
    (info / "entry_points.txt").write_text("".join(
        f"[{group}]\n" + "".join(f"{k} = {v}\n" for k, v in eps.items()) + "\n"
        for group, eps in entry_points_of_readme().items()))
    without_target(tmp_path / "my_tnbench" / "conf", tmp_path / "conf_ep")
    registries = (METHODS, MODELS, DATASETS)
    for r in registries:
        r.discover()  # the built-in entries, kept when the plugin's are dropped afterwards
    saved = [(dict(r._entries), dict(r._plugins)) for r in registries]
    monkeypatch.syspath_prepend(str(site))
    importlib.invalidate_caches()
    yield tmp_path
    for r, (entries, plugins) in zip(registries, saved):
        r._entries, r._plugins = entries, plugins
    for module in [m for m in sys.modules if m == "my_plugins" or m.startswith("my_plugins.")]:
        del sys.modules[module]


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

    # the method and the model found by name (entry points; YAML files without `_target_`): the
    # same run, found done, and with another amount a new run on the same cached dense model
    by_name = [f"hydra.searchpath=[file://{without_target(conf, plugin / 'conf_ep')}]", *args[1:]]
    again = run_cli(by_name, tmp_path / "cli", env=env)
    assert again.returncode == 0 and f"already done: {record.parent} " in again.stderr, again.stderr[-3000:]
    half = run_cli([*by_name[:-len(QUICK) - 1], "method.amount=0.5", *QUICK], tmp_path / "cli", env=env)
    assert half.returncode == 0, half.stderr[-3000:]
    (rec,) = [r for r in map(json.loads, map(Path.read_text, (tmp_path / "cli").glob("results/runs/*/record.json")))
              if r["config"]["method"]["amount"] == 0.5]
    assert rec["status"] == "ok" and (rec["method"], rec["model"]) == ("prune", "mymodel")
    assert "_target_" not in rec["config"]["method"] and "_target_" not in rec["config"]["model"]
    assert rec["config"]["dataset"]["count"] == 256  # typed: the option blobs.yaml leaves out, at its default
    assert rec["pretrain_cache_hit"] is True  # the `_target_` run's dense model: one pretrain-cache key

    # the README's method on a conv model under the default trainer (channels-last weights)
    lenet = run_cli([*args[:2], "model=lenet5", "dataset=synthetic", "dataset.train_size=256", "dataset.test_size=128",
                     "method.amount=0.75", *QUICK], tmp_path / "cli", env=env)
    assert lenet.returncode == 0, lenet.stderr[-3000:]
    (rec,) = [r for r in map(json.loads, map(Path.read_text, (tmp_path / "cli").glob("results/runs/*/record.json")))
              if r["model"] == "lenet5"]
    assert rec["status"] == "ok" and rec["config"]["trainer"]["channels_last"] is True
    assert [(la["kind"], la["weight_params_compressed"] * 4) for la in rec["layers"]] == \
        [(la["kind"], la["weight_params_dense"]) for la in rec["layers"]] and rec["layers"][0]["kind"] == "conv"

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


PLUGIN_JOB = ["method=prune", "model=mymodel", "dataset=synthetic", "logger=none"]


def test_a_plugin_is_one_run_whichever_route_found_it(plugin_here):
    """`_target_` (a folder) or an entry point (an installed package): the same class gives the
    same run key and pretrain-cache key, keyed by its import path; another class under the same
    name does not share them."""
    from tests.conftest import compose
    from tnbench.methods import METHODS
    from tnbench.models import MODELS
    from tnbench.pipeline.identity import identity, pretrain_key, run_key

    by_name = compose([f"hydra.searchpath=[file://{plugin_here / 'conf_ep'}]", *PLUGIN_JOB])
    keys = run_key(by_name), pretrain_key(by_name)  # loads the entry points
    METHODS._entries.pop("prune", None), MODELS._entries.pop("mymodel", None)  # found again by `_target_`
    by_target = compose([f"hydra.searchpath=[file://{plugin_here / 'my_tnbench' / 'conf'}]", *PLUGIN_JOB])
    assert "_target_" in by_target.method and "_target_" not in by_name.method
    assert (run_key(by_target), pretrain_key(by_target)) == keys
    keyed = identity(by_name)
    assert (keyed["method"]["_target_"], keyed["model"]["_target_"]) == \
        ("my_plugins.prune.MagnitudePruning", "my_plugins.tiny.tiny_mlp")
    assert "_target_" not in identity(compose([]))["method"]  # built-in entries: keys unchanged (pinned elsewhere)
    svd = "tnbench.methods.svd.SVDFactorization"
    assert run_key(compose([f"+method._target_={svd}"])) == run_key(compose([]))  # the name's own class
    # tnbench's classes under another name: keyed by the class, not the name alone
    assert identity(compose([f"+method._target_={svd}", "method.name=mine"]))["method"]["_target_"] == svd
    METHODS._entries.pop("mine", None), METHODS._outside.discard("mine")

    (plugin_here / "site" / "my_plugins" / "other.py").write_text(
        "from my_plugins.prune import MagnitudePruning\nfrom my_plugins.tiny import tiny_mlp\n\n\n"
        "class OtherPruning(MagnitudePruning):\n    pass\n\n\n"
        "def other_mlp(in_channels, image_size, num_classes, hidden=64):\n"
        "    return tiny_mlp(in_channels, image_size, num_classes, hidden)\n")
    conf = f"hydra.searchpath=[file://{plugin_here / 'my_tnbench' / 'conf'}]"
    METHODS._entries.pop("prune")  # as in another process, where `prune` names the other class
    other_method = compose([conf, *PLUGIN_JOB, "method._target_=my_plugins.other.OtherPruning"])
    assert run_key(other_method) != run_key(by_target) and pretrain_key(other_method) == pretrain_key(by_target)
    MODELS._entries.pop("mymodel")  # `mymodel` names another builder
    other_model = compose([conf, *PLUGIN_JOB, "method._target_=my_plugins.other.OtherPruning",
                           "model._target_=my_plugins.other.other_mlp"])
    assert pretrain_key(other_model) != pretrain_key(by_target)


def test_the_report_does_not_show_how_an_entry_was_found():
    from tnbench.reporting.grouping import config_frame, differing
    from tnbench.reporting.schema import method_setting

    config = {"method": {"name": "prune", "amount": 0.5}, "model": {"name": "mymodel", "options": {}}}
    targeted = {"method": {**config["method"], "_target_": "my_plugins.prune.MagnitudePruning"},
                "model": {**config["model"], "_target_": "my_plugins.tiny.tiny_mlp"}}
    records = [{"config": config}, {"config": {**targeted, "method": {**targeted["method"], "amount": 0.8}}}]
    assert differing(config_frame(records)) == ["method.amount"]  # the summary's rows and setting
    assert [method_setting(r) for r in records] == ["amount=0.5", "amount=0.8"]  # each run's setting


def test_the_check_finds_plugin_configs_by_config_dir_and_config_path(plugin_here, tmp_path):
    """The up-front check composes with `--config-dir` and `--config-path` as Hydra does, and
    says what is missing when a name has no YAML or tnbench's groups are not searched."""
    from tnbench.pipeline.configstore import register_configs
    from tnbench.pipeline.jobs import check_command

    register_configs()  # as the command line does first
    conf = plugin_here / "my_tnbench" / "conf"
    job = [*PLUGIN_JOB, f"paths.results_dir={tmp_path / 'results'}"]
    plain = check_command(job).problem
    assert plain.startswith("method='prune' is not known; allowed: adqc, ") and plain.endswith(
        "(method 'prune' is registered by the entry point my_plugins.prune:MagnitudePruning but has no config: "
        "add method/prune.yaml, at least `name: prune`, to a folder given by --config-dir or hydra.searchpath)")
    plan = check_command(["--config-dir", str(conf), *job])
    assert plan.problem is None and "-mymodel-prune-s0-" in plan.jobs[0][1]
    assert check_command(["--config-dir", str(conf), *job, "model.options.hiden=5"]).problem == \
        "model.options.hiden is not an option of model=mymodel; allowed: hidden"

    # --config-path replaces tnbench's config folder: a primary config of one's own that adds it back
    (myexp,) = re.findall(r"```yaml\n# conf/myexp.yaml[^\n]*\n(.*?)```", (REPO / "README.md").read_text(), re.S)
    (conf / "myexp.yaml").write_text(myexp)  # the README's
    for primary in (["--config-path", str(conf), "--config-name", "myexp"], ["-cp", str(conf), "-cn", "myexp"]):
        plan = check_command([*primary, *job])
        assert plan.problem is None and "-mymodel-prune-s0-" in plan.jobs[0][1], plan.problem
    hydra_says = run_cli(["-cp", str(conf), "-cn", "myexp", "--cfg", "job", *job], tmp_path)  # what Hydra runs
    assert hydra_says.returncode == 0 and "retrain_epochs: 5" in hydra_says.stdout and "amount: 0.5" in hydra_says.stdout
    problem = check_command(["-cp", str(conf), "-cn", "myexp", *job, "pipeline.retrain_epochs=-1"]).problem
    assert problem.startswith("pipeline.retrain_epochs must be") and "searchpath" not in problem  # groups are there
    (conf / "config.yaml").write_text((Path(__file__).parents[2] / "tnbench" / "conf" / "config.yaml").read_text())
    problem = check_command(["--config-path", str(conf), *job]).problem
    assert problem.startswith("logger='wandb' is not known") and "\n" not in problem
    assert problem.endswith("add pkg://tnbench.conf to hydra.searchpath in your primary config, or give your folder "
                            "with --config-dir)")
    assert run_cli(["--config-path", str(conf), "--cfg", "job", *job], tmp_path).returncode == 1  # Hydra refuses it too


def test_a_missing_config_dir_is_one_line(tmp_path):
    import tnbench

    with pytest.raises(ConfigError) as info:
        tnbench.compose(["method=prune"], config_dir=tmp_path / "nope")
    assert str(info.value).startswith(f"config_dir='{tmp_path / 'nope'}' is not a directory")
