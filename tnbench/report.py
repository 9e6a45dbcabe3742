"""`python -m tnbench.report [--runs DIR] [--out DIR]`: the paper comparison report.

Gathers every run record under --runs (unreadable ones are listed and skipped) and writes to
--out: `runs.csv` (one row per record), `summary.csv/.md` (per dataset, model and method the
best accuracy in each compression band), `reference_comparison.csv/.md` (every published
number of results/reference/ beside the measured one, with the difference, or "not run"),
the figures (PNG, tnbench.plots) and `report.html`, a static page showing all of it (relative
links, no JavaScript, nothing fetched from elsewhere). Missing data costs a note, never a crash.
"""
from __future__ import annotations

import argparse
import datetime as dt
import html
import json
import math
import re
import sys
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import yaml

from tnbench import plots
from tnbench.records import read_records
from tnbench.reporting import print_table, records_frame

PLOTS_DIR = "plots"
REPO = Path(__file__).resolve().parent.parent
# Compression bands: [2^k, 2^(k+1)) of the whole-model compression ratio.
DENSE_BAND = "1x (dense)"


# -- the runs table ---------------------------------------------------------------------------

def warn(message: str) -> None:
    """Skipped input, one unwrapped line on stderr."""
    print(f"warning: {message}", file=sys.stderr)


def _get(d: Any, path: str) -> Any:
    for part in path.split("."):
        if not isinstance(d, dict) or part not in d:
            return None
        d = d[part]
    return d


def ranks_text(ranks: Any) -> str | None:
    """A record's `ranks` ({layer: [r, ...]}) as `10;23;62`, the published tables' form; layers
    left dense (no ranks) are left out, multi-mode ranks joined with `x`."""
    if not isinstance(ranks, dict):
        return None
    parts = []
    for r in ranks.values():
        r = r if isinstance(r, (list, tuple)) else [r]
        if r:
            parts.append("x".join(str(v) for v in r))
    return ";".join(parts) or None


def compression_band(ratio: Any) -> str | None:
    try:
        r = float(ratio)
    except (TypeError, ValueError):
        return None
    if not math.isfinite(r) or r <= 0:
        return None
    if abs(r - 1.0) < 1e-9:
        return DENSE_BAND
    k = math.floor(math.log2(r))
    return f"{2.0**k:g}-{2.0**(k + 1):g}x"


def band_order(band: str | None) -> float:
    """Bands by their lower end; the dense band just before 1-2x."""
    if band is None:
        return math.inf
    return 1.0 - 1e-6 if band == DENSE_BAND else float(band.split("-")[0])


def runs_frame(records: list[dict[str, Any]]) -> pd.DataFrame:
    """records_frame (the results table's columns) plus what the report needs: paper, experiment,
    layer-only compression ratio, ranks, the truncation cut, the epoch budgets, and `_i`, the
    record's index (to find its config and rank history again)."""
    df = records_frame(records)
    extra = pd.DataFrame({
        "_i": range(len(records)),
        "paper": [r.get("paper") for r in records],
        "experiment": [r.get("experiment") for r in records],
        "compression_ratio_layers": [r.get("compression_ratio_layers") for r in records],
        "ranks": [ranks_text(r.get("ranks")) for r in records],
        "cut": [_get(r.get("config"), "method.cut") for r in records],
        "config_pretrain_epochs": [_get(r.get("config"), "pipeline.pretrain_epochs") for r in records],
        "config_retrain_epochs": [_get(r.get("config"), "pipeline.retrain_epochs") for r in records],
    })
    df = pd.concat([df.reset_index(drop=True), extra], axis=1)
    for c in ("acc_pretrain", "acc_compressed", "acc_retrained", "acc_retrained_best", "recovery_epochs",
              "compression_ratio", "compression_rate", "compression_ratio_layers", "norm_loss_mean", "flops_dense",
              "flops_compressed", "params_dense", "params_compressed", "time_pretrain_s", "time_compress_s",
              "time_retrain_s", "config_pretrain_epochs", "config_retrain_epochs"):
        df[c] = pd.to_numeric(df[c], errors="coerce")
    df["accuracy_drop"] = df["acc_pretrain"] - df["acc_compressed"]
    df["compression_band"] = df["compression_ratio"].map(compression_band)
    return df.sort_values(["dataset", "model", "method", "setting", "seed"], na_position="last",
                          kind="stable").reset_index(drop=True)


