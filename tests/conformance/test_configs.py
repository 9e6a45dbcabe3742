"""The Hydra config tree (tnbench/conf) and the registries agree: one YAML per registered dataset,
model and method, named after it, listing exactly its schema's options with its schema's defaults."""
from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest
import yaml
from omegaconf import OmegaConf

from tests.conftest import PACKAGE, compose
from tnbench.config import DatasetConfig, MethodConfig, ModelConfig
from tnbench.data import DATASETS
from tnbench.data import config_class as dataset_config_class
from tnbench.methods import METHODS
from tnbench.models import MODELS
from tnbench.registry import Registry

GROUPS: dict[str, Registry] = {"dataset": DATASETS, "model": MODELS, "method": METHODS}
GLOBAL_PACKAGE = "# @package _global_"


def yaml_files(group: str) -> list[Path]:
    return sorted((PACKAGE / "conf" / group).glob("*.yaml"))


def load(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text()) or {}


def is_preset(path: Path) -> bool:
    return path.read_text().lstrip().startswith(GLOBAL_PACKAGE)


def selected_by_preset(defaults: list[Any], group: str) -> list[str]:
    """The entries of `group` a preset's defaults list selects: `name@group`, `/group: name` or
    `override /group: name`."""
    chosen = []
    for entry in defaults:
        if isinstance(entry, str) and entry.endswith(f"@{group}"):
            chosen.append(entry.rsplit("@", 1)[0])
        elif isinstance(entry, dict):
            chosen += [v for k, v in entry.items() if k.split()[-1] in (group, f"/{group}")]
    return chosen


def entries(group: str) -> list[tuple[str, dict[str, Any]]]:
    """(file stem, content) of the group's YAMLs that define an entry (not presets)."""
    return [(p.stem, load(p)) for p in yaml_files(group) if not is_preset(p)]


def schema_of(group: str, name: str) -> type:
    section = OmegaConf.create({"name": name})
    if group == "method":
        return METHODS.resolve(section).config_class
    return dataset_config_class(section)


BASE = {"method": MethodConfig, "dataset": DatasetConfig}
TYPED = [(group, stem) for group in BASE for stem, _ in entries(group)]


@pytest.mark.parametrize("group", list(GROUPS))
def test_every_registered_entry_has_its_yaml(group):
    registry = GROUPS[group]
    for name in registry.names():
        path = PACKAGE / "conf" / group / f"{name}.yaml"
        assert path.is_file(), f"{group}={name} is registered but {path.relative_to(PACKAGE.parent)} is missing"
        assert load(path).get("name") == name, f"{path.relative_to(PACKAGE.parent)} must say `name: {name}`"


@pytest.mark.parametrize("group", list(GROUPS))
def test_every_yaml_names_a_registered_entry_or_is_a_preset_of_one(group):
    registry = GROUPS[group]
    for path in yaml_files(group):
        content, where = load(path), path.relative_to(PACKAGE.parent)
        if not is_preset(path):
            assert content.get("name") == path.stem and path.stem in registry, \
                f"{where}: `name: {content.get('name')}` is not a registered {group} named like the file"
            continue
        chosen = selected_by_preset(content.get("defaults") or [], group)
        assert len(chosen) == 1 and chosen[0] in registry, \
            f"{where} is a global preset, but its defaults select {chosen or 'no'} {group} instead of one registered"
        assert "name" not in content.get(group, {}), f"{where} must not rename the {group} it selects"
        composed = compose([f"{group}={path.stem}"])[group]
        assert composed.name == chosen[0]


def test_method_presets_are_cp_truncation_and_dlrt_official():
    assert [p.stem for p in yaml_files("method") if is_preset(p)] == ["cp_truncation", "dlrt_official"]
    assert selected_by_preset(load(PACKAGE / "conf" / "method" / "cp_truncation.yaml")["defaults"], "method") == ["cp"]
    assert selected_by_preset(load(PACKAGE / "conf" / "method" / "dlrt_official.yaml")["defaults"], "method") == ["dlrt"]


