"""Run identity (tnbench.pipeline.identity): the run key and the pretrain-cache key hash the whole
config minus the documented lists, and a new option cannot be left out without a decision."""
from __future__ import annotations

import copy
from typing import Any

import pytest
from omegaconf import DictConfig, ListConfig, OmegaConf, open_dict

from tests.conftest import PACKAGE, compose, run_in_process
from tnbench.methods import METHODS
from tnbench.pipeline.identity import ADDED, NOT_PRETRAIN, NOT_RESULTS, pretrain_key, run_key


def leaves(node: Any, prefix: str = "") -> list[str]:
    """Dotted paths of every leaf (an empty section or list counts as one)."""
    if isinstance(node, DictConfig) and len(node) > 0:
        return [p for k in node for p in leaves(node._get_node(k), f"{prefix}{k}.")]
    return [prefix.rstrip(".")]


def changed(value: Any) -> Any:
    """Another valid-looking value of the same kind."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    if isinstance(value, float):
        return value * 2 + 0.5
    if isinstance(value, str):
        return value + "x"
    if isinstance(value, (list, ListConfig)):
        return [*value, *(value[:1] or ["x"])]
    if isinstance(value, (dict, DictConfig)):
        return {**value, "x": 1}
    return 1  # None


def with_leaf(cfg: DictConfig, path: str) -> DictConfig:
    out = copy.deepcopy(cfg)
    node = OmegaConf.select(out, path, throw_on_missing=False)
    if path == "run_id":
        out.run_id = "other"
    else:
        OmegaConf.update(out, path, changed(node), force_add=True, merge=False)
    return out


def listed(path: str, *listings: dict[str, str]) -> bool:
    return any(path == k or path.startswith(k + ".") for listing in listings for k in listing)


def method_ignored(cfg: DictConfig, path: str) -> bool:
    if not path.startswith("method."):
        return False
    from tnbench.config import budget_kind

    method = METHODS.resolve(cfg.method)
    unread = set(method.ignored(cfg.method)) | (set(method.budget_options) if budget_kind(cfg.budget) is None else set())
    return path.split(".")[1] in unread


def configs() -> list[list[str]]:
    """The default config and one per method and dataset (their own sections)."""
    methods = [[f"method={p.stem}"] for p in sorted((PACKAGE / "conf" / "method").glob("*.yaml"))]
    datasets = [[f"dataset={p.stem}"] for p in sorted((PACKAGE / "conf" / "dataset").glob("*.yaml"))]
    return [[], *methods, *datasets]


@pytest.mark.parametrize("overrides", configs(), ids=lambda o: " ".join(o) or "defaults")
def test_every_leaf_changes_the_keys_or_is_listed(overrides):
    """The schema walk: changing any leaf changes the run key unless the leaf is on NOT_RESULTS
    or its method ignores it, and changes the pretrain key unless it is on NOT_RESULTS or
    NOT_PRETRAIN; and a listed leaf changes neither (the lists are what is left out)."""
    cfg = compose(overrides)
    base_run, base_pre = run_key(cfg), pretrain_key(cfg)
    unlisted_run, unlisted_pre, listed_but_hashed = [], [], []
    section = overrides[0].split("=")[0] if overrides else None  # a method's or dataset's own options
    for path in leaves(cfg[section], f"{section}.") if section else leaves(cfg):
        other = with_leaf(cfg, path)
        run_free = listed(path, NOT_RESULTS) or method_ignored(cfg, path)
        pre_free = run_free or listed(path, NOT_PRETRAIN)
        if (run_key(other) == base_run) != run_free:
            (listed_but_hashed if run_free else unlisted_run).append(path)
        if (pretrain_key(other) == base_pre) != pre_free:
            (listed_but_hashed if pre_free else unlisted_pre).append(path)
    assert not unlisted_run, f"changing {unlisted_run} leaves the run key alone: hash them or list them"
    assert not unlisted_pre, f"changing {unlisted_pre} leaves the pretrain key alone: hash them or list them"
    assert not listed_but_hashed, f"{listed_but_hashed} are listed as not changing results, yet change a key"


@pytest.mark.parametrize("setting", ["trainer.limit_train_batches=0.25", "trainer.gradient_clip_val=1.0",
                                     "trainer.deterministic=true"])
def test_settings_that_change_the_dense_model_change_the_pretrain_key(setting):
    assert pretrain_key(compose([setting])) != pretrain_key(compose([]))


@pytest.mark.parametrize("setting", ["trainer.gradient_clip_val=1.0", "trainer.limit_val_batches=2",
                                     "trainer.channels_last=false"])
def test_settings_that_change_results_change_the_run_key(setting):
    assert compose([setting]).run_id != compose([]).run_id


def test_rerun_and_display_settings_are_the_same_run():
    base = compose([]).run_id
    for setting in ("pipeline.rerun=true", "trainer.progress=false", "logger=csv", "paths.results_dir=/elsewhere"):
        assert compose([setting]).run_id == base, setting


def test_method_none_ignores_rank_and_a_sweep_over_it_is_one_run():
    none4, none8 = compose(["method=none", "method.rank=4"]), compose(["method=none", "method.rank=8"])
    assert none4.run_id == none8.run_id == compose(["method=none"]).run_id
    assert compose(["method.rank=4"]).run_id != compose(["method.rank=8"]).run_id  # svd reads it
    from tnbench.pipeline.jobs import check_command

    plan = check_command(["-m", "method=none,svd", "method.rank=4,8", "dataset=synthetic", "logger=none"])
    assert plan.problem is None and len(plan.jobs) == 4
    assert len({run_dir for _, run_dir in plan.jobs}) == 3


def test_value_dependent_ignores():
    """SVD with `energy` set does not read `rank`; svd_truncation's rank wins over norm_loss."""
    energy = ["method.energy=0.9"]
    assert compose([*energy, "method.rank=4"]).run_id == compose([*energy, "method.rank=8"]).run_id
    trunc = ["method=svd_truncation", "method.rank=2"]
    assert compose([*trunc, "method.norm_loss=0.1"]).run_id == compose([*trunc, "method.norm_loss=0.5"]).run_id
    assert compose(["method=svd_truncation", "method.norm_loss=0.1"]).run_id != \
        compose(["method=svd_truncation", "method.norm_loss=0.5"]).run_id