RUN_COLUMNS = ["status", "dataset", "model", "method", "setting", "seed", "experiment", "paper", "acc_pretrain",
               "acc_compressed", "acc_retrained", "acc_retrained_best", "recovery_epochs", "compression_ratio",
               "compression_band", "compression_rate", "norm_loss_mean", "ranks", "params_dense", "params_compressed",
               "flops_dense", "flops_compressed", "time_pretrain_s", "time_compress_s", "time_retrain_s",
               "pretrain_cache_hit", "error", "run_dir"]


# -- the summary ------------------------------------------------------------------------------

SUMMARY_COLUMNS = ["dataset", "model", "method", "compression_band", "runs", "best_setting", "seeds",
                   "acc_retrained", "acc_retrained_std", "acc_compressed", "acc_pretrain", "compression_ratio",
                   "compression_rate", "recovery_epochs", "recovered", "flops_compressed", "flops_ratio",
                   "time_pretrain_s", "time_compress_s", "time_retrain_s"]


def summarize(runs: pd.DataFrame) -> pd.DataFrame:
    """Per dataset, model, method and compression band (log2 bins of the compression ratio), the
    setting with the best mean accuracy after retraining over its seeds, with that setting's
    compression, recovery epochs (median over the seeds that recovered), FLOPs and times."""
    ok = runs[(runs["status"] == "ok") & runs["compression_band"].notna()]
    rows = []
    for (dataset, model, method, band), g in ok.groupby(["dataset", "model", "method", "compression_band"], dropna=False):
        per_setting = g.groupby("setting", dropna=False)["acc_retrained"].mean()
        best = per_setting.idxmax() if per_setting.notna().any() else per_setting.index[0]
        b = g[g["setting"] == best] if isinstance(best, str) else g[g["setting"].isna()]
        rec = b["recovery_epochs"]
        flops_c = b["flops_compressed"].mean()
        rows.append({
            "dataset": dataset, "model": model, "method": method, "compression_band": band, "runs": len(g),
            "best_setting": best, "seeds": len(b),
            "acc_retrained": b["acc_retrained"].mean(),
            "acc_retrained_std": b["acc_retrained"].std(ddof=1) if len(b) > 1 else np.nan,
            "acc_compressed": b["acc_compressed"].mean(), "acc_pretrain": b["acc_pretrain"].mean(),
            "compression_ratio": b["compression_ratio"].mean(), "compression_rate": b["compression_rate"].mean(),
            "recovery_epochs": rec.median() if rec.notna().any() else np.nan,
            "recovered": f"{int(rec.notna().sum())}/{len(b)}",
            "flops_compressed": flops_c,
            "flops_ratio": b["flops_dense"].mean() / flops_c if flops_c and flops_c > 0 else np.nan,
            "time_pretrain_s": b["time_pretrain_s"].mean(), "time_compress_s": b["time_compress_s"].mean(),
            "time_retrain_s": b["time_retrain_s"].mean(),
        })
    out = pd.DataFrame(rows, columns=SUMMARY_COLUMNS)
    if out.empty:
        return out
    out["_order"] = out["compression_band"].map(band_order)
    return out.sort_values(["dataset", "model", "method", "_order"], kind="stable").drop(columns="_order").reset_index(drop=True)


# -- published numbers ------------------------------------------------------------------------

