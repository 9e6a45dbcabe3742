"""The report as files: CSV/markdown tables and report.html (static, no JavaScript, nothing
fetched; the stylesheet is report.css beside this module)."""
from __future__ import annotations

import datetime as dt
import html
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tnbench.reporting import plots

PLOTS_DIR = "plots"

def fmt_cell(v: Any) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)) or (not isinstance(v, (list, dict)) and pd.isna(v)):
        return "-"
    if isinstance(v, (bool, np.bool_)):
        return str(bool(v))
    if isinstance(v, (float, np.floating)):
        v = float(v)
        if v.is_integer() and abs(v) < 1e6:
            return str(int(v))
        return f"{v:.4g}" if abs(v) < 1e6 else f"{v:.3e}"
    if isinstance(v, (int, np.integer)) and abs(int(v)) >= 10**6:
        return f"{int(v):.3e}"
    return str(v)


def as_text(df: pd.DataFrame) -> pd.DataFrame:
    return df.astype(object).apply(lambda col: col.map(fmt_cell)) if not df.empty else df


def write_tables(df: pd.DataFrame, out: Path, name: str) -> None:
    df.to_csv(out / f"{name}.csv", index=False)
    # disable_numparse: tabulate would read "2305.06058" (an arXiv id) as a number and round it
    text = as_text(df).to_markdown(index=False, disable_numparse=True) if not df.empty else "(no rows)"
    (out / f"{name}.md").write_text(text + "\n")


CSS = (Path(__file__).with_name("report.css")).read_text()


def html_table(df: pd.DataFrame, empty: str) -> str:
    """A plain HTML table; numeric cells right-aligned (class `num`), text left-aligned."""
    if df.empty:
        return f'<p class="note">{html.escape(empty)}</p>'
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in df.columns)
    classes = [re.sub(r"\W", "_", f"col-{c}") for c in df.columns]
    rows = []
    for values in df.itertuples(index=False):
        cells = []
        for cls, v in zip(classes, values):
            numeric = isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_))
            cells.append(f'<td class="{cls}{" num" if numeric else ""}">{html.escape(fmt_cell(v))}</td>')
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return (f'<div class="table"><table><thead><tr>{head}</tr></thead><tbody>' + "\n".join(rows) +
            "</tbody></table></div>")


def write_html(out: Path, *, runs_root: Path, runs: pd.DataFrame, columns: list[str], summary: pd.DataFrame,
               comparison: pd.DataFrame,
               figures: list[plots.Figure], bad: list[tuple[Path, str]]) -> Path:
    esc = html.escape
    ok = runs[runs["status"] == "ok"]
    failed = runs[runs["status"] != "ok"]
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        "<title>tnbench report</title>", f"<style>{CSS}</style></head><body>",
        "<h1>tnbench: compression methods compared</h1>",
        f"<p>{len(runs)} records under <code>{esc(str(runs_root))}</code> ({len(ok)} ok, {len(failed)} not ok, "
        f"{len(bad)} unreadable); generated {esc(dt.datetime.now().isoformat(timespec='seconds'))}. "
        "Accuracies are test accuracy in percent; compression ratio = dense / compressed parameters of the whole "
        "model, compression rate = % of weights removed in the compressed layers.</p>",
        "<h2>Contents</h2><ul><li><a href=\"#summary\">Summary</a></li><li><a href=\"#reference\">Published vs "
        "measured</a></li><li><a href=\"#figures\">Figures</a></li><li><a href=\"#runs\">All runs</a></li></ul>",
    ]
    if bad:
        items = "".join(f"<li><code>{esc(str(p))}</code>: {esc(r)}</li>" for p, r in bad)
        parts.append(f'<div class="note">Skipped unreadable records:<ul>{items}</ul></div>')
    parts += ['<h2 id="summary">Summary: best accuracy per compression band</h2>',
              "<p>Per dataset, model and method, and per band of the compression ratio (log2 bins), the setting with "
              "the best mean accuracy after retraining over its seeds. <code>recovered</code>: seeds that got back to "
              "the pretrained accuracy; <code>flops_ratio</code>: dense / compressed FLOPs per example at the evaluation batch size.</p>",
              html_table(summary, "no ok runs to summarize"),
              '<h2 id="reference">Published numbers beside measured ones</h2>',
              "<p>Each published number of <code>results/reference/</code> with the matching runs' value and the "
              "difference (measured - published). <em>not run</em>: no ok run matches its model, dataset, method "
              "and setting.</p>"]
    if comparison.empty:
        parts.append(html_table(comparison, "no reference tables found"))
    else:
        measured = comparison["status"].astype(str).str.startswith("measured")
        parts.append(html_table(comparison[measured], "no published number has a matching ok run yet"))
        if (~measured).any():
            parts.append(f"<details><summary>{int((~measured).sum())} published numbers without a measured "
                         "counterpart (not run, not measured, or settings only)</summary>"
                         + html_table(comparison[~measured], "") + "</details>")
    parts.append('<h2 id="figures">Figures</h2>')
    section = None
    for f in figures:
        if f.section != section:
            parts.append(f"<h3>{esc(f.section)}</h3>")
            section = f.section
        if f.path:
            caption = esc(f.title) + (f" ({esc(f.note)})" if f.note else "")
            parts.append(f'<figure><img src="{esc(PLOTS_DIR + "/" + f.path)}" alt="{esc(f.section)}: {esc(f.title)}">'
                         f"<figcaption>{caption}</figcaption></figure>")
        else:
            parts.append(f'<p class="note">Skipped: {esc(f.note)}</p>')
    parts += ['<h2 id="runs">All runs</h2>',
              html_table(runs[[c for c in columns if c in runs and c not in ("error", "run_dir")]], "no records")]
    if not failed.empty:
        parts += ["<h3>Runs that did not finish ok</h3>",
                  html_table(failed[["status", "dataset", "model", "method", "setting", "seed", "error", "run_dir"]], "")]
    parts.append("</body></html>")
    path = out / "report.html"
    path.write_text("\n".join(parts) + "\n")
    return path
