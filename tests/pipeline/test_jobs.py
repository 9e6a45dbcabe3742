"""The up-front check of a command (tnbench.pipeline.jobs.check_command / preflight): what it accepts and that it
checks every job; the bad-input catalogue is tests/pipeline/test_checks.py."""
from __future__ import annotations

from tests.conftest import CONF
from tnbench.pipeline.configstore import register_configs
from tnbench.pipeline.jobs import preflight

register_configs()


def test_preflight_accepts_good_input():
    assert preflight(["-m", "method=none,svd", "method.rank=4,8", "dataset=synthetic"], CONF) is None
    assert preflight(["--help"], CONF) is None


def test_every_job_of_a_large_sweep_is_checked():
    """No cap on the jobs checked: the one bad value is in the last of 160 jobs (the sweep
    varies its first override slowest)."""
    from tnbench.pipeline.jobs import check_command

    sweep = ["-m", "dataset=synthetic", "method.rank=4,0", "seed=range(0,80)"]
    assert preflight(sweep, CONF) == "method.rank must be >= 1 or null, got 0"
    plan = check_command(["-m", "dataset=synthetic", "method.rank=4,8", "seed=range(0,80)"], CONF)
    assert plan.problem is None and len(plan.jobs) == 160
    assert len({run_dir for _, run_dir in plan.jobs}) == 160  # each job its own run directory
