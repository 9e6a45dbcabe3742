"""The command line as `@hydra.main` reads it, so that the up-front check sees exactly the jobs
Hydra is about to run: the same flags (`--config-path/-cp`, `--config-name/-cn`,
`--config-dir/-cd`, `-m`), the same config search path (the task function's package, then
`--config-dir` and `hydra.searchpath`), the same run mode (`-m`, or `hydra.mode` in a config)
and the same jobs (`hydra.sweeper.params` and the command line, expanded as Hydra's
BasicSweeper does).

Composing each job of a large sweep from scratch costs tens of milliseconds, so `Jobs`
composes once per distinct set of config-group choices and applies a job's value overrides to
a copy, which is what Hydra's config loader does after it has merged the defaults list
(tests/pipeline/test_command.py compares the two job by job).

Hydra has no public API for "what would main run": this module uses hydra._internal (the
argument parser, the search path main builds, the config loader, the basic sweeper), so
hydra-core is pinned to 1.3.x in pyproject.toml.
"""
from __future__ import annotations

import copy
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict

from tnbench.errors import ConfigError

BASIC_SWEEPER = "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"
# Launchers whose jobs run on this machine: its accelerators, cores and files are the jobs'.
LOCAL_LAUNCHERS = (
    "hydra._internal.core_plugins.basic_launcher.BasicLauncher",
    "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher",
    "hydra_plugins.hydra_submitit_launcher.submitit_launcher.LocalLauncher",
)
# The parts of the hydra node a job's run directory can depend on.
RUN_DIR_KEYS = ("run", "sweep", "job", "runtime", "mode")


@dataclass
class Job:
    """One job of the command: its overrides (as Hydra's launcher lists them), its config as
    the task function receives it (no `hydra` node), and its run directory (None when the
    directory depends on something only the launcher knows)."""

    overrides: list[str]
    cfg: DictConfig
    run_dir: str | None


def read_args(argv: list[str]) -> Any:
    """`argv` parsed by Hydra's own argument parser; unknown flags are a ConfigError."""
    from hydra._internal.utils import get_args_parser

    args, unknown = get_args_parser().parse_known_args(argv)
    if unknown:
        raise ConfigError(f"unrecognized arguments: {' '.join(unknown)} (flags go before the overrides; "
                          f"python -m tnbench --help lists them)")
    return args


class Command:
    """`argv` read as `@hydra.main(config_path, config_name)` on `task_function` reads it."""

    def __init__(self, argv: list[str], task_function: Callable[..., Any] | None, config_path: str | None,
                 config_name: str | None) -> None:
        from hydra._internal.hydra import Hydra

        self.args = args = read_args(argv)
        self.config_name = args.config_name if args.config_name is not None else config_name
        self.hydra = Hydra.create_main_hydra2(*_main_search_path(args, task_function, config_path))
        self.overrides = list(args.overrides)
        self.multirun = self._mode()

    def _mode(self) -> bool:
        """RUN or MULTIRUN as Hydra's `_run_app` decides it; like it, appends `hydra.mode=...`
        when the flag decides."""
        from hydra.types import RunMode

        mode = self.hydra.get_mode(config_name=self.config_name, overrides=self.overrides)
        if mode is None or (self.args.multirun and mode == RunMode.RUN):
            multirun = bool(self.args.multirun)
            self.overrides.append(f"hydra.mode={'MULTIRUN' if multirun else 'RUN'}")
            return multirun
        return mode == RunMode.MULTIRUN

    def compose(self, run_mode: Any) -> DictConfig:
        return self.hydra.compose_config(config_name=self.config_name, overrides=self.overrides, run_mode=run_mode,
                                         with_log_configuration=False)

    def jobs(self) -> Jobs:
        """Every job the command runs, composed lazily (`Jobs` is iterable and has a length)."""
        from hydra.core.override_parser.overrides_parser import OverridesParser
        from hydra.types import RunMode

        if not self.multirun:
            cfg = self.compose(RunMode.RUN)
            return Jobs(self, cfg, [list(cfg.hydra.overrides.task)], run_cfg=cfg)
        master = self.compose(RunMode.MULTIRUN)
        if master.hydra.sweeper._target_ != BASIC_SWEEPER:
            raise ConfigError(f"hydra/sweeper {master.hydra.sweeper._target_} cannot be checked up front: "
                              f"tnbench expands sweeps with Hydra's basic sweeper only")
        from hydra._internal.core_plugins.basic_sweeper import BasicSweeper

        params = master.hydra.sweeper.get("params") or {}
        arguments = [f"{k}={v}" for k, v in params.items()] + list(master.hydra.overrides.task)
        parsed = OverridesParser.create(config_loader=self.hydra.config_loader).parse_overrides(arguments)
        (batch,) = BasicSweeper.split_arguments(parsed, None)
        return Jobs(self, master, batch)


