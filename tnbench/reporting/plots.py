"""The report's figures, drawn with matplotlib's Agg backend into PNG (200 dpi) and PDF files;
titles are the page's (`Figure.title`), not drawn into the figures. The comparison figures
(accuracy vs compression ratio, retraining curves) are in tnbench.reporting.tradeoff.

Each function takes the runs table of `tnbench.report` (one row per ok record) and writes its
figures, returning a `Figure` per file, or one `Figure` with no path and a note saying why
there was nothing to draw. No function raises for missing data.
"""
from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

DPI = 200
MAX_RANK_PANELS = 12


@dataclass
class Figure:
    """One figure of the report: a PNG (relative to the report dir) or a note saying why not."""

    section: str
    title: str
    path: str | None = None
    note: str = ""


def slug(*parts: Any) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", "_".join(str(p) for p in parts)).strip("_")


def _save(fig: plt.Figure, out_dir: Path, name: str) -> str:
    """`name` as PNG at DPI (what the page shows) and the same figure as PDF beside it (vector,
    for a paper); returns the PNG's name."""
    out_dir.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(out_dir / name, dpi=DPI, bbox_inches="tight")
    fig.savefig((out_dir / name).with_suffix(".pdf"), bbox_inches="tight")
    plt.close(fig)
    return name


def _colors(keys: Iterable[str]) -> dict[str, Any]:
    keys = sorted(set(keys))
    cmap = plt.get_cmap("tab10" if len(keys) <= 10 else "tab20")
    return {k: cmap(i % cmap.N) for i, k in enumerate(keys)}


def _numeric(df: pd.DataFrame, *cols: str) -> pd.DataFrame:
    out = df.copy()
    for c in cols:
        out[c] = pd.to_numeric(out[c], errors="coerce")
    return out.dropna(subset=list(cols))


def accuracy_vs_norm_loss(runs: pd.DataFrame, out_dir: Path) -> list[Figure]:
    """Bipartition truncation (method svd_truncation): accuracy right after truncation (solid)
    and after retraining (dotted) against the measured mean norm loss, one line per cut."""
    section = "Accuracy vs norm loss per cut"
    trunc = runs[runs["method"] == "svd_truncation"]
    trunc = _numeric(trunc, "norm_loss_mean", "acc_compressed") if not trunc.empty else trunc
    if trunc.empty:
        return [Figure(section, "accuracy vs norm loss", note="no ok run of method svd_truncation with a norm loss: "
                       "run e.g. `python -m tnbench +sweep=truncation_norm_loss`")]
    figures = []
    for (dataset, model), sub in trunc.groupby(["dataset", "model"]):
        fig, ax = plt.subplots(figsize=(7.5, 4.6))
        colors = _colors(sub["cut"].fillna("?"))
        for cut, g in sub.groupby(sub["cut"].fillna("?")):
            g = g.sort_values("norm_loss_mean")
            ax.plot(g["norm_loss_mean"], g["acc_compressed"], "o-", color=colors[cut], label=f"{cut}: truncated")
            retrained = _numeric(g, "acc_retrained")
            if not retrained.empty and (g["config_retrain_epochs"].fillna(0) > 0).any():
                ax.plot(retrained["norm_loss_mean"], retrained["acc_retrained"], ":", color=colors[cut], alpha=0.8)
        pre = pd.to_numeric(sub["acc_pretrain"], errors="coerce").dropna()
        if not pre.empty:
            ax.axhline(pre.mean(), color="grey", lw=1, ls="--", label="dense (pretrained)")
        ax.axvline(0.5, color="black", lw=0.8, ls="-.", label="paper: up to 0.5 costs little")
        ax.set_xlabel("norm loss 1 - ||W_trunc||_F / ||W||_F (mean over layers)")
        ax.set_ylabel("test accuracy (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        figures.append(Figure(section, f"{model} / {dataset}", _save(fig, out_dir, f"norm_loss_{slug(dataset, model)}.png")))
    return figures


def speedup_vs_flops(runs: pd.DataFrame, out_dir: Path) -> list[Figure]:
    """Per dataset and model: measured speedup (compressed / dense throughput at the evaluation
    batch size) against the FLOP reduction, per method; on the diagonal every FLOP saved is
    time saved, below 1 the compressed model is slower than the dense one."""
    section = "Measured speedup vs FLOP reduction"
    if runs.empty or "speedup_measured" not in runs:
        return [Figure(section, "speedup", note="no ok runs with measured speed")]
    timed = _numeric(runs, "flops_ratio", "speedup_measured")
    if timed.empty:
        return [Figure(section, "speedup", note="no ok run measured its speed (trainer.measure_speed)")]
    colors = _colors(timed["method"])
    markers = {m: "osD^vP*Xh<>p"[i % 12] for i, m in enumerate(sorted(set(timed["method"])))}
    figures = []
    for (dataset, model), sub in timed.groupby(["dataset", "model"]):
        fig, ax = plt.subplots(figsize=(6.4, 4.6))
        for method, g in sub.groupby("method"):
            ax.scatter(g["flops_ratio"], g["speedup_measured"], color=colors[method], marker=markers[method],
                       s=30, alpha=0.8, label=method)
        values = [*sub["flops_ratio"].astype(float), *sub["speedup_measured"].astype(float), 1.0]
        lo, hi = min(values) / 1.3, max(values) * 1.3
        ax.plot([lo, hi], [lo, hi], color="0.5", lw=1, ls="--", label="speedup = FLOP reduction")
        ax.axhline(1.0, color="C3", lw=0.8, alpha=0.6)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlim(lo, hi)
        ax.set_ylim(lo, hi)
        ax.set_xlabel("FLOP reduction (flops_dense / flops_compressed)")
        ax.set_ylabel("measured speedup (throughput, eval batch)")
        where = sorted({f"{d}, {int(t)} threads" for d, t in zip(sub.get("speed_device", []), sub.get("speed_threads", []))
                        if isinstance(d, str) and pd.notna(t)})
        device = f"\n({'; '.join(where)})" if where else ""
        ax.set_title(f"{model} / {dataset}: measured speedup vs FLOP reduction{device}", fontsize=10)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7, loc="upper left")
        figures.append(Figure(section, f"{model} / {dataset}", _save(fig, out_dir, f"speedup_{slug(dataset, model)}.png")))
    return figures