def load_reference(ref_dir: Path) -> pd.DataFrame:
    """Every row of every results/reference/*.csv, as text, with its file name."""
    frames = []
    for path in sorted(Path(ref_dir).glob("*.csv")):
        try:
            df = pd.read_csv(path, dtype=str, keep_default_na=False)
        except (OSError, ValueError, pd.errors.ParserError) as e:
            warn(f"skipped unreadable reference table {path}: {e}")
            continue
        df["file"] = path.name
        frames.append(df)
    return pd.concat(frames, ignore_index=True).fillna("") if frames else pd.DataFrame()


def _number(v: Any) -> float | None:
    try:
        x = float(v)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def _values(cell: Any) -> list[str]:
    return [v.strip() for v in str(cell or "").split(";") if v.strip()]


def published_points(ref: pd.DataFrame) -> pd.DataFrame:
    """Published accuracies with a compression number, one row per model/dataset they name."""
    cols = ["paper", "model", "dataset", "method", "setting", "accuracy", "compression_ratio", "compression_rate"]
    rows = []
    if not ref.empty and "accuracy" in ref:
        for _, r in ref.iterrows():
            if _number(r.get("accuracy")) is None:
                continue
            for model in _values(r.get("model")):
                for dataset in _values(r.get("dataset")):
                    rows.append({c: r.get(c, "") for c in cols} | {"model": model, "dataset": dataset})
    out = pd.DataFrame(rows, columns=cols)
    for c in ("accuracy", "compression_ratio", "compression_rate"):
        out[c] = pd.to_numeric(out[c], errors="coerce")
    return out


CONDITION = re.compile(r"^([A-Za-z_][\w.]*)\s*(<=|>=|!=|=|<|>)\s*(.+)$")


def parse_conditions(text: str) -> list[tuple[str, str, Any]]:
    """`method.tau=0.09 method.layers=[a,b]` -> [(path, op, value)]; values parsed as YAML."""
    out = []
    for token in re.findall(r"\S+=\[[^\]]*\]|\S+", text or ""):
        m = CONDITION.match(token)
        if not m:
            raise ValueError(f"cannot read the condition {token!r}")
        key, op, raw = m.groups()
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError:
            value = raw
        out.append((key, op, value))
    return out


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (list, tuple)) or isinstance(b, (list, tuple)):
        return isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)) and len(a) == len(b) and \
            all(_same(x, y) for x, y in zip(a, b))
    na, nb = _number(a), _number(b)
    if na is not None and nb is not None and not isinstance(a, bool) and not isinstance(b, bool):
        return math.isclose(na, nb, rel_tol=1e-9, abs_tol=1e-12)
    return str(a) == str(b)


def holds(record: dict[str, Any], conditions: list[tuple[str, str, Any]]) -> bool:
    """Each condition on the record's resolved config (`method.tau`), or on the record itself."""
    for key, op, want in conditions:
        have = _get(record.get("config"), key)
        if have is None:
            have = _get(record, key)
        if op in ("=", "!="):
            if _same(have, want) != (op == "="):
                return False
            continue
        x, y = _number(have), _number(want)
        if x is None or y is None or not {"<": x < y, "<=": x <= y, ">": x > y, ">=": x >= y}[op]:
            return False
    return True


# (published column, measured column, how runs are combined)
QUANTITIES: list[tuple[str, str, str]] = [
    ("accuracy", "acc_retrained", "mean"),
    ("compression_rate", "compression_rate", "mean"),
    ("compression_ratio", "compression_ratio_layers", "mean"),
    ("parameters", "params_compressed", "mean"),
    ("ranks", "ranks", "first"),
    ("norm_loss", "norm_loss_mean", "max"),
    ("accuracy_drop", "accuracy_drop", "mean"),
    ("recovery_epochs", "recovery_epochs", "median"),
]
QUANTITY_NOTES = {
    "compression_ratio": "measured: compression_ratio_layers (dense / compressed weights of the compressed layers)",
    "parameters": "measured: params_compressed (all parameters incl. biases; the paper may count weights only)",
    "norm_loss": "measured: largest mean norm loss among the matching runs",
    "accuracy_drop": "measured: acc_pretrain - acc_compressed (right after truncation)",
    "recovery_epochs": "measured: median over the runs that recovered",
}
COMPARISON_COLUMNS = ["paper", "arxiv", "model", "dataset", "method", "setting", "quantity", "published", "measured",
                      "difference", "runs", "status", "note", "source"]