def test_typed_values_are_one_run():
    """`1` and `1.0` for a float option are the same setting."""
    assert compose(["method.energy=1"]).run_id == compose(["method.energy=1.0"]).run_id


def test_pretrain_on_a_fraction_of_the_data_is_not_reused_by_a_full_run(tmp_path):
    """The reported defect: a dense model trained on a quarter of the batches was handed to a
    later full run from the cache."""
    part = run_in_process(tmp_path, "logger=none", "trainer.limit_train_batches=0.25", name="part")
    full = run_in_process(tmp_path, "logger=none", name="full")
    assert part["pretrain_cache_hit"] is False and full["pretrain_cache_hit"] is False
    assert part["pretrain_checkpoint"] != full["pretrain_checkpoint"]
    again = run_in_process(tmp_path, "logger=none", "method.rank=2", name="again")
    assert again["pretrain_cache_hit"] is True and again["pretrain_checkpoint"] == full["pretrain_checkpoint"]


def test_readme_documents_every_listed_setting():
    readme = (PACKAGE.parent / "README.md").read_text()
    section = readme[readme.index("**Run identity.**"):readme.index("The **pretrain cache**")]
    missing = [k for listing in (NOT_RESULTS, NOT_PRETRAIN) for k in listing
               if f"`{k}`" not in section and f"`{k}.*`" not in section]
    assert not missing, f"README's Run identity paragraph does not list {missing}"


# The default job's keys, pinned: a new option (or a changed default of the default job) renames
# every run and cache entry unless it is listed in ADDED with the default that does what runs did
# before it. Update these only with such a decision (and a KEY_VERSION bump where the rule changes).
DEFAULT_RUN_KEY, DEFAULT_PRETRAIN_KEY = "9105157b0e", "dd3089f6ba6b388277b5"
DLRT_RUN_KEY = "45fac929a9"  # method=dlrt, unchanged by its budget-only option budget_knob


def test_the_default_jobs_keys_are_pinned():
    cfg = compose([])
    assert (run_key(cfg), pretrain_key(cfg)) == (DEFAULT_RUN_KEY, DEFAULT_PRETRAIN_KEY)
    assert run_key(compose(["method=dlrt"])) == DLRT_RUN_KEY


def test_a_budget_only_option_is_hashed_only_under_a_budget():
    """dlrt's budget_knob (which knob a budget drives) is read only under budget.*."""
    plain, tau = compose(["method=dlrt"]), compose(["method=dlrt", "method.budget_knob=tau"])
    assert run_key(plain) == run_key(tau)
    budget = ["method=dlrt", "budget.ratio=4"]
    assert run_key(compose(budget)) != run_key(compose([*budget, "method.budget_knob=tau"]))


@pytest.mark.parametrize("dotted", sorted(ADDED))
def test_an_added_option_at_its_default_keeps_the_keys_it_had_before_it_existed(dotted):
    default = ADDED[dotted][0]
    cfg = compose([])
    assert OmegaConf.select(cfg, dotted) == default  # the listed default is the schema's
    before = OmegaConf.create(OmegaConf.to_container(cfg))  # as it was before the option was added
    *parents, leaf = dotted.split(".")
    with open_dict(before):
        del OmegaConf.select(before, ".".join(parents))[leaf]
    assert (run_key(before), pretrain_key(before)) == (run_key(cfg), pretrain_key(cfg))
    other = compose([f"{dotted}={changed(default)}"])
    assert run_key(other) != run_key(cfg) and pretrain_key(other) != pretrain_key(cfg)
