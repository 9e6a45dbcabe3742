"""The report as files: CSV/markdown tables and report.html (static, no JavaScript, nothing
fetched, self-contained: the stylesheet, report.css beside this module, is inlined and the
figures are embedded as PNG data, so the page can be sent as one file; each figure's PDF is
beside its PNG in plots/)."""
from __future__ import annotations

import base64
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


# headers of the report's own columns (the record's fields take theirs from the schema)
HEADERS = {
    "experiment": "experiment", "paper": "paper", "compression_band": "ratio band", "ranks": "ranks",
    "train_subset": "train subset", "test_subset": "test subset", "config_pretrain_epochs": "pretrain ep",
    "config_retrain_epochs": "retrain ep", "knob": "knob (budget)", "seeds": "n", "setting": "setting",
    "acc_retrained_ci95": "95% CI", "recovered": "recovered", "flops_ratio": "FLOPs ratio",
    "time_total_s": "time (s)", "acc_retrained_std": "std", "acc_compressed_std": "std",
    "compression_ratio_compressed": "ratio compressed",
}
DIGITS = {"acc_retrained_ci95": 2, "acc_retrained_std": 2, "acc_compressed_std": 2, "flops_ratio": 2,
          "time_total_s": 0, "budget_reached": 2, "compression_ratio": 2, "compression_ratio_compressed": 2,
          "recovery_epochs": 1}
MAX_TEXT = 36  # longer text is shortened in the page; the whole of it shows on hover


def header(col: str) -> str:
    from tnbench.reporting.grouping import label
    from tnbench.reporting.schema import BY_NAME

    if col in HEADERS:
        return HEADERS[col]
    f = BY_NAME.get(col)
    if f is not None:
        return f.title + (f" ({f.unit})" if f.unit and f.unit not in f.title else "")
    return label(col)


def rounded(col: str, v: Any) -> str:
    """A cell's text, rounded to the digits its measurement supports."""
    from tnbench.reporting.schema import BY_NAME

    digits = DIGITS.get(col, BY_NAME[col].digits if col in BY_NAME else None)
    if digits is not None and isinstance(v, (float, np.floating)) and math.isfinite(v):
        return f"{float(v):,.{digits}f}"
    if isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_)) and abs(int(v)) >= 10_000:
        return f"{int(v):,}"
    if isinstance(v, (float, np.floating)) and math.isfinite(v) and float(v).is_integer() and abs(v) >= 10_000:
        return f"{int(v):,}"
    return fmt_cell(v)


def html_table(df: pd.DataFrame, empty: str, titles: dict[str, str] | None = None) -> str:
    """An HTML table with human headers (`titles` or `header`), numbers rounded and right-aligned
    (class `num`), text longer than MAX_TEXT shortened with the whole of it on hover."""
    if df.empty:
        return f'<p class="note">{html.escape(empty)}</p>'
    titles = titles or {}
    head = "".join(f'<th title="{html.escape(str(c))}">{html.escape(titles.get(c) or header(str(c)))}</th>'
                   for c in df.columns)
    classes = [re.sub(r"\W", "_", f"col-{c}") for c in df.columns]
    rows = []
    for values in df.itertuples(index=False):
        cells = []
        for col, cls, v in zip(df.columns, classes, values):
            numeric = isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_))
            text = rounded(str(col), v)
            hover = ""
            if len(text) > MAX_TEXT:
                hover, text = f' title="{html.escape(text)}"', text[:MAX_TEXT - 1] + "\u2026"
            cells.append(f'<td class="{cls}{" num" if numeric else ""}"{hover}>{html.escape(text)}</td>')
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return (f'<div class="table"><table><thead><tr>{head}</tr></thead><tbody>' + "\n".join(rows) +
            "</tbody></table></div>")