class Jobs:
    """The jobs of one command, composed on iteration (once per distinct set of group choices)."""

    def __init__(self, command: Command, master: DictConfig, overrides: list[list[str]],
                 run_cfg: DictConfig | None = None) -> None:
        self.command = command
        self.master = master
        self.overrides = overrides
        self.multirun = command.multirun
        self.launcher = str(master.hydra.launcher._target_)
        self.local = self.launcher in LOCAL_LAUNCHERS
        self._run_cfg = run_cfg  # a single run is composed already
        self._hydra_overrides = list(master.hydra.overrides.hydra)
        self._parsed: dict[str, Any] = {}
        self._is_group: dict[str, bool] = {}
        self._bases: dict[tuple[str, ...], tuple[DictConfig, DictConfig]] = {}
        self._repo: Any = None

    def __len__(self) -> int:
        return len(self.overrides)

    def __iter__(self) -> Iterator[Job]:
        for num, overrides in enumerate(self.overrides):
            yield self.job(num, overrides)

    def job(self, num: int, overrides: list[str]) -> Job:
        if self._run_cfg is not None:
            return _job(overrides, self._run_cfg, multirun=False)
        parsed = [self._parse(o) for o in overrides]
        if any(o.is_hydra_override() for o in parsed):  # a swept hydra.* key: compose it the long way
            cfg = self.command.hydra.config_loader.load_sweep_config(self.master, list(overrides))
            with open_dict(cfg):
                cfg.hydra.job.num = cfg.hydra.job.id = num
            return _job(overrides, cfg, multirun=True)
        groups = tuple(o.input_line for o in parsed if self._group(o))
        task, hydra_node = self._base(groups)
        from hydra._internal.config_loader_impl import ConfigLoaderImpl

        cfg = copy.deepcopy(task)
        ConfigLoaderImpl._apply_overrides_to_config([o for o in parsed if not self._group(o)], cfg)
        _pin_run_id(cfg)
        return Job(list(overrides), cfg, self._run_dir(cfg, hydra_node, num, parsed))

    def _parse(self, override: str) -> Any:
        if override not in self._parsed:
            from hydra.core.override_parser.overrides_parser import OverridesParser

            (self._parsed[override],) = OverridesParser.create().parse_overrides([override])
        return self._parsed[override]

    def _group(self, override: Any) -> bool:
        """Whether Hydra reads `override` as a config-group choice (as its defaults list does)."""
        key = override.key_or_group
        if key not in self._is_group:
            if self._repo is None:
                # Hydra's private loader API (hydra-core 1.3.x, pinned <1.4 in pyproject; tests/pipeline/test_command.py
                # composes sweep jobs through it and compares with Hydra's own result)
                _, self._repo = self.command.hydra.config_loader._parse_overrides_and_create_caching_repo(
                    self.command.config_name, self._hydra_overrides)
            self._is_group[key] = self._repo.group_exists(key)
        return self._is_group[key] and not isinstance(override.value(), dict)

    def _base(self, groups: tuple[str, ...]) -> tuple[DictConfig, DictConfig]:
        """The config of these group choices without value overrides: the task part and the part
        of the hydra node a run directory can depend on."""
        if groups not in self._bases:
            from hydra.types import RunMode

            cfg = self.command.hydra.config_loader.load_configuration(
                config_name=self.command.config_name, overrides=[*self._hydra_overrides, *groups],
                run_mode=RunMode.RUN)
            hydra_node = OmegaConf.masked_copy(cfg.hydra, list(RUN_DIR_KEYS))
            with open_dict(cfg):
                del cfg["hydra"]
            self._bases[groups] = (cfg, hydra_node)
        return self._bases[groups]

    def _run_dir(self, cfg: DictConfig, hydra_node: DictConfig, num: int, parsed: list[Any]) -> str | None:
        from hydra._internal.config_loader_impl import get_overrides_dirname

        job = hydra_node.job
        with open_dict(cfg):
            cfg["hydra"] = hydra_node
            cfg.hydra.job.num = cfg.hydra.job.id = num
            cfg.hydra.job.override_dirname = get_overrides_dirname(
                overrides=parsed, kv_sep=job.config.override_dirname.kv_sep,
                item_sep=job.config.override_dirname.item_sep,
                exclude_keys=list(job.config.override_dirname.exclude_keys))
            try:
                return run_dir_of(cfg, multirun=True)
            finally:
                del cfg["hydra"]


