"""`python -m tnbench.report [--runs DIR] [--out DIR]`: the paper comparison report.

Gathers every run record under --runs (unreadable ones are listed and skipped) and writes to
--out: `runs.csv` (one row per record), `summary.csv/.md` (one row per distinct setting, seeds
aggregated: tnbench.reporting.grouping), `reference_comparison.csv/.md` (every published
number of results/reference/ beside the measured one, with the difference, or "not run"),
the figures (PNG, tnbench.reporting.plots) and `report.html`, a static page showing all of it (relative
links, no JavaScript, nothing fetched from elsewhere). Missing data costs a note, never a crash.
"""
from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from tnbench.reporting import plots, tradeoff
from tnbench.reporting.console import print_table, records_frame, warn
from tnbench.reporting.grouping import add_settings, summarize
from tnbench.reporting.page import PLOTS_DIR, write_html, write_tables
from tnbench.reporting.records import get_path, read_records
from tnbench.reporting.reference import (
    COMPARISON_COLUMNS,
    load_bench,
    load_reference,
    published_points,
    reference_comparison,
)
from tnbench.reporting.schema import BY_NAME, TABLE, columns

REPO = Path(__file__).resolve().parents[2]
# Compression bands: [2^k, 2^(k+1)) of the whole-model compression ratio.
DENSE_BAND = "1x (dense)"


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
    layer-only compression ratio, the paper-rule count, ranks, the truncation cut, the epoch budgets, and `_i`, the
    record's index (to find its config and rank history again)."""
    df = records_frame(records)
    extra = pd.DataFrame({
        "_i": range(len(records)),
        "paper": [r.get("paper") for r in records],
        "experiment": [r.get("experiment") for r in records],
        "compression_ratio_layers": [r.get("compression_ratio_layers") for r in records],
        # right after compression: where the ranks moved in retraining (dlrt, tucker_adaptive), the
        # compressed model's, not the retrained one's
        "compression_ratio_compressed": [(r.get("compression_at_compress") or {}).get("compression_ratio",
                                                                                    r.get("compression_ratio"))
                                         for r in records],
        "params_paper": [r.get("params_paper") for r in records],
        "weights_dense": [r.get("weights_dense") for r in records],
        "count_rule": [r.get("count_rule") for r in records],
        "ranks": [ranks_text(r.get("ranks")) for r in records],
        "cut": [get_path(r.get("config"), "method.cut") for r in records],
        "config_pretrain_epochs": [get_path(r.get("config"), "pipeline.pretrain_epochs") for r in records],
        "config_retrain_epochs": [get_path(r.get("config"), "pipeline.retrain_epochs") for r in records],
        "train_subset": [get_path(r.get("config"), "dataset.train_subset") for r in records],
        "test_subset": [get_path(r.get("config"), "dataset.test_subset") for r in records],
        "time_total_s": [r.get("time_total_s") for r in records],
        "config_recovery_tolerance": [get_path(r.get("config"), "pipeline.recovery_tolerance") for r in records],
        "speed_threads": [get_path(r, "speed.threads") for r in records],
        "speed_device": [get_path(r, "speed.device") for r in records],
    })
    df = pd.concat([df.reset_index(drop=True), extra], axis=1)
    numeric = [c for c in df.columns if c in BY_NAME and BY_NAME[c].kind in ("int", "float")]
    for c in numeric + ["compression_ratio_layers", "compression_ratio_compressed", "params_paper", "weights_dense", "config_pretrain_epochs",
                        "config_retrain_epochs", "train_subset", "test_subset", "time_total_s",
                        "config_recovery_tolerance"]:
        df[c] = pd.to_numeric(df[c], errors="coerce")
    df["accuracy_drop"] = df["acc_pretrain"] - df["acc_compressed"]
    # the accuracy a run reports: its selected model's (pipeline.select), else its last epoch's
    df["acc_reported"] = df["acc_selected"].fillna(df["acc_retrained"])
    df["acc_dense"] = dense_reference(df)
    df["gap_to_dense"] = df["acc_reported"] - df["acc_dense"]
    df["compression_band"] = df["compression_ratio"].map(compression_band)
    return df.sort_values(["dataset", "model", "method", "setting", "seed"], na_position="last",
                          kind="stable").reset_index(drop=True)


