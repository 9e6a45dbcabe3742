"""The up-front input check (tnbench.pipeline.jobs.preflight): bad input is one line, before any work."""
from __future__ import annotations

import pytest

from tests.conftest import CONF
from tnbench.pipeline.configstore import register_configs
from tnbench.pipeline.jobs import preflight

register_configs()

BAD_INPUT = [
    (["dataset=imagenet"], "dataset='imagenet' is not known; allowed: cifar10, cifar100, fashion_mnist, mnist, synthetic"),
    (["model=alexnet"], "model='alexnet' is not known; allowed:"),
    (["method=prune"], "method='prune' is not known; allowed:"),
    (["method.rank=0"], "method.rank must be >= 1 or null, got 0"),
    (["method.energy=2"], "method.energy must be in (0, 1]"),
    (["pipeline.pretrain_epochs=-1"], "pipeline.pretrain_epochs must be >= 0, got -1"),
    (["pipeline.retrain_epochs=-3"], "pipeline.retrain_epochs must be >= 0, got -3"),
    (["trainer.num_threads=0"], "trainer.num_threads must be >= 1 or null, got 0"),
    (["method.rank=abc"], "method.rank"),
    (["method.bogus=1"], "bogus"),
    (["pipeline.pretrain_optimizer.name=lbfgs"], "pipeline.pretrain_optimizer.name must be one of sgd, adam, adamw"),
    (["logger=mlflow"], "logger='mlflow' is not known"),
    (["trainer.precision=8"], "trainer.precision must be one of"),
    (["dataset.batch_size=0"], "dataset.batch_size must be >= 1"),
    (["method.layers=[conv9]"], "method.layers names unknown layer(s) conv9"),  # checked against the model up front
    (["-m", "method=none,svd", "method.rank=4,0"], "method.rank must be >= 1 or null, got 0"),  # every sweep value is checked
    # every method's own parameters
    (["method=svd_truncation", "method.cut=diag"], "method.cut must be one of out, in, kh, kw, out_in, out_kh, out_kw; got 'diag'"),
    (["method=svd_truncation", "method.norm_loss=1.5"], "method.norm_loss must be in [0, 1) or null, got 1.5"),
    (["method=cp", "method.rank=0"], "method.rank must be >= 1, got 0"),
    (["method=tucker", "method.ranks=[0,4]"], "method.ranks entries must be integers >= 1 or fractions in (0, 1]"),
    (["method=tucker_adaptive", "method.tau=1.5"], "method.tau must be in (0, 1), got 1.5"),
    (["method=tucker_adaptive", "method.r_min=50", "method.r_max=10"], "method.r_min (50) must be <= method.r_max (10)"),
    (["method=dlrt", "method.tau=0"], "method.tau must be in (0, 1)"),
    (["method=mpo", "method.bond_dim=0"], "method.bond_dim must be >= 1, got 0"),
    (["method=tt", "method.tolerance=[2,1000]"], "method.tolerance a must be in (0, 1], got 2.0"),
    (["method=tt", "method.init=magic"], "method.init must be one of decompose, partial_norm, log_norm, gaussian"),
    (["method=adtn", "method.depth=0"], "method.depth must be >= 1, got 0"),
    # paths, data and types
    (["paths.results_dir=/etc/passwd/x"], "paths.results_dir=/etc/passwd/x is not writable"),
    (["dataset.train_subset=-5"], "dataset.train_subset must be >= 0 or null, got -5"),
    (["dataset=synthetic", "dataset.image_size=abc"], "Value 'abc' of type 'str' could not be converted to Integer"),
]


@pytest.mark.parametrize("overrides,message", BAD_INPUT, ids=[" ".join(o) for o, _ in BAD_INPUT])
def test_preflight_reports_bad_input_in_one_line(overrides, message):
    problem = preflight(overrides, CONF)
    if message is None:
        assert problem is None
        return
    assert problem is not None and message in problem
    assert "\n" not in problem


def test_preflight_accepts_good_input():
    assert preflight(["-m", "method=none,svd", "method.rank=4,8", "dataset=synthetic"], CONF) is None
    assert preflight(["--help"], CONF) is None


@pytest.mark.parametrize("overrides,message", [
    (["method=svd_truncation", "method.cut=diag"], "method.cut must be one of out, in, kh, kw, out_in, out_kh, out_kw"),
    (["method=svd_truncation", "method.norm_loss=1.2"], "method.norm_loss must be in [0, 1) or null, got 1.2"),
    (["method=svd_truncation", "method.rank=0"], "method.rank must be >= 1 or null, got 0"),
    (["method=cp", "method.rank=0"], "method.rank must be >= 1, got 0"),
])
def test_cli_preflight_rejects_bad_truncation_input(overrides, message):
    from tnbench.pipeline.configstore import register_configs
    from tnbench.pipeline.jobs import preflight

    register_configs()
    problem = preflight(overrides, CONF)
    assert problem is not None and message in problem and "\n" not in problem


def test_every_job_of_a_large_sweep_is_checked():
    """No cap on the jobs checked: the one bad value is in the last of 160 jobs (the sweep
    varies its first override slowest)."""
    from tnbench.pipeline.jobs import check_command

    sweep = ["-m", "dataset=synthetic", "method.rank=4,0", "seed=range(0,80)"]
    assert preflight(sweep, CONF) == "method.rank must be >= 1 or null, got 0"
    plan = check_command(["-m", "dataset=synthetic", "method.rank=4,8", "seed=range(0,80)"], CONF)
    assert plan.problem is None and len(plan.jobs) == 160
    assert len({run_dir for _, run_dir in plan.jobs}) == 160  # each job its own run directory
