"""The job wrapper around the pipeline: every job checked before Hydra starts any, one-line
errors, records that survive failures, and multiruns that go on past a failed job and say at
the end which jobs failed, whatever the launcher."""
from __future__ import annotations

import errno
import logging
import os
import re
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

log = logging.getLogger(__name__)

EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report a Ctrl-C
INTERRUPTED = "interrupted; rerun the same command to resume"


_interrupted = False


def catch_interrupts() -> None:
    """Remember a Ctrl-C (SIGINT) before it becomes a KeyboardInterrupt: Lightning turns one
    during training into `sys.exit(1)`, and the command must still say it was interrupted."""
    import signal

    def on_sigint(signum: int, frame: Any) -> None:
        global _interrupted
        _interrupted = True
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, on_sigint)


def interrupted() -> bool:
    return _interrupted


def answered_by_hydra(argv: list[str]) -> bool:
    """Whether Hydra answers `argv` itself without running a job (--help, --cfg, --info, shell
    completion): read with Hydra's own argument parser, nothing composed."""
    from tnbench.errors import ConfigError
    from tnbench.pipeline.command import read_args

    try:
        return hydra_answers(read_args(argv))
    except ConfigError:  # the check says what is wrong
        return False


def hydra_answers(args: Any) -> bool:
    return bool(args.help or args.hydra_help or args.cfg or args.info or args.shell_completion
                or args.experimental_rerun)


def _one_line(e: BaseException) -> str:
    """A Hydra/OmegaConf composition error as one line."""
    from hydra.errors import MissingConfigException

    if isinstance(e, MissingConfigException) and e.missing_cfg_file and "/" in e.missing_cfg_file:
        group, _, name = e.missing_cfg_file.partition("/")
        return f"{group}={name!r} is not known; allowed: {', '.join(e.options or [])}{_no_yaml_hint(group, name)}"
    merging = re.match(r"Error merging override ([^=\s]+)=", str(e))
    if merging:
        from tnbench.config import wrong_type

        cause = " ".join(str(c) for c in (e.__cause__, e.__context__) if c is not None)
        line = wrong_type(merging.group(1), f"{e} {cause}")
        if line:
            return line
    ambiguous = re.match(r"Ambiguous value for argument '(.*)'", str(e))
    if ambiguous:
        return (f"{ambiguous.group(1)} gives several values: add -m (--multirun) to sweep over them; allowed "
                f"otherwise: one value, a list key=[a,b], or a quoted string key='a,b'")
    parts: list[str] = []
    while e is not None:
        text = " ".join(line.strip() for line in str(e).splitlines() if line.strip() and "full_key" not in line
                        and "object_type" not in line and "reference_type" not in line)
        if text and text not in parts:
            parts.append(text)
        e = e.__cause__
    return ": ".join(parts) or "invalid configuration"


def _no_yaml_hint(group: str, name: str) -> str:
    """For a name an installed package registers (entry point) that no config folder has a YAML
    for: what to add. Read from the distributions' metadata, nothing imported."""
    from importlib.metadata import entry_points

    if group not in ("dataset", "model", "method"):
        return ""
    found = [ep for ep in entry_points(group=f"tnbench.{group}s") if ep.name == name]
    if not found:
        return ""
    return (f" ({group} {name!r} is registered by the entry point {found[0].value} but has no config: add "
            f"{group}/{name}.yaml, at least `name: {name}`, to a folder given by --config-dir or hydra.searchpath)")


def _search_path_hint(argv: list[str], task_function: Any, config_path: str, config_name: str) -> str:
    """When tnbench's own config groups are not on the search path (`--config-path DIR` replaces
    them): how to add them. Empty when they are, or when that cannot be told."""
    from tnbench.pipeline.command import TNBENCH_CONF, finds_tnbench_configs

    try:
        if finds_tnbench_configs(argv, task_function, config_path, config_name):
            return ""
    except Exception:  # the problem itself is what the user sees then
        return ""
    return (f" (tnbench's config groups are not on the search path, --config-path replaces them: add "
            f"{TNBENCH_CONF} to hydra.searchpath in your primary config, or give your folder with --config-dir)")


