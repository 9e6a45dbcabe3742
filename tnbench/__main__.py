"""`python -m tnbench [overrides]`: compose the config, check every job, run them.

Every job of the command is composed and checked before Hydra starts the first
(`pipeline.jobs.check_command`), so bad input costs one line on stderr and exit code 2, not a
traceback or a half-run sweep. Exit codes: 0 all jobs ok, 1 a job failed (in a multirun, after
all jobs ran, with one line per failed job), 2 bad input, 130 interrupted (Ctrl-C).

Imports stay light until a job runs: `--help` and `--cfg job` never import torch, Lightning or
a method (tests/pipeline/test_startup.py).
"""
from __future__ import annotations

import logging
import os
import sys

import hydra
from omegaconf import DictConfig

CONFIG_PATH = "conf"
CONFIG_NAME = "config"


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name=CONFIG_NAME)
def main(cfg: DictConfig) -> float | None:
    from tnbench.pipeline.jobs import run_job

    return run_job(cfg).get("acc_retrained")  # the value a Hydra sweeper would optimize


def cli() -> None:
    from tnbench.pipeline import jobs
    from tnbench.pipeline.configstore import register_configs

    # A W&B service inherited from a parent process (WANDB_SERVICE, set by any process that
    # called wandb.init) would outlive a killed job and keep its run id "in use", so a resumed
    # job could not continue the same W&B run: every tnbench process starts its own service.
    os.environ.pop("WANDB_SERVICE", None)
    jobs.catch_interrupts()
    # A log line that cannot be written (a full disk) is dropped, not reported with a traceback
    # per line: the write that matters fails too and is reported once.
    logging.raiseExceptions = False
    register_configs()
    argv = sys.argv[1:]
    try:
        if jobs.answered_by_hydra(argv):  # --help, --cfg, --info: nothing runs, nothing to check
            main()
            return
        plan = jobs.check_command(argv, task_function=main, config_name=CONFIG_NAME)
        if plan.problem:
            print(f"error: {plan.problem}", file=sys.stderr)
            sys.exit(jobs.EXIT_BAD_INPUT)
        # Errors that escape Hydra's launcher reach us whole (a full disk while Hydra writes
        # its files is one line below, not Hydra's reprinted traceback).
        os.environ.setdefault("HYDRA_FULL_ERROR", "1")
        main()
    except (KeyboardInterrupt, SystemExit):
        if jobs.interrupted():
            print(jobs.INTERRUPTED, file=sys.stderr)
            sys.exit(jobs.EXIT_INTERRUPTED)
        raise
    except OSError as e:
        if jobs.disk_full(e) is None:
            raise
        print(f"error (disk full): {jobs.disk_full_line(jobs.disk_full(e))}", file=sys.stderr)
        sys.exit(jobs.EXIT_FAILED)
    if plan.multirun:
        failed = jobs.failed_jobs(plan)
        for line in failed:
            print(line, file=sys.stderr)
        if failed:
            print(f"{len(failed)} of {len(plan.jobs)} jobs failed", file=sys.stderr)
            sys.exit(jobs.EXIT_FAILED)


if __name__ == "__main__":
    cli()