DENSE_SETTINGS = {"dense", "full"}


def _combine(values: pd.Series, how: str) -> Any:
    values = values.dropna()
    if values.empty:
        return None
    if how == "first":
        return values.mode().iloc[0] if not values.mode().empty else values.iloc[0]
    v = pd.to_numeric(values, errors="coerce").dropna()
    if v.empty:
        return None
    return float({"mean": v.mean, "max": v.max, "median": v.median}[how]())


def _matching_runs(row: pd.Series, ok: pd.DataFrame, records: list[dict[str, Any]]) -> tuple[pd.DataFrame, str]:
    """The ok runs a published row speaks of, and a note on how they were chosen."""
    sel = ok
    models, datasets = _values(row.get("model")), _values(row.get("dataset"))
    if models:
        sel = sel[sel["model"].isin(models)]
    if datasets:
        sel = sel[sel["dataset"].isin(datasets)]
    method, setting = str(row.get("method", "")).strip(), str(row.get("setting", "")).strip()
    note = ""
    if method == "none" and setting.lower() in DENSE_SETTINGS:
        dense = sel[sel["method"] == "none"]
        if dense.empty:  # the dense model every compressed run starts from
            pretrained = sel[sel["config_pretrain_epochs"].fillna(0) > 0]
            dense = pretrained.drop_duplicates(["dataset", "model", "seed", "acc_pretrain"]).copy()
            dense["acc_retrained"] = dense["acc_pretrain"]
            dense["compression_ratio_layers"] = 1.0
            dense["compression_rate"] = 0.0
            note = "no method=none run: acc_pretrain of the compressed runs (their dense model)"
        return dense, note
    if method:
        sel = sel[sel["method"] == method]
    text = str(row.get("match", "")).strip()
    if not text and re.fullmatch(r"(\w+=\S+\s*)+", setting):
        text = " ".join(f"method.{t}" for t in setting.split())  # e.g. the DLRT table's tau=0.09
    if text:
        conditions = parse_conditions(text)
        sel = sel[sel["_i"].map(lambda i: holds(records[i], conditions))]
    if "best reported" in setting.lower() and not sel.empty:
        recovered = sel[sel["recovery_epochs"].notna()]
        pool = recovered if not recovered.empty else sel
        col = "compression_rate" if _number(row.get("compression_rate")) is not None else "compression_ratio_layers"
        sel = pool.loc[[pool[col].idxmax()]]
        note = f"the run with the largest {col}" + (" that recovered its accuracy" if not recovered.empty else "")
    return sel, note


def _fmt_value(v: Any) -> Any:
    return round(v, 4) if isinstance(v, float) else v


