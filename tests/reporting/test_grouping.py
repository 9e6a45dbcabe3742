"""The summary never pools different settings (tnbench.reporting.grouping): every config value
that differs between runs except the seed splits them; seeds aggregate to mean, std, n, CI."""
from __future__ import annotations

import copy
import math
import shutil

import pandas as pd
import pytest

from tnbench.reporting.comparison import build_report
from tnbench.reporting.grouping import add_settings, seed_stats, summarize
from tnbench.reporting.records import write_record

BASE = {
    "status": "ok", "error": None, "dataset": "fashion_mnist", "model": "lenet5", "method": "svd", "seed": 0,
    "acc_pretrain": 89.0, "acc_compressed": 80.0, "acc_retrained": 88.0, "recovery_epochs": 1,
    "compression_ratio": 4.0, "compression_rate": 80.0, "params_dense": 61706, "params_compressed": 15000,
    "flops_dense": 8e5, "flops_compressed": 3e5, "time_total_s": 10.0,
    "config": {"seed": 0, "run_id": "x", "paths": {"results_dir": "r"}, "logger": {"name": "none"},
               "dataset": {"name": "fashion_mnist", "train_subset": None},
               "pipeline": {"pretrain_epochs": 2, "retrain_epochs": 1}, "budget": {"ratio": 4.0, "tolerance": 0.05},
               "method": {"name": "svd", "rank": 8, "layers": "all_but_first_last"}},
}


def rec(seed: int = 0, acc: float = 88.0, subset: int | None = None, retrain: int = 1, **over) -> dict:
    r = copy.deepcopy(BASE)
    r["seed"] = r["config"]["seed"] = seed
    r["config"]["run_id"] = f"run-{seed}-{subset}-{retrain}-{acc}"
    r["config"]["paths"]["results_dir"] = f"somewhere-{seed}"  # cannot change a number: never splits
    r["acc_retrained"] = acc
    r["config"]["dataset"]["train_subset"] = subset
    r["config"]["pipeline"]["retrain_epochs"] = retrain
    r.update(over)
    return r


def frames(records: list[dict]):
    runs = pd.DataFrame({"_i": range(len(records)), **{k: [r.get(k) for r in records] for k in (
        "status", "dataset", "model", "method", "acc_pretrain", "acc_compressed", "acc_retrained", "recovery_epochs",
        "compression_ratio", "flops_dense", "flops_compressed", "time_total_s", "budget_reached")}})
    runs, keys, common = add_settings(runs, records)
    return summarize(runs, keys), keys, common


def test_runs_with_different_subsets_or_epochs_stay_apart():
    records = [rec(0, 88.0), rec(1, 87.0), rec(0, 70.0, subset=2000), rec(0, 89.0, retrain=3)]
    summary, keys, common = frames(records)
    assert keys == ["dataset.train_subset", "pipeline.retrain_epochs"]
    assert len(summary) == 3 and sorted(summary["seeds"]) == [1, 1, 2]
    small = summary[summary["dataset.train_subset"] == 2000]
    assert small["acc_retrained"].tolist() == [70.0]  # never averaged with the full-data runs
    full = summary[summary["dataset.train_subset"].isna() & (summary["pipeline.retrain_epochs"] == 1)]
    assert full["acc_retrained"].tolist() == [87.5]
    assert common["pipeline.pretrain_epochs"] == 2 and common["budget.ratio"] == 4.0
    assert "paths.results_dir" not in common and "seed" not in common and "paths.results_dir" not in keys


def test_three_seeds_aggregate_into_mean_std_count_and_interval():
    summary, _, _ = frames([rec(0, 88.0), rec(1, 87.0), rec(2, 89.0)])
    row = summary.iloc[0]
    assert row["seeds"] == 3 and row["acc_retrained"] == pytest.approx(88.0)
    assert row["acc_retrained_std"] == pytest.approx(1.0)
    assert row["acc_retrained_ci95"] == pytest.approx(4.302653 / math.sqrt(3), rel=1e-5)  # t(0.975, 2)
    two = seed_stats(pd.Series([1.0, 2.0]))
    assert two["n"] == 2 and math.isnan(two["ci95"]) and two["std"] == pytest.approx(math.sqrt(0.5))


def test_method_options_that_differ_are_the_setting_and_a_searched_knob_is_not():
    records = [rec(0, 88.0), rec(1, 86.0)]
    records[1]["config"]["method"]["rank"] = 4  # a budget chose different ranks: same setting
    for r, k in zip(records, (8, 4)):
        r["budget_knob"] = {"rank": k}
    summary, _, _ = frames(records)
    assert len(summary) == 1 and summary.iloc[0]["setting"] == "" and summary.iloc[0]["knob"] == "rank=4, rank=8"
    other = [rec(0), rec(1)]
    other[1]["config"]["method"]["rank"] = 4
    assert sorted(frames(other)[0]["setting"]) == ["rank=4", "rank=8"]