def summary_view(summary: pd.DataFrame) -> pd.DataFrame:
    """The summary as the page shows it: accuracy as mean ± std, the CI beside it."""
    if summary.empty:
        return summary
    view = summary.copy()

    def pm(mean: Any, std: Any) -> str:
        if pd.isna(mean):
            return "-"
        return f"{mean:.2f}" + (f" \u00b1 {std:.2f}" if pd.notna(std) else "")

    view["acc_retrained"] = [pm(m, s) for m, s in zip(summary["acc_retrained"], summary["acc_retrained_std"])]
    view["acc_compressed"] = [pm(m, s) for m, s in zip(summary["acc_compressed"], summary["acc_compressed_std"])]
    view["acc_retrained_ci95"] = [f"\u00b1{v:.2f}" if pd.notna(v) else "-" for v in summary["acc_retrained_ci95"]]
    drop = ["acc_retrained_std", "acc_compressed_std"] + [c for c in ("knob", "budget_reached", "setting")
                                                          if (view[c].astype(str).isin(["", "nan", "None"])).all()]
    if np.allclose(summary["compression_ratio_compressed"].to_numpy(float), summary["compression_ratio"].to_numpy(float),
                   equal_nan=True):
        drop.append("compression_ratio_compressed")  # no method's size moved in retraining
    return view.drop(columns=drop)


def write_html(out: Path, *, runs_root: Path, runs: pd.DataFrame, columns: list[str], summary: pd.DataFrame,
               comparison: pd.DataFrame,
               figures: list[plots.Figure], bad: list[tuple[Path, str]], common: dict[str, Any] | None = None) -> Path:
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
    shared = "; ".join(f"{k}={v}" for k, v in sorted((common or {}).items()))
    parts += ['<h2 id="summary">Summary: one row per setting, seeds aggregated</h2>',
              "<p>Runs are grouped by every setting that differs between them except the seed (columns before "
              "<em>setting</em>; <em>setting</em>: the method's own options that differ). Accuracy: mean \u00b1 "
              "standard deviation over the <em>n</em> seeds, 95% CI: half-width of the 95% confidence interval of "
              "the mean (n \u2265 3). <em>knob (budget)</em>: what a budget's search chose. <em>recovered</em>: seeds "
              "back within the recovery tolerance of the dense accuracy; FLOPs ratio: dense / compressed FLOPs "
              "per example.</p>",
              html_table(summary_view(summary), "no ok runs to summarize"),
              f"<details><summary>Settings every run shares</summary><p><code>{esc(shared)}</code></p></details>"
              if shared else "",
              '<h2 id="reference">Published numbers beside measured ones</h2>',
              "<p>Each published number of <code>results/reference/</code> with the matching runs' value and the "
              "difference (measured - published), each size under the published figure's counting rule "
              "(<code>count_rule</code>; tnbench.functional.counting). <em>measured (stand-in)</em>: measured on "
              "<code>measured_on</code> (Fashion-MNIST) in place of the paper's MNIST or CIFAR data, which this "
              "machine lacks (<code>python -m tnbench.reproduce PAPER</code> runs them). <em>not run</em>: no ok run "
              "matches its model, dataset, method and setting.</p>"]
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
            png = out / PLOTS_DIR / f.path
            pdf = f"{PLOTS_DIR}/{Path(f.path).with_suffix('.pdf').name}"
            blob = png.read_bytes()
            data = base64.b64encode(blob).decode("ascii")
            # shown at half its pixels (200 dpi drawn, ~100 dpi on screen), never wider than the page
            width, height = int.from_bytes(blob[16:20], "big") // 2, int.from_bytes(blob[20:24], "big") // 2
            parts.append(f'<figure><img src="data:image/png;base64,{data}" width="{width}" height="{height}" data-file="{esc(PLOTS_DIR + "/" + f.path)}" '
                         f'alt="{esc(f.section)}: {esc(f.title)}"><figcaption>{caption} '
                         f'<span class="files">({esc(PLOTS_DIR + "/" + f.path)}, <a href="{esc(pdf)}">PDF</a>)</span>'
                         "</figcaption></figure>")
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