def _unknown_key(e: BaseException, argv: list[str], task_function: Any, config_path: str,
                 config_name: str) -> str | None:
    """Hydra's refusal of an override of a key the config lacks, as one line listing the keys
    of that section (composed again without the override)."""
    from hydra.core.global_hydra import GlobalHydra
    from hydra.types import RunMode
    from omegaconf import OmegaConf

    from tnbench.pipeline.command import Command

    m = re.match(r"Could not override '([^']+)'", str(e))
    if not m:
        return None
    key = m.group(1)
    parent = key.rpartition(".")[0]
    rest = [a for a in argv if not a.lstrip("+~").startswith(f"{key}=")]
    try:
        GlobalHydra.instance().clear()
        command = Command(rest, task_function, config_path, config_name)
        cfg = command.compose(RunMode.MULTIRUN if command.multirun else RunMode.RUN)
        node = OmegaConf.select(cfg, parent) if parent else cfg
        allowed = [str(k) for k in node if str(k) not in ("_target_", "hydra")]
        if parent == "model.options":  # a model's options are its builder's keyword arguments
            import inspect

            from tnbench.models import _GEOMETRY, MODELS

            builder = MODELS.resolve(cfg.model)  # by name, or a plugin's `_target_`
            allowed = [p for p in inspect.signature(builder).parameters if p not in _GEOMETRY]
            parent = f"model={cfg.model.name}"
        name = f"={node.name}" if parent in ("dataset", "model", "method") and "name" in node else ""
    except Exception:  # the original message then
        return None
    return f"{key} is not an option{f' of {parent}{name}' if parent else ''}; allowed: {', '.join(allowed) or '(none)'}"


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0]


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


def check_run_dir(cfg: DictConfig, run_dir: str | None, multirun: bool) -> None:
    """A run's directory stays inside `paths.results_dir`: `run_id` is a plain name, and
    `hydra.run.dir` / `hydra.sweep.dir` may move runs only within it."""
    from tnbench.errors import ConfigError

    run_id = str(cfg.run_id)
    if not run_id or run_id in (".", "..") or "/" in run_id or os.sep in run_id or "\0" in run_id:
        raise ConfigError(f"run_id={run_id!r} must be a plain directory name (no '/', not '.' or '..'): it "
                          f"names the run's directory under paths.results_dir")
    if run_dir is None:
        return
    root = os.path.realpath(str(cfg.paths.results_dir))
    where = os.path.realpath(run_dir)
    if where == root or os.path.commonpath([root, where]) != root:
        key = "hydra.sweep.dir/hydra.sweep.subdir" if multirun else "hydra.run.dir"
        raise ConfigError(f"{key} puts the run in {run_dir}, outside paths.results_dir={cfg.paths.results_dir}; "
                          f"allowed: a directory under it (move paths.results_dir instead)")


@dataclass
class Plan:
    """What the up-front check learnt about a command: the first problem (one line), or every
    job's overrides and run directory."""

    problem: str | None = None
    multirun: bool = False
    jobs: list[tuple[list[str], str | None]] = field(default_factory=list)


def check_command(argv: list[str], config_dir: str | None = None, task_function: Callable[..., Any] | None = None,
                  config_name: str = "config") -> Plan:
    """Compose and check every job `argv` runs, as `@hydra.main` on `task_function` (default:
    tnbench's) would compose them; `config_dir` replaces the primary config directory (as
    `--config-path` does). Bad input comes back as `Plan.problem`; internal errors raise."""
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException
    from hydra.initialize import get_gh_backup, restore_gh_from_backup
    from omegaconf.errors import OmegaConfBaseException

    from tnbench.errors import BAD_INPUT
    from tnbench.pipeline.command import Command

    if task_function is None:
        from tnbench.__main__ import main as task_function
    config_path = config_dir if config_dir is not None else "conf"
    backup = get_gh_backup()  # Hydra's main, run after this, initializes its own
    try:
        command = Command(argv, task_function, config_path, config_name)
        if hydra_answers(command.args):
            return Plan()
        jobs = command.jobs()
        return _check_jobs(jobs)
    except BAD_INPUT as e:
        problem = _first_line(e)
    except (HydraException, OmegaConfBaseException) as e:
        problem = _unknown_key(e, argv, task_function, config_path, config_name) or _one_line(e)
    finally:
        if backup is None:
            GlobalHydra.instance().clear()
        else:
            restore_gh_from_backup(backup)
    return Plan(problem=problem + _search_path_hint(argv, task_function, config_path, config_name))


def _check_jobs(jobs: Any) -> Plan:
    from tnbench.pipeline.checks import Checker

    checker = Checker(machine=jobs.local)
    plan = Plan(multirun=jobs.multirun)
    results_dirs: dict[str, None] = {}
    for job in jobs:
        checker.check(job.cfg)
        check_run_dir(job.cfg, job.run_dir, jobs.multirun)
        results_dirs[str(job.cfg.paths.results_dir)] = None
        plan.jobs.append((job.overrides, job.run_dir))
    for directory in results_dirs:
        check_writable(directory)
    return plan


def preflight(argv: list[str], config_dir: str | None = None) -> str | None:
    """The first problem of any job `argv` would run, as one line; None if there is none."""
    return check_command(argv, config_dir).problem