def test_runs_csv_carries_subset_epochs_and_budget(tmp_path):
    for i, r in enumerate([rec(0, budget_kind="ratio", budget_asked=4.0, budget_reached=4.1), rec(1, subset=2000)]):
        write_record(tmp_path / "runs" / f"r{i}", r)
    rep = build_report(tmp_path / "runs", tmp_path / "out", tmp_path / "no-ref", tmp_path / "no-bench")
    table = pd.read_csv(tmp_path / "out" / "runs.csv")
    for col in ("train_subset", "config_pretrain_epochs", "config_retrain_epochs", "budget_asked", "budget_reached"):
        assert col in table
    assert table["train_subset"].tolist()[1] == 2000 and table["budget_asked"].tolist()[0] == 4.0
    assert len(rep["summary"]) == 2
    page = rep["html"].read_text()
    assert "train subset" in page and "88.00" in page


def test_a_size_that_moved_in_retraining_is_reported_at_both_ends(tmp_path):
    """A rank-adaptive run asked for 4x is compressed to 4x and retrained to 27x: the summary and the
    page carry both ratios (budget_reached is the retrained one), the figure's hollow point sits at
    4x; a run whose size did not move shows no extra column."""
    from tnbench.reporting.tradeoff import compressed_ratio

    adaptive = rec(0, 40.0, method="dlrt", compression_ratio=27.0, budget_kind="ratio", budget_asked=4.0,
                   budget_reached=27.0, compression_at_compress={"compression_ratio": 4.02, "budget_reached": 4.02})
    adaptive["config"]["method"] = {"name": "dlrt", "tau": 0.1, "layers": "all_but_first_last"}
    for i, r in enumerate([adaptive, rec(1)]):
        write_record(tmp_path / "runs" / f"r{i}", r)
    rep = build_report(tmp_path / "runs", tmp_path / "out", tmp_path / "no-ref", tmp_path / "no-bench")
    s = rep["summary"].set_index("method")
    assert s.loc["dlrt", "compression_ratio_compressed"] == 4.02 and s.loc["dlrt", "budget_reached"] == 27.0
    assert s.loc["svd", "compression_ratio_compressed"] == s.loc["svd", "compression_ratio"] == 4.0
    assert compressed_ratio(rep["summary"]).tolist() == [4.02, 4.0]
    assert "ratio compressed" in rep["html"].read_text()
    shutil.rmtree(tmp_path / "runs" / "r0")
    rep = build_report(tmp_path / "runs", tmp_path / "out2", tmp_path / "no-ref", tmp_path / "no-bench")
    assert "ratio compressed" not in rep["html"].read_text()


def test_a_record_older_than_an_option_counts_as_its_default():
    """A record written before `pipeline.bn_recalibration` existed pools with records at its
    default (false) and stays apart from records with it on (tnbench.pipeline.identity.ADDED)."""
    old, same, other = rec(0, 88.0), rec(1, 86.0), rec(2, 60.0)
    same["config"]["pipeline"]["bn_recalibration"] = False
    other["config"]["pipeline"]["bn_recalibration"] = True
    summary, keys, _ = frames([old, same, other])
    assert keys == ["pipeline.bn_recalibration"]
    assert sorted(summary["seeds"]) == [1, 2]
    assert summary[summary["pipeline.bn_recalibration"] == False]["acc_retrained"].tolist() == [87.0]  # noqa: E712


def test_options_the_method_does_not_read_never_split_runs():
    """What the run key leaves out does not split the summary either: dlrt's budget_knob without a
    budget (a record from before the option existed pools with one that has it), svd's rank when
    energy is set."""
    def dlrt(seed, **method):
        r = rec(seed, method="dlrt")
        r["config"]["budget"] = {"ratio": None, "tolerance": 0.05}
        r["config"]["method"] = {"name": "dlrt", "tau": 0.1, **method}
        return r

    summary, keys, _ = frames([dlrt(0), dlrt(1, budget_knob="rank_cap"), dlrt(2, budget_knob="tau")])
    assert len(summary) == 1 and summary["seeds"].tolist() == [3]
    energy = [rec(0), rec(1)]
    for r, rank in zip(energy, (4, 16)):
        r["config"]["method"].update(energy=0.9, rank=rank)
    summary, _, _ = frames(energy)
    assert len(summary) == 1 and summary["seeds"].tolist() == [2]
