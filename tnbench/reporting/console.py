"""What a person sees in the terminal: stage banners, the end-of-run table, tables of runs.
Columns and headers come from the record schema (tnbench.reporting.schema)."""
from __future__ import annotations

import os
import sys
from typing import Any

import pandas as pd
from rich.console import Console
from rich.table import Table

from tnbench.reporting.schema import BY_NAME, RUN, TABLE, columns, row, view

# Piped output (make, CI logs, `| tee`) gets 140 columns instead of rich's 80, so the results
# table stays readable in a log; a terminal (or COLUMNS) keeps its own width.
console = Console(width=None if sys.stdout.isatty() or "COLUMNS" in os.environ else 140)

SHARED = ("status", "dataset", "model", "method", "seed")  # said once in the title when all rows agree


def warn(message: str) -> None:
    """Skipped input, one unwrapped line on stderr."""
    print(f"warning: {message}", file=sys.stderr)


def stage_banner(name: str) -> None:
    console.rule(f"[bold]{name}")


def fmt(v: Any, digits: int | None = None) -> str:
    if v is None or (isinstance(v, float) and pd.isna(v)):
        return "-"
    if isinstance(v, dict):
        return " ".join(f"{k}:{fmt(x)}" for k, x in v.items())
    if isinstance(v, (list, tuple)):
        return "/".join(fmt(x) for x in v)
    if isinstance(v, float):
        if digits is not None and abs(v) < 1e6:
            return f"{v:.{digits}f}"
        return f"{v:.4g}" if abs(v) < 1e4 else f"{v:.3e}"
    if isinstance(v, int) and not isinstance(v, bool) and abs(v) >= 10**6:
        return f"{v:.3e}"
    return str(v)


def records_frame(records: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per record, the schema's table columns."""
    cols = columns(TABLE)
    return pd.DataFrame([row(rec) for rec in records], columns=cols)


def _header(col: str) -> str:
    f = BY_NAME.get(col)
    return f.title if f is not None else col


def print_table(df: pd.DataFrame, title: str, columns: list[str] | None = None) -> None:
    cols = columns or [c for c in df.columns if c not in ("run_dir", "error") and df[c].notna().any()]
    shared = [c for c in cols if c in SHARED and len(df) > 0 and df[c].astype(str).nunique() == 1]
    if shared:
        title += " (" + ", ".join(f"{c} {fmt(df[c].iloc[0])}" for c in shared) + ")"
        cols = [c for c in cols if c not in shared]
    table = Table(title=title, show_lines=False)
    for c in cols:
        table.add_column(_header(c), justify="right" if pd.api.types.is_numeric_dtype(df[c]) else "left",
                         overflow="fold")
    for _, r in df.iterrows():
        table.add_row(*(fmt(r[c], getattr(BY_NAME.get(c), "digits", None)) for c in cols))
    console.print(table)


def print_summary(rec: dict[str, Any], run_dir: str) -> None:
    """One run as a two-column table: metric, value (the schema's run view)."""
    rec = {**rec, "run_dir": run_dir}
    table = Table(title=f"tnbench run: {rec['status']}")
    table.add_column("metric")
    table.add_column("value", justify="right", overflow="fold")
    for f in view(RUN):
        table.add_row(f.name, fmt(f.value(rec), f.digits))
    console.print(table)