def failed_jobs(plan: Plan) -> list[str]:
    """One line per job of a finished multirun whose record is not ok, read from the records
    (the jobs may have run in other processes: joblib, submitit). A job is named by the
    overrides that tell it from the other jobs."""
    import json

    from tnbench.reporting.records import RECORD

    shared = set.intersection(*(set(o) for o, _ in plan.jobs)) if len(plan.jobs) > 1 else set()
    lines, seen = [], set()
    for overrides, run_dir in plan.jobs:
        if run_dir is None or run_dir in seen:
            continue
        seen.add(run_dir)
        path = Path(run_dir) / RECORD
        try:
            rec = json.loads(path.read_text())
            status, error = rec.get("status"), rec.get("error")
        except (OSError, ValueError, AttributeError):
            status, error = "no record", "the job wrote no record (killed?)"
        if status != "ok":
            what = " ".join(o for o in overrides if o not in shared) or " ".join(overrides) or "(defaults)"
            lines.append(f"failed job ({status}): {what}: {error or 'no error recorded'}  [record: {path}]")
    return lines


# no space left, over quota, over the file size limit (ulimit -f)
DISK_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def disk_full(e: BaseException) -> OSError | None:
    """The 'no space left' (or quota, or file size limit) error behind `e`, if that is what it is."""
    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, OSError) and e.errno in DISK_FULL:
            return e
        e = e.__cause__ or e.__context__
    return None


def disk_full_line(e: OSError) -> str:
    what = "no space left on the device" if e.errno == errno.ENOSPC else (e.strerror or str(e)).lower()
    where = f" writing {e.filename}" if e.filename else ""
    return f"{what}{where}; free some space and rerun the same command to resume"


def previous_ok_record(run_dir: Path) -> dict[str, Any] | None:
    """The run's record if it says ok; an unreadable record is set aside (the run is redone)."""
    from tnbench.pipeline.integrity import read_json, record_problem
    from tnbench.reporting.records import RECORD

    rec = read_json(Path(run_dir) / RECORD, record_problem, "the run is done again")
    return rec if rec is not None and rec.get("status") == "ok" else None


def clear_run(run_dir: Path) -> None:
    """Forget an earlier attempt's state, checkpoints and record (its logs stay)."""
    import shutil

    from tnbench.pipeline.resume import STATE
    from tnbench.reporting.records import RECORD

    for name in (RECORD, STATE):
        (run_dir / name).unlink(missing_ok=True)
    shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)


def _note_interrupt(run_dir: Path) -> None:
    """Say in the record that the run was interrupted (Lightning reports a Ctrl-C in training
    as SystemExit)."""
    import json

    from tnbench.reporting.records import RECORD, write_record

    try:
        rec = json.loads((run_dir / RECORD).read_text())
        rec.update(status="failed", error=INTERRUPTED)
        rec.pop("traceback", None)
        write_record(run_dir, rec)
    except (OSError, ValueError):
        pass


def run_job(cfg: DictConfig) -> dict[str, Any]:
    """Run one pipeline job under Hydra. Failures are recorded and reported on stderr: the
    project's own input errors and a full disk in one line, internal errors with their
    traceback. In a single run they end the process with a non-zero code; in a multirun the
    sweep goes on (the command says at its end which jobs failed)."""
    from tnbench.pipeline.resume import run_lock

    hc = HydraConfig.get()
    run_dir = Path(hc.runtime.output_dir)
    # two jobs of one sweep can be the same run (`method=none` ignores `method.rank`): under a
    # parallel launcher the second waits, then finds the record (not under DDP, whose ranks
    # all run this)
    with run_lock(run_dir, enabled="ddp" not in str(cfg.trainer.strategy)):
        return _run_job(cfg, hc, run_dir)


def _run_job(cfg: DictConfig, hc: Any, run_dir: Path) -> dict[str, Any]:
    from tnbench.errors import BAD_INPUT, Diverged
    from tnbench.pipeline.stages import run_pipeline

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
        # the record keeps the typed sections (options a plugin's YAML leaves out, at their
        # defaults), as tnbench.run records them: the report does not split the two
        from tnbench.pipeline.checks import resolve_entries

        resolve_entries(cfg)
        return run_pipeline(cfg, run_dir)
    except (KeyboardInterrupt, SystemExit):
        if interrupted():
            _note_interrupt(run_dir)
        raise
    except Exception as e:
        from tnbench.reporting.records import RECORD

        full = disk_full(e)
        if full is not None:
            kind, msg = "disk full", disk_full_line(full)
        else:
            kind = "bad input" if isinstance(e, BAD_INPUT) else "diverged" if isinstance(e, Diverged) else "failed"
            msg = _first_line(e)
        if kind == "failed":  # an internal error: its traceback is what fixes it
            traceback.print_exception(e, file=sys.stderr)
        where = f"  [record: {run_dir / RECORD}]" if (run_dir / RECORD).is_file() else ""
        print(f"error ({kind}): {msg}{where}", file=sys.stderr)
        if hc.mode == RunMode.RUN:
            sys.exit(EXIT_BAD_INPUT if isinstance(e, BAD_INPUT) else EXIT_FAILED)
        import json

        try:
            return json.loads((run_dir / RECORD).read_text())
        except (OSError, ValueError):
            return {"status": "failed", "error": msg}
