"""Printed tables (tnbench.reporting.console)."""
from __future__ import annotations


def test_results_table_says_shared_values_once_in_the_title():
    from tnbench.reporting.console import console, print_table, records_frame

    recs = [{"status": "ok", "dataset": "synthetic", "model": "lenet5", "method": m, "seed": 0, "acc_retrained": a,
             "config": {"method": {"name": m, "rank": 4}}} for m, a in (("svd", 80.5), ("cp", 70.25))]
    df = records_frame(recs)
    with console.capture() as cap:
        print_table(df, "2 runs", ["status", "dataset", "model", "method", "seed", "acc_retrained"])
    out = cap.get()
    title, table = out.split("┏", 1)
    assert " ".join(title.split()) == "2 runs (status ok, dataset synthetic, model lenet5, seed 0)"
    header = table.split("┡", 1)[0]
    assert "method" in header and "acc retrained" in header and "dataset" not in header
    assert "80.5" in table and "70.25" in table and "svd" in table and "cp" in table
