"""The command as Hydra reads it (tnbench.pipeline.command): the cached per-group composition of
`Jobs` gives each job exactly the config and run directory Hydra's own loader gives it."""
from __future__ import annotations

import copy

import pytest
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf, open_dict

from tnbench.__main__ import main
from tnbench.pipeline.command import Command, run_dir_of
from tnbench.pipeline.configstore import register_configs

register_configs()


@pytest.fixture
def fresh_hydra():
    """Command initializes Hydra's global state as @hydra.main does: leave it clear for the next test."""
    GlobalHydra.instance().clear()
    yield
    GlobalHydra.instance().clear()


def test_jobs_compose_each_job_as_hydras_loader_does(fresh_hydra):
    argv = ["-m", "method=none,svd,tucker", "model=lenet5,cnn4", "dataset=synthetic", "seed=0,3",
            "pipeline.retrain_epochs=1,2", "trainer.gradient_clip_val=0.5"]
    command = Command(argv, main, "conf", "config")  # as `python -m tnbench` reads it
    jobs = command.jobs()
    assert len(jobs) == 3 * 2 * 2 * 2
    bases = set()
    for num, job in enumerate(jobs):
        # the long way: Hydra's sweep composition of this job from the master config
        full = command.hydra.config_loader.load_sweep_config(jobs.master, list(job.overrides))
        with open_dict(full):
            full.hydra.job.num = full.hydra.job.id = num
        expected_dir = run_dir_of(full, multirun=True)
        expected = copy.deepcopy(full)
        with open_dict(expected):
            del expected["hydra"]
        assert OmegaConf.to_container(job.cfg, resolve=True) == OmegaConf.to_container(expected, resolve=True), \
            job.overrides
        assert job.run_dir == expected_dir
        bases.add((job.cfg.method.name, job.cfg.model.name))
    assert len(bases) == 6 and len(jobs._bases) == 6  # composed once per distinct group choice