def rank_series(history: Any) -> dict[str, tuple[list[float], list[float]]]:
    """Per layer (and mode) the ranks over training, from either form a record may carry:
    a list of snapshots `{"epoch"|"step": ..., "ranks": {layer: r or [r, ...]}}`, or a dict
    `{layer: [r per epoch]}` (each r an int or a list of per-mode ranks)."""
    series: dict[str, tuple[list[float], list[float]]] = {}

    def add(label: str, x: float, r: Any) -> None:
        values = r if isinstance(r, (list, tuple)) else [r]
        for j, v in enumerate(values):
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                key = label if len(values) == 1 else f"{label}[{j}]"
                xs, ys = series.setdefault(key, ([], []))
                xs.append(x)
                ys.append(float(v))

    if isinstance(history, dict):
        for layer, per_epoch in history.items():
            if isinstance(per_epoch, (list, tuple)):
                for i, r in enumerate(per_epoch):
                    add(str(layer), i, r)
    elif isinstance(history, (list, tuple)):
        for i, snap in enumerate(history):
            if not isinstance(snap, dict):
                continue
            x = snap.get("step", snap.get("epoch", i))
            ranks = snap.get("ranks", {k: v for k, v in snap.items() if k not in ("epoch", "step")})
            if isinstance(ranks, dict):
                for layer, r in ranks.items():
                    add(str(layer), x if isinstance(x, (int, float)) else i, r)
    return series


def rank_evolution(runs: pd.DataFrame, histories: dict[int, Any], out_dir: Path) -> list[Figure]:
    """Rank-adaptive methods: each layer's rank over the retrain steps, one panel per run, one
    figure per method, model and dataset."""
    section = "Rank evolution (adaptive methods)"
    have = runs[runs["_i"].map(lambda i: bool(rank_series(histories.get(i))))]
    if have.empty:
        return [Figure(section, "rank evolution", note="no record carries a rank_history (the rank-adaptive methods "
                       "dlrt and tucker_adaptive write one)")]
    figures = []
    for (dataset, model, method), sub in have.groupby(["dataset", "model", "method"]):
        sub = sub.sort_values("setting")
        shown = sub.head(MAX_RANK_PANELS)
        cols = min(3, len(shown))
        rows = math.ceil(len(shown) / cols)
        fig, axes = plt.subplots(rows, cols, figsize=(max(6.5, 4.6 * cols), 3.4 * rows), squeeze=False)
        for ax, (_, row) in zip(axes.flat, shown.iterrows()):
            for label, (xs, ys) in rank_series(histories[row["_i"]]).items():
                ax.step(xs, ys, where="post", label=label)
            ax.set_title(f"{row['setting'][:70]} s{row['seed']}", fontsize=7)
            ax.set_xlabel("optimizer step")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_ylabel("rank")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=6)
        for ax in list(axes.flat)[len(shown):]:
            ax.axis("off")
        note = f"first {MAX_RANK_PANELS} of {len(sub)} runs" if len(sub) > MAX_RANK_PANELS else ""
        figures.append(Figure(section, f"{method} / {model} / {dataset}",
                              _save(fig, out_dir, f"rank_history_{slug(dataset, model, method)}.png"), note))
    return figures


