"""`python -m tnbench [overrides]`: compose the config, check it, run the pipeline.

Input is checked before Hydra starts a job (`preflight`), so bad input costs one line on
stderr and exit code 2, not a traceback; every value of a multirun sweep is checked too.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

CONFIG_DIR = str(Path(__file__).resolve().parent / "conf")
EXIT_BAD_INPUT = 2
EXIT_FAILED = 1

_failures: list[str] = []


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> float | None:
    from tnbench.pipeline.jobs import run_job

    rec = run_job(cfg)
    if rec["status"] != "ok":
        _failures.append(rec.get("error") or rec["status"])
    return rec.get("acc_retrained")  # the value a Hydra sweeper would optimize


def cli() -> None:
    from tnbench.pipeline.configstore import register_configs
    from tnbench.pipeline.jobs import preflight

    # A W&B service inherited from a parent process (WANDB_SERVICE, set by any process that
    # called wandb.init) would outlive a killed job and keep its run id "in use", so a resumed
    # job could not continue the same W&B run: every tnbench process starts its own service.
    os.environ.pop("WANDB_SERVICE", None)
    register_configs()
    problem = preflight(sys.argv[1:], CONFIG_DIR)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        sys.exit(EXIT_BAD_INPUT)
    main()
    if _failures:
        sys.exit(EXIT_FAILED)


if __name__ == "__main__":
    cli()
