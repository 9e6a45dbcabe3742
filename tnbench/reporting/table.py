"""`python -m tnbench.results [DIR]`: every run record under DIR as one pandas table.

Prints it with rich and, with --csv/--markdown, writes it. Records that cannot be read are
listed and skipped, never fatal.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from tnbench.reporting.console import console, print_table, records_frame
from tnbench.reporting.records import read_records
from tnbench.reporting.schema import BRIEF, columns


def load_results(root: Path) -> pd.DataFrame:
    records, bad = read_records(root)
    for path, reason in bad:
        console.print(f"[yellow]skipped unreadable record {path}: {reason}")
    df = records_frame(records)
    return df.sort_values(["dataset", "model", "method", "setting", "seed"], na_position="last", kind="stable").reset_index(drop=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tnbench.results", description=__doc__.splitlines()[0])
    ap.add_argument("root", nargs="?", default="results/runs", help="directory searched for record.json files")
    ap.add_argument("--csv", type=Path, help="write the table as CSV")
    ap.add_argument("--markdown", type=Path, help="write the table as markdown")
    ap.add_argument("--all-columns", action="store_true", help="print every column")
    args = ap.parse_args(argv)
    root = Path(args.root)
    if not root.is_dir():
        print(f"error: results directory {root} does not exist", file=sys.stderr)
        return 2
    df = load_results(root)
    if df.empty:
        console.print(f"no records under {root}")
        return 0
    print_table(df, f"{len(df)} runs under {root}", None if args.all_columns else columns(BRIEF))
    if args.csv:
        args.csv.parent.mkdir(parents=True, exist_ok=True)
        df.to_csv(args.csv, index=False)
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(df.drop(columns=["run_dir"]).to_markdown(index=False, floatfmt=".4g") + "\n")
    return 0
