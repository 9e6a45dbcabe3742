"""What a person sees: stage banners, the end-of-run table, and the table of many runs."""
from __future__ import annotations

import os
import sys
from typing import Any

import pandas as pd
from rich.console import Console
from rich.table import Table

# Piped output (make, CI logs, `| tee`) gets 140 columns instead of rich's 80, so the results
# table stays readable in a log; a terminal (or COLUMNS) keeps its own width.
console = Console(width=None if sys.stdout.isatty() or "COLUMNS" in os.environ else 140)

# Columns of the results table, in reading order: what was run, what it cost, what it kept.
COLUMNS = ["status", "dataset", "model", "method", "setting", "seed", "acc_pretrain", "acc_compressed",
           "acc_retrained", "acc_retrained_best", "recovery_epochs", "compression_ratio",
           "compression_rate", "norm_loss_mean", "flops_dense", "flops_compressed", "params_dense", "params_compressed",
           "pretrain_cache_hit", "time_pretrain_s", "time_compress_s", "time_retrain_s", "error", "run_dir"]


def stage_banner(name: str) -> None:
    console.rule(f"[bold]{name}")


def _fmt(v: Any) -> str:
    if v is None or (isinstance(v, float) and pd.isna(v)):
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}" if abs(v) < 1e4 else f"{v:.3e}"
    if isinstance(v, int) and abs(v) >= 10**6:
        return f"{v:.3e}"
    return str(v)


def method_setting(rec: dict[str, Any]) -> str:
    """The method's own settings (beyond name, layers, paper) as `k=v`, so rows are told apart."""
    m = (rec.get("config") or {}).get("method") or {}
    skip = {"name", "layers", "paper"}
    return " ".join(f"{k}={v}" for k, v in m.items() if k not in skip and v is not None)


def records_frame(records: list[dict[str, Any]]) -> pd.DataFrame:
    rows = []
    for rec in records:
        row = {k: rec.get(k) for k in COLUMNS}
        row["setting"] = method_setting(rec)
        row["norm_loss_mean"] = (rec.get("norm_loss") or {}).get("mean")
        rows.append(row)
    return pd.DataFrame(rows, columns=COLUMNS)


# Short headers for the printed table (CSV and markdown keep the record's names).
HEADERS = {"acc_pretrain": "acc dense", "acc_compressed": "acc compressed", "acc_retrained": "acc retrained",
           "acc_retrained_best": "acc best", "recovery_epochs": "recovery ep", "compression_ratio": "ratio",
           "compression_rate": "rate %", "pretrain_cache_hit": "cached", "norm_loss_mean": "norm loss",
           "compression_band": "band"}
SHARED = ("status", "dataset", "model", "method", "seed")  # said once in the title when all rows agree


def print_table(df: pd.DataFrame, title: str, columns: list[str] | None = None) -> None:
    cols = columns or [c for c in df.columns if c not in ("run_dir", "error") and df[c].notna().any()]
    shared = [c for c in cols if c in SHARED and len(df) > 0 and df[c].astype(str).nunique() == 1]
    if shared:
        title += " (" + ", ".join(f"{c} {_fmt(df[c].iloc[0])}" for c in shared) + ")"
        cols = [c for c in cols if c not in shared]
    table = Table(title=title, show_lines=False)
    for c in cols:
        table.add_column(HEADERS.get(c, c), justify="right" if pd.api.types.is_numeric_dtype(df[c]) else "left",
                         overflow="fold")
    for _, row in df.iterrows():
        table.add_row(*(_fmt(row[c]) for c in cols))
    console.print(table)


SUMMARY_ROWS = ["dataset", "model", "method", "setting", "acc_pretrain", "acc_compressed", "acc_retrained",
                "acc_retrained_best", "recovery_epochs", "compression_ratio", "compression_rate",
                "norm_loss_mean", "params_dense", "params_compressed", "flops_dense", "flops_compressed",
                "pretrain_cache_hit", "time_pretrain_s", "time_compress_s", "time_retrain_s", "run_dir"]


def print_summary(rec: dict[str, Any], run_dir: str) -> None:
    """One run as a two-column table: metric, value."""
    row = records_frame([{**rec, "run_dir": run_dir}]).iloc[0]
    table = Table(title=f"tnbench run: {rec['status']}")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key in SUMMARY_ROWS:
        table.add_row(key, _fmt(row[key]))
    console.print(table)