def compare_runs(row: pd.Series, ok: pd.DataFrame, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    base = {c: row.get(c, "") for c in ("paper", "arxiv", "model", "dataset", "method", "setting", "source")}
    quantities = [(q, m, how) for q, m, how in QUANTITIES if str(row.get(q, "")).strip()]
    if not quantities:
        return [base | {"quantity": "-", "status": "no published value", "note": "settings only"}]
    try:
        sel, how_chosen = _matching_runs(row, ok, records)
    except ValueError as e:
        return [base | {"quantity": q, "published": row.get(q), "status": "bad match", "note": str(e)} for q, _, _ in quantities]
    out = []
    for q, col, how in quantities:
        published = row.get(q)
        entry = base | {"quantity": q, "published": _number(published) if _number(published) is not None else published,
                        "runs": len(sel)}
        measured = _combine(sel[col], how) if not sel.empty and col in sel else None
        notes = [n for n in (how_chosen, QUANTITY_NOTES.get(q, "")) if n]
        if sel.empty:
            entry |= {"status": "not run", "note": "no ok run matches"}
        elif measured is None:
            entry |= {"status": "not measured", "note": "; ".join(notes + [f"the matching runs have no {col}"])}
        else:
            entry["measured"] = _fmt_value(measured)
            pub = _number(published)
            if pub is not None and isinstance(measured, float):
                entry["difference"] = round(measured - pub, 4)
                entry["status"] = "measured"
            else:
                entry["status"] = "measured (published value not a number)" if pub is None else "measured"
            if q == "accuracy" and len(sel) > 1:
                notes.append(f"std over runs {sel[col].std(ddof=1):.3g}")
            entry["note"] = "; ".join(notes)
        out.append(entry)
    return out


def n_range(text: str) -> tuple[float, float, bool, bool]:
    """`N<10`, `10<=N<=27`, `N>27` -> (low, high, low inclusive, high inclusive)."""
    low, high, low_in, high_in = -math.inf, math.inf, False, False
    for a, op in re.findall(r"(\d+)\s*(<=|<)\s*N", text):
        low, low_in = float(a), op == "<="
    for op, b in re.findall(r"N\s*(<=|<|>=|>)\s*(\d+)", text):
        if op in ("<", "<="):
            high, high_in = float(b), op == "<="
        else:
            low, low_in = float(b), op == ">="
    return low, high, low_in, high_in


def compare_bench(row: pd.Series, bench: pd.DataFrame | None, bench_source: str) -> list[dict[str, Any]]:
    base = {c: row.get(c, "") for c in ("paper", "arxiv", "model", "dataset", "method", "setting", "source")}
    base["model"] = base["model"] or row.get("network", "")
    base["setting"] = base["setting"] or str(row.get("N_range", ""))
    published = row.get("normalization_steps", "")
    entry = base | {"quantity": "normalization_steps", "published": _number(published) if _number(published) is not None else published}
    if bench is None or bench.empty:
        return [entry | {"status": "not run", "note": f"no benchmark results ({bench_source})"}]
    ncol, scol = plots.first_column(bench, plots.N_COLUMNS), plots.first_column(bench, plots.STEP_COLUMNS)
    if ncol is None or scol is None:
        return [entry | {"status": "not measured", "note": f"{bench_source} has no N / steps columns"}]
    bench, conditions = paper_conditions(row, plots.against_n(bench, scol))
    low, high, low_in, high_in = n_range(str(row.get("N_range", "")))
    n = pd.to_numeric(bench[ncol], errors="coerce")
    inside = ((n > low) | (low_in & (n == low))) & ((n < high) | (high_in & (n == high)))
    steps = pd.to_numeric(bench.loc[inside, scol], errors="coerce").dropna()
    if steps.empty:
        return [entry | {"status": "not run", "note": f"{bench_source}: no N in {row.get('N_range')}"}]
    measured = float(steps.median())
    entry |= {"measured": measured, "runs": len(steps), "status": "measured",
              "note": f"median over {len(steps)} points (min {steps.min():g}, max {steps.max():g}) with "
                      f"{', '.join(conditions) or 'all rows'}; {bench_source}"}
    if _number(published) is not None:
        entry["difference"] = round(measured - float(published), 4)
    else:
        entry["status"] = "measured (published value not a number)"
    return [entry]


def _norm_name(v: Any) -> str:
    return str(v).strip().lower().replace("_", "-")


def paper_conditions(row: pd.Series, bench: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """The benchmark rows measured as the paper measured: its networks, norm and target norm,
    and, where the benchmark compares protocols, the paper's own (`protocol == paper`)."""
    used = []
    for ref_col, bench_cols in (("network", ("layout", "network")), ("norm", ("norm",)),
                                ("target_norm", ("target", "target_norm"))):
        want = {_norm_name(v) for v in _values(row.get(ref_col))}
        col = next((c for c in bench_cols if c in bench.columns), None)
        if want and col is not None:
            keep = bench[col].map(_norm_name).isin(want)
            if keep.any():
                bench = bench[keep]
                used.append(f"{col} in {sorted(want)}")
    if "protocol" in bench.columns and (bench["protocol"].astype(str) == "paper").any():
        bench = bench[bench["protocol"].astype(str) == "paper"]
        used.append("protocol = paper")
    return bench, used


def reference_comparison(ref: pd.DataFrame, runs: pd.DataFrame, records: list[dict[str, Any]],
                         bench: pd.DataFrame | None, bench_source: str) -> pd.DataFrame:
    ok = runs[runs["status"] == "ok"]
    rows: list[dict[str, Any]] = []
    for _, row in ref.iterrows():
        if str(row.get("normalization_steps", "")).strip() or str(row.get("N_range", "")).strip():
            rows += compare_bench(row, bench, bench_source)
        else:
            rows += compare_runs(row, ok, records)
    return pd.DataFrame(rows, columns=COMPARISON_COLUMNS)


def load_bench(bench_dir: Path) -> tuple[pd.DataFrame | None, str]:
    """results/bench/partial_norm_*.csv|json as one table (JSON: a list of rows, or an object
    holding one under rows/results/records/data), and where it came from."""
    csvs = sorted(Path(bench_dir).glob("partial_norm_*.csv"))
    # a JSON beside a CSV of the same name holds the same rows
    files = csvs + [p for p in sorted(Path(bench_dir).glob("partial_norm_*.json")) if p.with_suffix(".csv") not in csvs]
    frames, used = [], []
    for path in files:
        try:
            if path.suffix == ".csv":
                df = pd.read_csv(path)
            else:
                data = json.loads(path.read_text())
                if isinstance(data, dict):
                    data = next((data[k] for k in ("rows", "results", "records", "data") if isinstance(data.get(k), list)), data)
                df = pd.json_normalize(data) if isinstance(data, (list, dict)) else pd.DataFrame()
        except (OSError, ValueError) as e:
            warn(f"skipped unreadable benchmark file {path}: {e}")
            continue
        if not df.empty:
            df["file"] = path.name
            frames.append(df)
            used.append(path.name)
    if not frames:
        return None, f"no {Path(bench_dir) / 'partial_norm_*.csv|json'}"
    return pd.concat(frames, ignore_index=True), ", ".join(used)


# -- writing ----------------------------------------------------------------------------------

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


CSS = """
body { font-family: sans-serif; margin: 1.5em auto; max-width: 1400px; color: #222; }
h1 { font-size: 1.5em; } h2 { border-bottom: 1px solid #ccc; margin-top: 1.8em; }
table { border-collapse: collapse; font-size: 0.8em; margin: 0.6em 0; }
th, td { border: 1px solid #ccc; padding: 2px 6px; text-align: left; vertical-align: top; }
th { background: #f0f0f0; }
td.num { text-align: right; white-space: nowrap; }
div.table { overflow-x: auto; }
td.col-source, td.col-note, td.col-error { min-width: 24em; }
td.col-setting, td.col-best_setting { min-width: 10em; }
details { margin: 0.6em 0; } .note code { word-break: break-all; } summary { cursor: pointer; color: #335; }
.note { color: #7a4b00; background: #fff6e0; padding: 4px 8px; border-left: 3px solid #e0a000; }
figure { margin: 1em 0; } figcaption { font-size: 0.9em; color: #555; }
img { max-width: 100%; border: 1px solid #ddd; }
"""


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


def write_html(out: Path, *, runs_root: Path, runs: pd.DataFrame, summary: pd.DataFrame, comparison: pd.DataFrame,
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
              "the pretrained accuracy; <code>flops_ratio</code>: dense / compressed FLOPs of one forward pass.</p>",
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
              html_table(runs[[c for c in RUN_COLUMNS if c in runs and c not in ("error", "run_dir")]], "no records")]
    if not failed.empty:
        parts += ["<h3>Runs that did not finish ok</h3>",
                  html_table(failed[["status", "dataset", "model", "method", "setting", "seed", "error", "run_dir"]], "")]
    parts.append("</body></html>")
    path = out / "report.html"
    path.write_text("\n".join(parts) + "\n")
    return path


def draw(name: str, fn: Callable[[], list[plots.Figure]]) -> list[plots.Figure]:
    """A figure that fails to draw is a note in the report, not the end of the report."""
    try:
        return fn()
    except Exception as e:  # noqa: BLE001
        warn(f"figure {name} skipped: {type(e).__name__}: {e}")
        return [plots.Figure(name, name, note=f"could not be drawn: {type(e).__name__}: {e}")]


def build_report(runs_root: Path, out: Path, ref_dir: Path, bench_dir: Path) -> dict[str, Any]:
    records, bad = read_records(runs_root)
    for path, reason in bad:
        warn(f"skipped unreadable record {path}: {reason}")
    runs = runs_frame(records)
    out.mkdir(parents=True, exist_ok=True)
    plot_dir = out / PLOTS_DIR
    if plot_dir.is_dir():  # figures of runs that are gone must not linger
        for old in plot_dir.glob("*.png"):
            old.unlink()
    ok = runs[runs["status"] == "ok"]
    summary = summarize(runs)
    ref = load_reference(ref_dir)
    bench, bench_source = load_bench(bench_dir)
    comparison = reference_comparison(ref, runs, records, bench, bench_source) if not ref.empty else \
        pd.DataFrame(columns=COMPARISON_COLUMNS)
    histories = {int(r["_i"]): records[int(r["_i"])].get("rank_history") for _, r in ok.iterrows()}
    published = published_points(ref)
    figures = [
        *draw("Accuracy vs compression", lambda: plots.accuracy_vs_compression(ok, published, plot_dir)),
        *draw("Accuracy vs norm loss per cut", lambda: plots.accuracy_vs_norm_loss(ok, plot_dir)),
        *draw("Recovery epochs", lambda: plots.recovery_epochs(ok, plot_dir)),
        *draw("Rank evolution (adaptive methods)", lambda: plots.rank_evolution(ok, histories, plot_dir)),
        *draw("Partial-norm scaling", lambda: plots.partial_norm_scaling(bench, bench_source, plot_dir)),
    ]
    runs[[c for c in RUN_COLUMNS if c in runs]].to_csv(out / "runs.csv", index=False)
    write_tables(summary, out, "summary")
    write_tables(comparison, out, "reference_comparison")
    page = write_html(out, runs_root=runs_root, runs=runs, summary=summary, comparison=comparison,
                      figures=figures, bad=bad)
    return {"runs": runs, "summary": summary, "comparison": comparison, "figures": figures, "bad": bad, "html": page}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tnbench.report", description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=Path, default=Path("results/runs"), help="directory searched for record.json files")
    ap.add_argument("--out", type=Path, default=Path("results/report"), help="where the report is written")
    ap.add_argument("--reference", type=Path, default=None,
                    help="published numbers, one CSV per paper (default: results/reference, else the repository's)")
    ap.add_argument("--bench", type=Path, default=Path("results/bench"), help="benchmark results (partial_norm_*)")
    args = ap.parse_args(argv)
    if not args.runs.is_dir():
        print(f"error: results directory {args.runs} does not exist", file=sys.stderr)
        return 2
    reference = args.reference or next((p for p in (Path("results/reference"), REPO / "results" / "reference")
                                        if p.is_dir()), Path("results/reference"))
    rep = build_report(args.runs, args.out, reference, args.bench)
    if not rep["summary"].empty:
        print_table(rep["summary"], "best accuracy per compression band",
                    ["dataset", "model", "method", "compression_band", "runs", "acc_retrained", "compression_ratio",
                     "recovery_epochs"])
    drawn = sum(1 for f in rep["figures"] if f.path)
    status = rep["comparison"]["status"].value_counts().to_dict() if not rep["comparison"].empty else {}
    print(f"{len(rep['runs'])} records ({len(rep['bad'])} unreadable), {len(rep['summary'])} summary rows, "
          f"{len(rep['comparison'])} published numbers {status}, {drawn} figures ({len(rep['figures']) - drawn} skipped)")
    print(f"report: {rep['html']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
