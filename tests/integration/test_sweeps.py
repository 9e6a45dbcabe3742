"""Sweeps and launchers: every Hydra sweep file composes and each of its jobs passes the input
checks; each W&B sweep file drives the same entry point over the same grid; the launcher
presets compose; a sweep file starts a multirun without `-m`."""
from __future__ import annotations

import shutil

import pytest
import yaml

from tests.conftest import CONF, PACKAGE, REPO, compose, records, run_cli
from tnbench.pipeline.configstore import register_configs
from tnbench.pipeline.jobs import preflight

register_configs()

SWEEPS = sorted(p.stem for p in (PACKAGE / "conf" / "sweep").glob("*.yaml"))
WANDB_SWEEPS = sorted(p.stem for p in (REPO / "sweeps").glob("*.yaml"))


def hydra_grid(name: str) -> dict[str, list[str]]:
    """The values each key of a Hydra sweep file takes, as strings."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    params = compose([f"+sweep={name}"], hydra=True).hydra.sweeper.params or {}
    parsed = OverridesParser.create().parse_overrides([f"{k}={v}" for k, v in params.items()])
    return {o.key_or_group: [str(v) for v in o.sweep_string_iterator()] if o.is_sweep_override()
            else [o.value()] for o in parsed}


def test_every_sweep_has_a_hydra_and_a_wandb_form():
    assert SWEEPS == WANDB_SWEEPS
    assert {"dlrt_lenet5", "truncation_norm_loss", "adtn_vgg16", "compare_lenet5_fmnist"} <= set(SWEEPS)


@pytest.mark.parametrize("name", SWEEPS)
def test_hydra_sweep_composes_and_every_job_passes_the_checks(name):
    cfg = compose([f"+sweep={name}"], hydra=True)
    assert str(cfg.hydra.mode).endswith("MULTIRUN")
    assert cfg.experiment_name and cfg.hydra.sweeper.params
    assert preflight([f"+sweep={name}"], CONF) is None  # every combination of its grid


@pytest.mark.parametrize("name", WANDB_SWEEPS)
def test_wandb_sweep_runs_the_entry_point_over_the_hydra_grid(name):
    spec = yaml.safe_load((REPO / "sweeps" / f"{name}.yaml").read_text())
    cmd = spec["command"]
    assert cmd[:4] == ["${env}", "${interpreter}", "-m", "tnbench"] and cmd[-1] == "${args_no_hyphens}"
    assert f"+sweep={name}" in cmd and "hydra.mode=RUN" in cmd and "logger.mode=online" in cmd
    assert spec["method"] == "grid" and spec["metric"] == {"name": "acc_retrained", "goal": "maximize"}
    wandb_grid = {k: [str(v) for v in p["values"]] for k, p in spec["parameters"].items()}
    assert wandb_grid == hydra_grid(name)
    first = [f"{k}={v[0]}" for k, v in wandb_grid.items()]
    fixed = [a for a in cmd[4:-1]]
    assert preflight([*fixed, *first], CONF) is None  # what the agent's first call runs


def test_comparison_sweep_names_only_methods_that_exist():
    methods = hydra_grid("compare_lenet5_fmnist")["method"]
    assert methods[:2] == ["none", "svd"]
    assert all((PACKAGE / "conf" / "method" / f"{m}.yaml").is_file() for m in methods)


def test_preflight_checks_the_values_a_sweep_file_sets(tmp_path):
    conf = tmp_path / "conf"
    shutil.copytree(CONF, conf)
    (conf / "sweep" / "bad.yaml").write_text(
        "# @package _global_\ndefaults:\n  - override /method: dlrt\n"
        "hydra:\n  mode: MULTIRUN\n  sweeper:\n    params:\n      method.tau: 0.1,0\n")
    assert preflight(["+sweep=bad"], str(conf)) == "method.tau must be in (0, 1), got 0.0"
    assert preflight(["+sweep=bad", "method.tau=0.2,0.3"], str(conf)) is None  # the command line wins
    assert preflight(["+sweep=bad", "hydra.mode=RUN"], str(conf)) is None  # one job: the sweep is not run


def test_launcher_presets():
    joblib = compose(["hydra/launcher=joblib"], hydra=True).hydra.launcher
    assert joblib._target_.endswith("JoblibLauncher") and joblib.n_jobs == 2
    assert compose(["hydra/launcher=joblib", "hydra.launcher.n_jobs=4"], hydra=True).hydra.launcher.n_jobs == 4
    cfg = compose(["+launcher=slurm", "hydra.launcher.partition=gpu"], hydra=True)
    slurm = cfg.hydra.launcher
    assert slurm._target_.endswith("SlurmLauncher") and slurm.partition == "gpu"
    assert (slurm.timeout_min, slurm.gpus_per_node, slurm.tasks_per_node, slurm.cpus_per_task, slurm.mem_gb) == \
        (240, 1, 1, 8, 32)
    assert cfg.trainer.accelerator == "gpu"
    cpu = compose(["+launcher=slurm_cpu", "+sweep=compare_lenet5_fmnist"], hydra=True)
    assert cpu.hydra.launcher.gpus_per_node == 0 and cpu.trainer.accelerator == "cpu"
    assert cpu.hydra.sweeper.params.method.startswith("none,svd")


@pytest.mark.slow
def test_a_sweep_file_starts_a_multirun_without_dash_m(tmp_path):
    r = run_cli(["+sweep=dlrt_lenet5", "--cfg", "job"], tmp_path)
    assert r.returncode == 0 and "name: lenet5_dlrt" in r.stdout and "experiment_name: dlrt_lenet5" in r.stdout
    r = run_cli(["+sweep=dlrt_lenet5", "method.tau=0.2,0.4", "dataset=synthetic", "trainer.progress=false",
                 "dataset.train_size=256", "dataset.test_size=128", "pipeline.retrain_epochs=1", "logger=none"], tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    recs = records(tmp_path / "results" / "runs")
    assert sorted(x["config"]["method"]["tau"] for x in recs) == [0.2, 0.4]
    assert all(x["status"] == "ok" and x["experiment"] == "dlrt_lenet5" and x["model"] == "lenet5_dlrt" for x in recs)
    assert all(x["config"]["method"]["layers"] == ["features.0", "features.3", "classifier.0"] for x in recs)
    assert all(x["config"]["pipeline"]["retrain_optimizer"]["lr"] == 0.05 for x in recs)
    assert all(x["rank_history"] for x in recs)
