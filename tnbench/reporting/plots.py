"""The report's figures, drawn with matplotlib's Agg backend into PNG files.

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
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

DPI = 110
MAX_RANK_PANELS = 12
NEVER = "never"


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
    out_dir.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(out_dir / name, dpi=DPI)
    plt.close(fig)
    return name


def _colors(keys: Iterable[str]) -> dict[str, Any]:
    keys = sorted(set(keys))
    cmap = plt.get_cmap("tab10" if len(keys) <= 10 else "tab20")
    return {k: cmap(i % cmap.N) for i, k in enumerate(keys)}


MARKERS = "osD^vP*Xh<>p"


def _markers(keys: Iterable[str]) -> dict[str, str]:
    return {k: MARKERS[i % len(MARKERS)] for i, k in enumerate(sorted(set(keys)))}


def pareto_front(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The points no other point beats on both compression (higher) and accuracy (higher),
    ordered by compression."""
    order = np.lexsort((-y, -x))  # by x descending, ties: best y first
    best = -math.inf
    keep = []
    for i in order:
        if y[i] > best:
            keep.append(i)
            best = y[i]
    keep = keep[::-1]
    return x[keep], y[keep]


def _numeric(df: pd.DataFrame, *cols: str) -> pd.DataFrame:
    out = df.copy()
    for c in cols:
        out[c] = pd.to_numeric(out[c], errors="coerce")
    return out.dropna(subset=list(cols))


