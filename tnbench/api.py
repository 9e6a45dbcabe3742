"""tnbench from Python (a notebook, a script, another Hydra app): one job in this process.

    import tnbench
    result = tnbench.run(overrides=["method=svd", "method.rank=4", "dataset=synthetic"])
    result.record["acc_retrained"], result.model, result.run_dir
    model = tnbench.load(result.run_dir)     # the saved compressed model, from any later session

The same config (`compose`), the same checks and the same pipeline as `python -m tnbench`,
and the same run directory, but nothing exits the interpreter: bad input raises ConfigError
(one-line message, before any work), a failed job raises its error after its record is
written. Unlike the command line, `run` always runs: a record already finished in the same
run directory is replaced (the pretrain cache still spares the dense training), because the
point of calling it is the model it returns.
"""
from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig, OmegaConf, open_dict

from tnbench.errors import ConfigError

if TYPE_CHECKING:
    from torch import nn

CONFIG_DIR = str(Path(__file__).resolve().parent / "conf")


@dataclass
class Result:
    """One finished job: its record (the dict written to record.json), the compressed network
    (an nn.Module, on the CPU or the device it was trained on), its run directory and config."""

    record: dict[str, Any]
    model: nn.Module
    run_dir: Path
    cfg: DictConfig

    @property
    def status(self) -> str:
        return str(self.record.get("status"))

    def __repr__(self) -> str:
        from tnbench.reporting.console import fmt

        r = self.record
        accs = " -> ".join(fmt(r.get(k), 2) for k in ("acc_pretrain", "acc_compressed", "acc_retrained"))
        return (f"Result({r.get('method')} on {r.get('model')}/{r.get('dataset')}: status {self.status}, "
                f"test acc {accs}, compression x{fmt(r.get('compression_ratio'), 2)}, run_dir={str(self.run_dir)!r})")


def compose(overrides: Sequence[str] = (), config_dir: str | Path | None = None) -> DictConfig:
    """The job config the command line would compose from `overrides` (Hydra syntax: `method=cp`,
    `method.rank=4`). `config_dir` adds a folder of your own config groups (like `--config-dir`;
    the same as `hydra.searchpath=[file://DIR]`). A sweep (`+sweep=NAME`, a config with
    `hydra.mode: MULTIRUN`) is many jobs: the command line runs those."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from tnbench.pipeline.configstore import register_configs
    from tnbench.pipeline.jobs import _one_line

    overrides = list(overrides)
    if config_dir is not None:
        if any(o.startswith("hydra.searchpath=") for o in overrides):
            raise ConfigError("give config_dir or a hydra.searchpath override, not both")
        if not Path(config_dir).is_dir():
            raise ConfigError(f"config_dir={str(config_dir)!r} is not a directory (a folder of config groups: "
                              f"method/NAME.yaml, model/NAME.yaml, dataset/NAME.yaml)")
        overrides.append(f"hydra.searchpath=[file://{Path(config_dir).resolve()}]")
    register_configs()
    gh = GlobalHydra.instance()
    outer = gh.hydra if gh.is_initialized() else None  # called from inside another Hydra app
    gh.clear()
    try:
        with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
            cfg = hydra_compose(config_name="config", overrides=overrides, return_hydra_config=True)
    except Exception as e:  # Hydra's own errors about the overrides: bad input, one line
        raise ConfigError(_one_line(e)) from None
    finally:
        gh.clear()
        if outer is not None:
            gh.initialize(outer)
    if str(cfg.hydra.mode).endswith("MULTIRUN") or cfg.hydra.sweeper.get("params"):
        raise ConfigError("these overrides make a sweep (hydra.mode=MULTIRUN); tnbench.run runs one job: run "
                          "sweeps from the command line (python -m tnbench ...)")
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg


def load(run_dir: str | Path, device: str = "cpu") -> nn.Module:
    """The compressed model a run saved (`model.safetensors` + `model.json` in its run
    directory), rebuilt from its architecture spec with its weights, in eval mode. Needs no
    training code and unpickles nothing. A run directory without the files (a record from
    before tnbench saved models) raises CheckpointError with a one-line message."""
    from tnbench.artifacts.store import load as load_saved

    return load_saved(run_dir, device)


def run_dir_of(cfg: DictConfig) -> Path:
    """Where the command line would put this job (conf/config.yaml: hydra.run.dir)."""
    return Path(cfg.paths.results_dir) / "runs" / str(cfg.run_id)


def run(cfg: DictConfig | Mapping[str, Any] | Sequence[str] | None = None, overrides: Sequence[str] | None = None,
        config_dir: str | Path | None = None) -> Result:
    """Run one pretrain -> compress -> retrain job and return its Result.

    `cfg` is a composed config (`compose(...)`, edited as you like) or a mapping of the same
    shape; or give `overrides` (a list of `key=value`, composed as on the command line; a list
    given as `cfg` is taken as overrides). Raises ConfigError for bad input."""
    if isinstance(cfg, Sequence) and not isinstance(cfg, (str, bytes)):
        cfg, overrides = None, [*cfg, *(overrides or [])]
    if cfg is None:
        cfg = compose(overrides or (), config_dir)
    elif overrides:
        raise ConfigError("give a composed cfg or overrides, not both (compose(overrides) and edit it)")
    from tnbench.config import Config
    from tnbench.pipeline.checks import check
    from tnbench.pipeline.configstore import register_configs
    from tnbench.pipeline.jobs import check_run_dir, check_writable, clear_run, previous_ok_record
    from tnbench.pipeline.stages import execute

    register_configs()  # the run_id resolver
    # a copy (checking types the sections in place), under the root schema if it came as a mapping
    cfg = copy.deepcopy(cfg) if isinstance(cfg, DictConfig) else OmegaConf.merge(OmegaConf.structured(Config), cfg)
    run_dir = run_dir_of(cfg)  # before `check` types the sections: the run id hashes them as composed
    check(cfg)
    check_run_dir(cfg, str(run_dir), multirun=False)  # an edited run_id stays under paths.results_dir
    check_writable(cfg.paths.results_dir)
    if cfg.pipeline.rerun or previous_ok_record(run_dir) is not None:
        clear_run(run_dir)
    done = execute(cfg, run_dir)
    return Result(done.record, done.model, run_dir, cfg)