def _pin_run_id(cfg: DictConfig) -> None:
    """Resolve `run_id` (a hash of the whole config) once: the run directory and the checks
    read it, and a 1,000-job sweep would otherwise hash each job several times."""
    from omegaconf.errors import OmegaConfBaseException

    try:
        run_id = str(cfg.run_id)
    except (OmegaConfBaseException, ValueError):  # the check reports what is wrong
        return
    with open_dict(cfg):
        cfg.run_id = run_id


def _job(overrides: list[str], cfg: DictConfig, multirun: bool) -> Job:
    run_dir = run_dir_of(cfg, multirun)
    cfg = copy.deepcopy(cfg)
    with open_dict(cfg):
        del cfg["hydra"]
    return Job(list(overrides), cfg, run_dir)


def run_dir_of(cfg: DictConfig, multirun: bool) -> str | None:
    """The directory Hydra's launcher gives a job (`hydra.run.dir`, or `hydra.sweep.dir` /
    `hydra.sweep.subdir`), absolute; None if it needs what only the launcher knows."""
    from omegaconf.errors import OmegaConfBaseException

    try:
        if multirun:
            path = os.path.join(str(cfg.hydra.sweep.dir), str(cfg.hydra.sweep.subdir))
        else:
            path = str(cfg.hydra.run.dir)
    except (OmegaConfBaseException, ValueError):
        return None
    return os.path.abspath(path)


def _main_search_path(args: Any, task_function: Callable[..., Any] | None, config_path: str | None) -> tuple[str, Any]:
    """The task name and the config search path `@hydra.main` builds: the primary config
    directory (`--config-path` or the task's own), then `--config-dir`."""
    config_path = args.config_path if args.config_path is not None else config_path
    search_path, task_name = _search_path(task_function, config_path)
    if args.config_dir is not None:
        from hydra.core.config_search_path import SearchPathQuery

        config_dir = os.path.abspath(args.config_dir)
        if not os.path.isdir(config_dir):
            raise ConfigError(f"--config-dir {config_dir} is not a directory")
        search_path.prepend(provider="command-line", path=f"file://{config_dir}",
                            anchor=SearchPathQuery(provider="schema"))
    return task_name, search_path


TNBENCH_CONF = "pkg://tnbench.conf"  # tnbench's config groups, as a Hydra search path entry


def finds_tnbench_configs(argv: list[str], task_function: Callable[..., Any] | None, config_path: str | None,
                          config_name: str | None) -> bool:
    """Whether every config of tnbench's own groups (tnbench/conf/GROUP/NAME.yaml) is found on
    the search path Hydra composes `argv` with, `hydra.searchpath` (of the command line, else of
    the primary config) included. `--config-path DIR` replaces tnbench's folder unless DIR's
    primary config adds `pkg://tnbench.conf` (or DIR holds a copy of it)."""
    import warnings
    from pathlib import Path

    from hydra._internal.config_loader_impl import ConfigLoaderImpl

    args = read_args(argv)
    _, search_path = _main_search_path(args, task_function, config_path)
    loader = ConfigLoaderImpl(config_search_path=search_path)
    name = args.config_name if args.config_name is not None else config_name
    hydra_overrides = [o for o in args.overrides if o.lstrip("+~").startswith("hydra.")]
    with warnings.catch_warnings():  # a search path entry that does not exist: Hydra warns when it runs
        warnings.simplefilter("ignore")
        # Hydra's private loader API (hydra-core 1.3.x, pinned <1.4 in pyproject; tests/pipeline/test_command.py
        # composes sweep jobs through it and compares with Hydra's own result)
        _, repo = loader._parse_overrides_and_create_caching_repo(name, hydra_overrides)
    own = Path(__file__).resolve().parent.parent / "conf"
    return all(repo.config_exists(f"{p.parent.name}/{p.stem}") for p in own.glob("*/*.yaml"))


def _search_path(task_function: Callable[..., Any] | None, config_path: str | None) -> tuple[Any, str]:
    """The config search path and task name `@hydra.main` derives from its task function: the
    function's file for `python -m tnbench`, its package (pkg://) for the console script."""
    from hydra._internal.utils import (
        create_automatic_config_search_path,
        detect_calling_file_or_module_from_task_function,
        detect_task_name,
    )
    from hydra.core.utils import validate_config_path

    if task_function is None:  # the primary config is `config_path` itself (an absolute directory)
        calling_file, calling_module = None, None
    else:
        calling_file, calling_module = detect_calling_file_or_module_from_task_function(task_function)
    validate_config_path(config_path)
    search_path = create_automatic_config_search_path(calling_file, calling_module, config_path)
    return search_path, detect_task_name(calling_file, calling_module)