@pytest.mark.parametrize("group,name", TYPED, ids=[f"{g}={n}" for g, n in TYPED])
def test_yaml_lists_exactly_its_schemas_own_options(group, name):
    """Every option of the entry's schema but the shared ones (which every entry gets from the
    entry defaults, tnbench.pipeline.configstore), and nothing the schema lacks."""
    yml = dict(entries(group))[name]
    schema = schema_of(group, name)
    own = [f.name for f in fields(schema)]
    shared = {f.name for f in fields(BASE[group])}
    missing = [k for k in own if k not in shared and k not in yml]
    unknown = [k for k in yml if k not in own and k != "defaults"]  # defaults: what the entry selects elsewhere
    where = f"tnbench/conf/{group}/{name}.yaml"
    assert not missing, f"{where} lacks {', '.join(missing)} of {schema.__name__}"
    assert not unknown, f"{where} sets {', '.join(unknown)}, which {schema.__name__} does not have"


@pytest.mark.parametrize("group,name", TYPED, ids=[f"{g}={n}" for g, n in TYPED])
def test_yaml_and_schema_give_the_same_defaults(group, name):
    """The YAML (what the CLI composes) and the schema (what a method or dataset built from a bare
    config section gets) agree (`name` is checked above; `paper` is the YAML's alone); a shared option whose default the schema changes must be in the
    YAML, or the entry defaults would silently win over the schema's."""
    yml = dict(entries(group))[name]
    schema = schema_of(group, name)
    defaults = OmegaConf.to_container(OmegaConf.structured(schema))
    shared = OmegaConf.to_container(OmegaConf.structured(BASE[group]))
    where = f"tnbench/conf/{group}/{name}.yaml"
    differ = {k: (yml[k], defaults[k]) for k in yml
              if k in defaults and k not in ("name", "paper") and yml[k] != defaults[k]}
    assert not differ, f"{where} and {schema.__name__} disagree (yaml, schema): {differ}"
    hidden = [k for k in shared if k != "name" and defaults[k] != shared[k] and k not in yml]
    assert not hidden, f"{schema.__name__} changes the default of {', '.join(hidden)}; {where} must set it"


@pytest.mark.parametrize("name", [stem for stem, _ in entries("model")])
def test_model_yaml_sets_only_options_its_builder_takes(name):
    import inspect

    yml = dict(entries("model"))[name]
    assert set(yml) <= {f.name for f in fields(ModelConfig)}
    params = inspect.signature(MODELS.get(name)).parameters
    unknown = set(yml.get("options") or {}) - set(params)
    assert not unknown, f"tnbench/conf/model/{name}.yaml: {MODELS.get(name).__name__} takes no {', '.join(unknown)}"


@pytest.mark.parametrize("name", [p.stem for p in yaml_files("method")])
def test_every_method_names_its_paper_in_one_form(name):
    """W&B tags and the records' `paper` group by it: `arXiv:<id>`, or a baseline saying what it is."""
    paper = compose([f"method={name}"]).method.paper
    assert paper and (re.fullmatch(r"arXiv:\d{4}\.\d{4,5}", paper) or paper.startswith("baseline: ")), paper


def _numeric(hint: Any) -> bool:
    import typing

    return any(t in (int, float) for t in (hint, *typing.get_args(hint)))


def _schemas() -> list[type]:
    """The root schema and every schema nested in it, and every registered entry's schema."""
    from dataclasses import is_dataclass

    from tnbench.config import Config, _hints, _section_class

    seen: list[type] = []
    todo = [Config, *(schema_of(g, n) for g, n in TYPED)]
    while todo:
        schema = todo.pop()
        if schema in seen or not is_dataclass(schema):
            continue
        seen.append(schema)
        todo += [c for c in map(_section_class, _hints(schema).values()) if c is not None]
    return seen


def test_every_numeric_option_declares_its_range():
    """A number with no declared range is a number nobody checks: `ranged(...)` on the field (or
    `checked(...)` with a rule of its own) is the one place a new option says what it takes."""
    from tnbench.config import _hints, declared

    schemas = _schemas()
    assert {s.__name__ for s in schemas} >= {"Config", "TrainerConfig", "PipelineConfig", "OptimizerConfig",
                                             "SVDConfig", "ADTNConfig", "SyntheticConfig"}
    undeclared = [f"{s.__name__}.{f.name}" for s in schemas for f in fields(s)
                  if _numeric(_hints(s)[f.name]) and not declared(f)]
    assert not undeclared, f"numeric options without a declared range: {', '.join(undeclared)}"


def test_declared_defaults_are_within_their_own_ranges():
    from dataclasses import MISSING

    from tnbench.config import check_fields, declared

    for schema in _schemas():
        defaults = {f.name: f.default if f.default is not MISSING else f.default_factory()
                    for f in fields(schema) if declared(f)}
        check_fields({k: v for k, v in defaults.items() if not str(v).startswith("${")}, schema, schema.__name__)
