"""The published numbers (results/reference/*.csv) against their schema (tnbench.reporting.reference)."""
from __future__ import annotations

import pandas as pd
import pytest

from tests.conftest import REPO
from tnbench.reporting.reference import REQUIRED_COLUMNS, check_reference, load_reference

TABLES = sorted((REPO / "results" / "reference").glob("*.csv"))


@pytest.mark.parametrize("path", TABLES, ids=lambda p: p.name)
def test_every_reference_table_follows_the_schema(path):
    table = pd.read_csv(path, dtype=str, keep_default_na=False)
    assert check_reference(table, path.name) == []
    assert set(REQUIRED_COLUMNS) <= set(table.columns)


def test_the_schema_check_finds_problems():
    table = pd.read_csv(REPO / "results" / "reference" / "dlrt_2205.13571.csv", dtype=str, keep_default_na=False)
    bad = table.copy()
    bad.loc[1, "count_rule"] = "n/a"  # a compression figure needs its rule
    bad.loc[2, "ranks"] = "10,23"
    bad.loc[3, "accuracy"] = "about 98"
    problems = check_reference(bad, "x.csv")
    assert any("row 3: count_rule" in p for p in problems)
    assert any("row 4: ranks" in p for p in problems)
    assert any("row 5: accuracy" in p for p in problems)
    assert check_reference(table.drop(columns="count_rule"), "x.csv") == ["x.csv: no column count_rule"]


def test_all_tables_load():
    ref = load_reference(REPO / "results" / "reference")
    assert set(ref["file"]) == {p.name for p in TABLES} and (ref["count_rule"] != "").all()