N_COLUMNS = ("N", "n", "num_nodes", "n_nodes", "nodes")
# `passes` first: the partial-norm benchmark's returns to the full norm are what arXiv 2309.06577
# counts as normalization steps; its `steps` (node rescalings inside a scan) are not
STEP_COLUMNS = ("normalization_steps", "passes", "steps", "norm_steps", "iterations")
TIME_COLUMNS = ("time_s", "seconds", "time", "wall_s")
GROUP_COLUMNS = ("dtype", "layout", "network", "kind", "structure", "protocol", "norm", "init", "p", "b", "bond_dim",
                 "phys_dim")


def against_n(bench: pd.DataFrame, quantity: str) -> pd.DataFrame:
    """The rows of a benchmark table that vary N for `quantity` (steps or time): where the table
    names its sweeps (a `sweep` column such as steps_vs_N), the sweeps over N that mention the
    quantity, else those over N, else all rows."""
    if "sweep" not in bench.columns:
        return bench
    names = bench["sweep"].astype(str)
    over_n = names.str.contains(r"(?:^|_)N(?:$|_)", regex=True)
    pick = over_n & names.str.contains(quantity.split("_")[0][:4], regex=False)
    return bench[pick] if pick.any() else bench[over_n] if over_n.any() else bench


def first_column(df: pd.DataFrame, names: Iterable[str]) -> str | None:
    return next((c for c in names if c in df.columns and pd.to_numeric(df[c], errors="coerce").notna().any()), None)


def partial_norm_scaling(bench: pd.DataFrame | None, source: str, out_dir: Path) -> list[Figure]:
    """Partial-norm initialization (arXiv 2309.06577) from the benchmark's table: normalization
    steps (and time, where measured) against the number of nodes N."""
    section = "Partial-norm scaling"
    if bench is None or bench.empty:
        return [Figure(section, "partial-norm scaling", note=f"no benchmark results ({source}); `make bench` writes them")]
    ncol = first_column(bench, N_COLUMNS)
    ycols = [c for c in (first_column(bench, STEP_COLUMNS), first_column(bench, TIME_COLUMNS)) if c]
    if ncol is None or not ycols:
        return [Figure(section, "partial-norm scaling", note=f"{source}: no column for N ({', '.join(N_COLUMNS)}) or "
                       f"for steps/time ({', '.join(STEP_COLUMNS + TIME_COLUMNS)}); columns: {', '.join(map(str, bench.columns))}")]
    frobenius = "norm" in bench.columns and (bench["norm"].astype(str) == "frobenius").any() and bench["norm"].nunique() > 1
    if frobenius:  # the paper's FTNR protocol; the lineal-norm rows would double every line
        bench = bench[bench["norm"].astype(str) == "frobenius"]
    fig, axes = plt.subplots(1, len(ycols), figsize=(7.0 * len(ycols), 6.2), squeeze=False)
    for ax, ycol in zip(axes[0], ycols):
        data = _numeric(against_n(bench, ycol), ncol, ycol)
        groups = [c for c in GROUP_COLUMNS if c in data.columns and c != ncol and data[c].nunique() > 1][:3]
        for key, g in (data.groupby(groups) if groups else [("all", data)]):
            g = g.groupby(ncol, as_index=False)[ycol].median().sort_values(ncol)
            label = ", ".join(f"{c}={v}" for c, v in zip(groups, key if isinstance(key, tuple) else (key,))) if groups else "all"
            ax.plot(g[ncol], g[ycol], "o-", ms=3, lw=1.2, alpha=0.85, label=label)
        ax.set_xlabel(f"nodes N ({ncol})")
        ax.set_ylabel(f"{ycol} (median per N)")
        if len(data) and data[ncol].min() > 0 and data[ncol].max() / data[ncol].min() > 20:
            ax.set_xscale("log")
        if ycol in TIME_COLUMNS and (data[ycol] > 0).all():
            ax.set_yscale("log")
        else:
            ax.set_yscale("symlog", linthresh=1)
            if len(data) and data[ycol].min() >= 0:
                ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6.5, ncol=2, loc="upper center", bbox_to_anchor=(0.5, -0.14))
    return [Figure(section, "partial-norm scaling", _save(fig, out_dir, "partial_norm_scaling.png"), f"data: {source}")]
