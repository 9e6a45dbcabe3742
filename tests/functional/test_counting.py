"""Counting rules (tnbench.functional.counting): ours (stored weights) and the DLRT table's."""
from __future__ import annotations

import pandas as pd
import pytest

from tests.conftest import REPO
from tnbench.functional.counting import (
    DLRT,
    STORED,
    dlrt_params,
    paper_count,
    rate,
    stored_matrix_params,
    stored_rate,
)

# the DLRT papers' LeNet-5: conv1 1->20 5x5, conv2 20->50 5x5, fc1 800->500 factorized; fc2 500->10 dense
LENET5_DLRT = {"features.0": (20, 1, 5, 5), "features.3": (50, 20, 5, 5), "classifier.0": (500, 800)}
TOTAL_WEIGHTS = 430_500
LAST_LAYER = 5_000


def dlrt_tables() -> list:
    paths = sorted((REPO / "results" / "reference").glob("dlrt_*.csv"))
    assert paths, "no results/reference/dlrt_*.csv"
    return paths


def test_published_examples():
    assert dlrt_params(zip(LENET5_DLRT.values(), [9, 16, 28]), LAST_LAYER) == 20_033
    assert dlrt_params(zip(LENET5_DLRT.values(), [10, 23, 62]), LAST_LAYER) == 37_445
    assert round(rate(20_033, TOTAL_WEIGHTS), 1) == 95.3
    # our count of the same ranks: U, S, V stored, over the factorized layers
    assert stored_matrix_params((50, 20, 5, 5), 16) == 16 * (50 + 500) + 16 ** 2
    assert round(stored_rate(zip(LENET5_DLRT.values(), [9, 16, 28])), 1) == 89.0


@pytest.mark.parametrize("path", dlrt_tables(), ids=lambda p: p.name)
def test_dlrt_formula_reproduces_every_published_count(path):
    table = pd.read_csv(path, dtype=str, keep_default_na=False)
    checked = 0
    for _, row in table.iterrows():
        published = int(row["parameters"])
        if not row["ranks"]:  # the dense row: every weight
            assert published == TOTAL_WEIGHTS and float(row["compression_rate"]) == 0.0
            continue
        assert row["count_rule"] == DLRT
        ranks = [int(r) for r in row["ranks"].split(";")]
        layers = list(zip(LENET5_DLRT.values(), ranks))
        assert dlrt_params(layers, LAST_LAYER) == published, row["setting"]
        assert round(rate(published, TOTAL_WEIGHTS), 1) == float(row["compression_rate"]), row["setting"]
        # the column recomputed our way from the same ranks
        assert round(stored_rate(layers), 1) == float(row["compression_rate_stored"]), row["setting"]
        checked += 1
    assert checked == 6


def layer_reports(ranks: list[int]) -> list[dict]:
    out = []
    for (name, shape), r in zip(LENET5_DLRT.items(), ranks):
        dense = 1
        for n in shape:
            dense *= n
        out.append({"name": name, "shape": list(shape), "ranks": [r], "weight_params_dense": dense,
                    "weight_params_compressed": stored_matrix_params(shape, r), "compressed": True})
    out.append({"name": "classifier.2", "shape": [10, 500], "ranks": [], "weight_params_dense": 5000,
                "weight_params_compressed": 5000, "compressed": False})
    return out


def test_paper_count_of_a_record():
    layers = layer_reports([9, 16, 28])
    dlrt = paper_count(DLRT, layers, TOTAL_WEIGHTS)
    assert dlrt["params_paper"] == 20_033 and round(dlrt["compression_rate_paper"], 1) == 95.3
    stored = paper_count(STORED, layers, TOTAL_WEIGHTS)
    assert round(stored["compression_rate_paper"], 1) == 89.0 and stored["count_rule"] == STORED
    with pytest.raises(ValueError, match="count rule"):
        paper_count("mine", layers, TOTAL_WEIGHTS)