def accuracy_vs_compression(runs: pd.DataFrame, published: pd.DataFrame, out_dir: Path) -> list[Figure]:
    """Per dataset and model: test accuracy after retraining against the compression ratio of the
    whole model (left) and the compression rate of the compressed layers (right), each method's
    Pareto front as a line, published points (the papers' own definitions) as black stars."""
    section = "Accuracy vs compression"
    pairs = sorted(set(zip(runs["dataset"], runs["model"])) | set(zip(published["dataset"], published["model"])))
    figures, published_only = [], []
    colors, markers = _colors(runs["method"]), _markers(runs["method"])
    paper_markers = _markers(published["paper"])
    for dataset, model in pairs:
        sub = runs[(runs.dataset == dataset) & (runs.model == model)]
        pub = published[(published["dataset"] == dataset) & (published["model"] == model)]
        if sub.empty:
            if not pub.empty:
                published_only.append(f"{model} / {dataset}")
            continue
        fig, axes = plt.subplots(1, 2, figsize=(12, 4.6), sharey=True)
        drew = False
        for ax, xcol, label, pub_col in (
            (axes[0], "compression_ratio", "compression ratio (dense / compressed parameters, log)", "compression_ratio"),
            (axes[1], "compression_rate", "compression rate of the compressed layers (% of weights removed)", "compression_rate"),
        ):
            pts = _numeric(sub, xcol, "acc_retrained")
            for method, g in pts.groupby("method"):
                x, y = g[xcol].to_numpy(float), g["acc_retrained"].to_numpy(float)
                ax.scatter(x, y, s=24, color=colors[method], marker=markers[method], alpha=0.8, label=method)
                fx, fy = pareto_front(x, y)
                if len(fx) > 1:
                    ax.plot(fx, fy, color=colors[method], lw=1.4)
                drew = True
            if not pub.empty:
                for paper, pp in _numeric(pub, pub_col, "accuracy").groupby("paper"):
                    ax.scatter(pp[pub_col], pp["accuracy"], marker=paper_markers[paper], s=70, facecolor="none",
                               edgecolor="black", lw=1.2, zorder=5, label=f"published: {paper}")
                    for _, r in pp.iterrows():
                        ax.annotate(str(r["setting"]), (r[pub_col], r["accuracy"]), fontsize=6.5,
                                    xytext=(4, 3), textcoords="offset points")
                    drew = True
            if xcol == "compression_ratio" and ax.has_data():
                ax.set_xscale("log")
            ax.set_xlabel(label)
            ax.grid(alpha=0.3)
        axes[0].set_ylabel("test accuracy after retraining (%)")
        handles, labels = axes[0].get_legend_handles_labels()
        h2, l2 = axes[1].get_legend_handles_labels()
        seen = dict(zip(labels, handles)) | {k: v for k, v in zip(l2, h2) if k not in labels}
        if seen:
            axes[1].legend(seen.values(), seen.keys(), fontsize=8, loc="best")
        fig.suptitle(f"{model} on {dataset}: accuracy vs compression (lines: Pareto front per method)")
        if not drew:
            plt.close(fig)
            continue
        figures.append(Figure(section, f"{model} / {dataset}", _save(fig, out_dir, f"acc_vs_compression_{slug(dataset, model)}.png")))
    if published_only:
        figures.append(Figure(section, "published points without runs", note="published numbers for "
                              f"{', '.join(published_only)} but no ok run there (see the reference comparison)"))
    if not any(f.path for f in figures):
        figures.insert(0, Figure(section, "accuracy vs compression", note="no ok run with a compression ratio and "
                                 "an accuracy: nothing to draw"))
    return figures


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
        ax.set_title(f"{model} on {dataset}: truncation per cut (dotted: after retraining)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        figures.append(Figure(section, f"{model} / {dataset}", _save(fig, out_dir, f"norm_loss_{slug(dataset, model)}.png")))
    return figures


def recovery_epochs(runs: pd.DataFrame, out_dir: Path) -> list[Figure]:
    """Retrain epochs until the pretrained accuracy is back (within the tolerance), per method;
    runs that never got there sit on the `never` row."""
    section = "Recovery epochs"
    if runs.empty:
        return [Figure(section, "recovery epochs", note="no ok runs")]
    retrained = runs[runs["config_retrain_epochs"].fillna(0) > 0]
    if retrained.empty:
        return [Figure(section, "recovery epochs", note="no ok run with retraining (pipeline.retrain_epochs > 0)")]
    methods = sorted(retrained["method"].unique())
    epochs = pd.to_numeric(retrained["recovery_epochs"], errors="coerce")
    last = int(np.nanmax([epochs.max() if epochs.notna().any() else 0, retrained["config_retrain_epochs"].max()]))
    step = max(1, (last + 1) // 10)
    top = last + 2 * step  # the `never` row, clear of the last epoch
    fig, ax = plt.subplots(figsize=(max(7.0, 0.8 * len(methods) + 2), 4.2))
    rng = np.random.default_rng(0)
    for i, m in enumerate(methods):
        e = epochs[retrained["method"] == m]
        done = e.dropna().to_numpy(float)
        never = int(e.isna().sum())
        if len(done):
            ax.scatter(i + rng.uniform(-0.15, 0.15, len(done)), done, s=18, alpha=0.7, color="C0")
            ax.hlines(np.median(done), i - 0.3, i + 0.3, color="C3", lw=2)
        if never:
            ax.scatter([i], [top], marker="x", color="C3", s=40)
            ax.annotate(str(never), (i, top), xytext=(6, -3), textcoords="offset points", fontsize=8)
    ax.set_xticks(range(len(methods)), methods, rotation=30, ha="right")
    ticks = list(range(0, last + 1, step))
    ax.set_yticks(ticks + [top], [str(t) for t in ticks] + [NEVER])
    ax.set_ylabel("recovery epochs (red bar: median)")
    ax.set_title("Retrain epochs until the pretrained accuracy is back\n(x: never got there, with the count)", fontsize=10)
    ax.grid(alpha=0.3, axis="y")
    return [Figure(section, "recovery epochs per method", _save(fig, out_dir, "recovery_epochs.png"))]


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
        fig.suptitle(f"{method}: ranks while retraining, {model} on {dataset}")
        note = f"first {MAX_RANK_PANELS} of {len(sub)} runs" if len(sub) > MAX_RANK_PANELS else ""
        figures.append(Figure(section, f"{method} / {model} / {dataset}",
                              _save(fig, out_dir, f"rank_history_{slug(dataset, model, method)}.png"), note))
    return figures


N_COLUMNS = ("N", "n", "num_nodes", "n_nodes", "nodes")
STEP_COLUMNS = ("normalization_steps", "steps", "norm_steps", "iterations")
TIME_COLUMNS = ("time_s", "seconds", "time", "wall_s")
GROUP_COLUMNS = ("layout", "network", "kind", "structure", "protocol", "norm", "init", "p", "b", "bond_dim", "phys_dim")


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
    fig.suptitle("Partial-norm initialization: cost against the number of nodes"
                 + (" (Frobenius norm)" if frobenius else ""))
    return [Figure(section, "partial-norm scaling", _save(fig, out_dir, "partial_norm_scaling.png"), f"data: {source}")]
