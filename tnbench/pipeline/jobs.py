"""The job wrapper around the pipeline: input checks before Hydra, one-line errors, records
that survive failures, and multiruns that go on past a failed job."""
from __future__ import annotations

import itertools
import logging
import os
import sys
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

log = logging.getLogger(__name__)

# Flags Hydra reads itself; those in VALUE_FLAGS take the next argument.
SKIP_FLAGS = {"--help", "-h", "--hydra-help", "--info", "-i", "--cfg", "-c", "--shell-completion", "-sc"}
VALUE_FLAGS = {"--config-path", "-cp", "--config-name", "-cn", "--config-dir", "-cd", "--package", "-p",
               "--experimental-rerun"}
MAX_CHECKED_COMBINATIONS = 64


def _overrides(argv: list[str]) -> list[str] | None:
    """The key=value overrides, or None when Hydra itself should answer (help, --cfg)."""
    out, skip_next = [], False
    for a in argv:
        if skip_next:
            skip_next = False
            continue
        if a.split("=")[0] in SKIP_FLAGS:
            return None
        if a in VALUE_FLAGS:
            skip_next = True
            continue
        if a.startswith("-"):
            continue
        key = a.lstrip("+~")
        if key.startswith("hydra.") or key.startswith("hydra/") or key.startswith("hydra="):
            continue
        out.append(a)
    return out


def _expand(overrides: list[str]) -> list[list[str]]:
    """Every combination of a sweep's values (first values only past a size cap)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(overrides)
    choices = []
    for o in parsed:
        if o.is_sweep_override():
            key = o.get_key_element()
            choices.append([f"{key}={v}" for v in o.sweep_string_iterator()])
        else:
            choices.append([o.input_line])
    combos = list(itertools.islice(itertools.product(*choices), MAX_CHECKED_COMBINATIONS))
    return [list(c) for c in combos]


def _one_line(e: BaseException) -> str:
    from hydra.errors import MissingConfigException

    if isinstance(e, MissingConfigException) and e.missing_cfg_file and "/" in e.missing_cfg_file:
        group, _, name = e.missing_cfg_file.partition("/")
        return f"{group}={name!r} is not known; allowed: {', '.join(e.options or [])}"
    parts = []
    while e is not None:
        text = " ".join(line.strip() for line in str(e).splitlines() if line.strip() and "full_key" not in line
                        and "object_type" not in line and "reference_type" not in line)
        if text and text not in parts:
            parts.append(text)
        e = e.__cause__
    return ": ".join(parts) or "invalid configuration"


def check_writable(directory: str) -> None:
    """Fail before any work if records could not be written."""
    import tempfile

    from tnbench.errors import ConfigError

    try:
        Path(directory).mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError as e:
        raise ConfigError(f"paths.results_dir={directory} is not writable: {e.strerror or e}") from None


def _config_sweep(argv: list[str], overrides: list[str], first: list[str]) -> list[str]:
    """The sweep a config sets itself (`hydra.sweeper.params`, e.g. from `+sweep=NAME`) as
    overrides, less the keys the command line sets (they win, as in Hydra's BasicSweeper);
    empty unless the command is a multirun (`-m`, or `hydra.mode: MULTIRUN` in the config)."""
    from hydra import compose
    from hydra.core.override_parser.overrides_parser import OverridesParser

    cfg = compose(config_name="config", overrides=first, return_hydra_config=True)
    mode = next((a.split("=", 1)[1] for a in reversed(argv) if a.startswith("hydra.mode=")), None)
    multirun = "-m" in argv or "--multirun" in argv or (mode or str(cfg.hydra.mode)).endswith("MULTIRUN")
    params = cfg.hydra.sweeper.get("params") if multirun else None
    if not params:
        return []
    given = {o.key_or_group for o in OverridesParser.create().parse_overrides(overrides)}
    return [f"{k}={v}" for k, v in params.items() if k not in given]


def preflight(argv: list[str], config_dir: str) -> str | None:
    """Compose and check the config for every job the command would run, including a sweep the
    config defines itself; the first problem as one line, or None."""
    overrides = _overrides(argv)
    if overrides is None:
        return None
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from tnbench.errors import BAD_INPUT
    from tnbench.pipeline.checks import check

    try:
        combos = _expand(overrides)
    except Exception as e:
        return f"cannot parse overrides: {_one_line(e)}"
    with initialize_config_dir(config_dir=config_dir, version_base="1.3"):
        try:
            swept = _config_sweep(argv, overrides, combos[0])
            if swept:
                combos = _expand(swept + overrides)
        except Exception as e:
            return _one_line(e)
        for combo in combos:
            try:
                cfg = compose(config_name="config", overrides=combo)
                check(cfg)
                check_writable(cfg.paths.results_dir)
            except BAD_INPUT as e:
                return str(e).splitlines()[0]
            except Exception as e:
                return _one_line(e)
    GlobalHydra.instance().clear()
    return None


def previous_ok_record(run_dir: Path) -> dict[str, Any] | None:
    import json

    from tnbench.reporting.records import RECORD

    try:
        rec = json.loads((run_dir / RECORD).read_text())
    except (OSError, ValueError):
        return None
    return rec if isinstance(rec, dict) and rec.get("status") == "ok" else None


def clear_run(run_dir: Path) -> None:
    """Forget an earlier attempt's state, checkpoints and record (its logs stay)."""
    import shutil

    from tnbench.pipeline.resume import STATE
    from tnbench.reporting.records import RECORD

    for name in (RECORD, STATE):
        (run_dir / name).unlink(missing_ok=True)
    shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)


def run_job(cfg: DictConfig) -> dict[str, Any]:
    """Run one pipeline job under Hydra. Failures are recorded and reported in one line; in a
    single run they end the process with a non-zero code, in a multirun the sweep goes on."""
    from tnbench.errors import BAD_INPUT, Diverged
    from tnbench.pipeline.stages import run_pipeline

    hc = HydraConfig.get()
    run_dir = Path(hc.runtime.output_dir)
    done = previous_ok_record(run_dir)
    if done is not None and not cfg.pipeline.rerun:
        print(f"already done: {run_dir} (status ok; pipeline.rerun=true runs it again)", file=sys.stderr)
        if os.environ.get("WANDB_SWEEP_ID"):  # the sweep agent waits for this job's W&B run
            from tnbench.pipeline.trainer import log_finished_record

            log_finished_record(cfg, run_dir, done)
        return done
    if cfg.pipeline.rerun:
        clear_run(run_dir)
    try:
        return run_pipeline(cfg, run_dir)
    except Exception as e:
        from tnbench.reporting.records import RECORD

        expected = isinstance(e, (*BAD_INPUT, Diverged))  # no traceback: the record says it all
        kind = "bad input" if isinstance(e, BAD_INPUT) else "diverged" if isinstance(e, Diverged) else "failed"
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        print(f"error ({kind}): {msg}  [record: {run_dir / RECORD}]", file=sys.stderr)
        if not expected:
            log.exception("job failed")
        if hc.mode == RunMode.RUN:
            sys.exit(2 if isinstance(e, BAD_INPUT) else 1)
        import json

        try:
            return json.loads((run_dir / RECORD).read_text())
        except (OSError, ValueError):
            return {"status": "failed", "error": msg}