def dense_reference(df: pd.DataFrame) -> pd.Series:
    """Each run's dense accuracy, what its accuracy is judged against: the pretrained model's for
    a run that pretrained; for a run from scratch its dense twin's (tnbench.pipeline.twin), else a
    `method=none` run from scratch with the same dataset, model, seed and budget."""
    pretrained = df["config_pretrain_epochs"].fillna(0) > 0
    ref = df["acc_pretrain"].where(pretrained)
    ref = ref.fillna(df["acc_dense_twin"].where(~pretrained))
    key = ["dataset", "model", "seed", "config_retrain_epochs"]
    dense = df[(df["method"] == "none") & ~pretrained & (df["status"] == "ok")]
    if not dense.empty:
        by_key = dense.groupby(key, dropna=False)["acc_reported"].mean()
        lookup = df[key].apply(lambda r: by_key.get(tuple(r), float("nan")), axis=1)
        ref = ref.fillna(lookup.where(~pretrained))
    return ref


# runs.csv and the report's run table: the schema's table columns, the report's own after `seed`.
REPORT_EXTRAS = ["experiment", "paper", "train_subset", "test_subset", "config_pretrain_epochs",
                 "config_retrain_epochs", "compression_band", "ranks", "acc_dense",
                 "gap_to_dense"]
RUN_COLUMNS = [*columns(TABLE)[:columns(TABLE).index("seed") + 1], *REPORT_EXTRAS,
               *columns(TABLE)[columns(TABLE).index("seed") + 1:]]


# -- the summary: tnbench.reporting.grouping (never pools different settings) ------------------


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
    runs, setting_keys, common = add_settings(runs_frame(records), records)
    out.mkdir(parents=True, exist_ok=True)
    plot_dir = out / PLOTS_DIR
    if plot_dir.is_dir():  # figures of runs that are gone must not linger
        for old in [*plot_dir.glob("*.png"), *plot_dir.glob("*.pdf")]:
            old.unlink()
    ok = runs[runs["status"] == "ok"]
    summary = summarize(runs, setting_keys)
    ref = load_reference(ref_dir)
    bench, bench_source = load_bench(bench_dir)
    comparison = reference_comparison(ref, runs, records, bench, bench_source) if not ref.empty else \
        pd.DataFrame(columns=COMPARISON_COLUMNS)
    histories = {int(r["_i"]): records[int(r["_i"])].get("rank_history") for _, r in ok.iterrows()}
    published = published_points(ref)
    figures = [
        *draw("Accuracy vs compression", lambda: tradeoff.accuracy_vs_ratio(summary, setting_keys, published, plot_dir)),
        *draw("Recovery while retraining", lambda: tradeoff.retraining_curves(
            ok, records, setting_keys, plot_dir, common.get("pipeline.recovery_tolerance"))),
        *draw("Accuracy vs norm loss per cut", lambda: plots.accuracy_vs_norm_loss(ok, plot_dir)),
        *draw("Measured speedup vs FLOP reduction", lambda: plots.speedup_vs_flops(ok, plot_dir)),
        *draw("Rank evolution (adaptive methods)", lambda: plots.rank_evolution(ok, histories, plot_dir)),
        *draw("Partial-norm scaling", lambda: plots.partial_norm_scaling(bench, bench_source, plot_dir)),
    ]
    runs[[c for c in RUN_COLUMNS if c in runs]].to_csv(out / "runs.csv", index=False)
    write_tables(summary, out, "summary")
    write_tables(comparison, out, "reference_comparison")
    page = write_html(out, runs_root=runs_root, runs=runs, columns=RUN_COLUMNS, summary=summary,
                      comparison=comparison, figures=figures, bad=bad, common=common)
    return {"runs": runs, "summary": summary, "setting_keys": setting_keys, "common": common, "comparison": comparison, "figures": figures, "bad": bad, "html": page}


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
        print_table(rep["summary"], "one row per setting, seeds aggregated",
                    ["dataset", "model", "method", *rep["setting_keys"], "setting", "seeds", "acc_retrained",
                     "compression_ratio"])
    drawn = sum(1 for f in rep["figures"] if f.path)
    status = rep["comparison"]["status"].value_counts().to_dict() if not rep["comparison"].empty else {}
    print(f"{len(rep['runs'])} records ({len(rep['bad'])} unreadable), {len(rep['summary'])} summary rows, "
          f"{len(rep['comparison'])} published numbers {status}, {drawn} figures ({len(rep['figures']) - drawn} skipped)")
    print(f"report: {rep['html']}")
    return 0
