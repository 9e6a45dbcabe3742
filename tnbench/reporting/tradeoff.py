"""The comparison figures: accuracy against compression, and accuracy while retraining.

Both read the report's summary (one row per setting, seeds aggregated: tnbench.reporting.grouping)
or its runs, draw one figure per dataset and model (and per value of any other setting that
differs, so that nothing is pooled), and save it as PNG (200 dpi) and PDF. Titles are not drawn
into the figures: the report's page gives them. Each method has one colour in every figure and
every report (`method_color`).
"""
from __future__ import annotations

import hashlib
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tnbench.reporting.plots import Figure, _save, plt, slug

# one colour per method, the same in every figure (methods not listed: a colour from their name)
METHOD_ORDER = ("none", "svd", "svd_truncation", "tucker", "tucker_adaptive", "cp", "dlrt", "mpo", "tt", "peps",
                "adtn", "adqc")
PALETTE = ("#4c4c4c", "#1f77b4", "#aec7e8", "#ff7f0e", "#ffbb78", "#2ca02c", "#98df8a", "#d62728", "#9467bd",
           "#c5b0d5", "#8c564b", "#e377c2")
MARKERS = {"svd": "o", "svd_truncation": "o", "tucker": "s", "tucker_adaptive": "s", "cp": "D", "dlrt": "o",
           "mpo": "^", "tt": "v", "peps": "P", "adtn": "X", "adqc": "*", "none": "h"}


def method_color(method: str) -> str:
    if method in METHOD_ORDER:
        return PALETTE[METHOD_ORDER.index(method)]
    h = int(hashlib.sha256(method.encode()).hexdigest()[:6], 16)
    return plt.get_cmap("tab20")(h % 20)


def save_both(fig: Any, out_dir: Path, stem: str) -> str:
    return _save(fig, out_dir, f"{stem}.png")


def ratio_axis(ax: Any, xs: np.ndarray) -> None:
    """Log2 axis with ticks 1x, 2x, 4x, ... spanning the data."""
    lo = 2.0 ** math.floor(math.log2(max(min(xs.min(), 1.0), 1e-9)))
    hi = 2.0 ** math.ceil(math.log2(max(xs.max(), 2.0)))
    ax.set_xscale("log", base=2)
    ticks = [2.0**k for k in range(int(math.log2(lo)), int(math.log2(hi)) + 1)]
    ax.set_xticks(ticks, [f"{t:g}x" for t in ticks])
    ax.set_xticks([], minor=True)
    ax.set_xlim(lo / 1.15, hi * 1.15)


def point_label(row: pd.Series) -> str:
    """A short name for a setting on the Pareto front: the knob a budget chose, else the setting."""
    text = str(row.get("knob") or row.get("setting") or "")
    return text if len(text) <= 18 else text[:17] + "\u2026"


def pareto(xs: np.ndarray, ys: np.ndarray) -> list[int]:
    """Indices of the points no other beats on compression and accuracy, by compression."""
    order = np.lexsort((-ys, -xs))
    best, keep = -math.inf, []
    for i in order:
        if ys[i] > best:
            keep.append(int(i))
            best = ys[i]
    return keep[::-1]


def panels(table: pd.DataFrame, keys: list[str]) -> list[tuple[tuple[str, str, str], pd.DataFrame]]:
    """(dataset, model, what else is fixed) -> rows: one figure per value of the other settings
    that differ (the budget is the x axis, so it does not split figures)."""
    out = []
    for (dataset, model), sub in table.groupby(["dataset", "model"], sort=True):
        split = [k for k in keys if not k.startswith("budget.") and k in sub
                 and sub[k].astype(str).nunique(dropna=False) > 1]
        if not split:
            out.append(((dataset, model, ""), sub))
            continue
        for values, part in sub.groupby(split, dropna=False, sort=True):
            values = values if isinstance(values, tuple) else (values,)
            fixed = ", ".join(f"{k.split('.')[-1]}={v}" for k, v in zip(split, values))
            out.append(((dataset, model, fixed), part))
    return out


def accuracy_vs_ratio(summary: pd.DataFrame, keys: list[str], published: pd.DataFrame, out_dir: Path) -> list[Figure]:
    """Accuracy after retraining (filled, error bars: std over seeds) and right after compression
    (hollow) against the whole-model compression ratio; the dense accuracy as a line; each
    method's Pareto front as a line with its points named; published points in black. Where the
    size moved in retraining (rank-adaptive methods), the hollow point sits at the ratio right after
    compression, joined to its retrained point by a dotted line."""
    section = "Accuracy vs compression"
    rows = summary.dropna(subset=["compression_ratio", "acc_retrained"]) if not summary.empty else summary
    if rows.empty:
        return [Figure(section, "accuracy vs compression", note="no ok run with a compression ratio and an accuracy")]
    figures = []
    for (dataset, model, fixed), sub in panels(rows, keys):
        comp = sub[sub["method"] != "none"]
        fig, ax = plt.subplots(figsize=(7.2, 4.4))
        for k, (method, g) in enumerate(comp.groupby("method", sort=True)):
            g = g.sort_values("compression_ratio")
            x, y = g["compression_ratio"].to_numpy(float), g["acc_retrained"].to_numpy(float)
            err = g["acc_retrained_std"].fillna(0).to_numpy(float)
            color, marker = method_color(method), MARKERS.get(method, "o")
            n = int(g["seeds"].max())
            ax.errorbar(x, y, yerr=err, fmt=marker, color=color, ms=6, capsize=3, lw=1,
                        label=f"{method} (n={n})" if n > 1 else method)
            x0 = compressed_ratio(g)
            ax.scatter(x0, g["acc_compressed"], marker=marker, s=30, facecolor="none", edgecolor=color, lw=1, alpha=0.8)
            for a, b, ya, yb in zip(x0, x, g["acc_compressed"].to_numpy(float), y):
                if not math.isclose(a, b, rel_tol=1e-6):
                    ax.plot([a, b], [ya, yb], ls=":", color=color, lw=0.9, alpha=0.7)
            front = pareto(x, y)
            ax.plot(x[front], y[front], color=color, lw=1.3, alpha=0.9)
            for i in front:
                ax.annotate(point_label(g.iloc[i]), (x[i], y[i]), xytext=(5, 8 - 7 * (k % 5)),
                            textcoords="offset points", fontsize=6.5, color=color)
        dense = pd.to_numeric(sub["acc_pretrain"], errors="coerce").dropna()
        if not dense.empty:
            ax.axhline(dense.mean(), color="black", ls="--", lw=1, label=f"dense {dense.mean():.2f}%")
        pub = published[(published["dataset"] == dataset) & (published["model"] == model)] if not published.empty \
            else published
        if not pub.empty:
            pp = pub.dropna(subset=["compression_ratio", "accuracy"])
            if not pp.empty:
                ax.scatter(pp["compression_ratio"], pp["accuracy"], marker="*", s=60, color="black", zorder=5,
                           label="published")
        ax.scatter([], [], marker="o", facecolor="none", edgecolor="grey", label="right after compression")
        xs = np.concatenate([comp["compression_ratio"].to_numpy(float), compressed_ratio(comp), [1.0]])
        ratio_axis(ax, xs)
        ax.set_xlabel("compression ratio (dense / compressed parameters, whole model)")
        ax.set_ylabel("test accuracy (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7.5, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
        stem = f"acc_vs_ratio_{slug(dataset, model, fixed)}"
        title = f"{model} / {dataset}" + (f" ({fixed})" if fixed else "")
        figures.append(Figure(section, title, save_both(fig, out_dir, stem)))
    return figures


def compressed_ratio(rows: pd.DataFrame) -> np.ndarray:
    """The ratio right after compression (the retrained one where a summary has no such column)."""
    col = rows["compression_ratio_compressed"] if "compression_ratio_compressed" in rows else rows["compression_ratio"]
    return pd.to_numeric(col, errors="coerce").fillna(rows["compression_ratio"]).to_numpy(float)


def retraining_curves(runs: pd.DataFrame, records: list[dict[str, Any]], keys: list[str], out_dir: Path,
                      tolerance: float | None = None) -> list[Figure]:
    """Accuracy relative to the dense model per retrain epoch (epoch 0: right after compression),
    mean over seeds, one panel per method, one line per setting; the recovery tolerance as a band."""
    section = "Recovery while retraining"
    curves = []
    for _, row in runs.iterrows():
        rec = records[int(row["_i"])]
        hist, dense, comp = rec.get("retrain_history") or [], rec.get("acc_pretrain"), rec.get("acc_compressed")
        if row.get("method") == "none" or not hist or dense is None or comp is None:
            continue
        curves.append({**{k: row.get(k) for k in ("dataset", "model", "method", "method_setting", *keys)},
                       "label": _curve_label(rec, row), "ratio": row.get("compression_ratio"),
                       "curve": np.array([comp, *hist], float) - float(dense)})
    if not curves:
        return [Figure(section, "retraining curves", note="no ok run with retrain epochs")]
    table = pd.DataFrame(curves)
    figures = []
    for (dataset, model, fixed), sub in panels(table, keys):
        methods = sorted(sub["method"].unique())
        cols = min(3, len(methods))
        nrows = math.ceil(len(methods) / cols)
        fig, axes = plt.subplots(nrows, cols, figsize=(3.6 * cols + 1.0, 2.8 * nrows), squeeze=False, sharey=True)
        for ax, method in zip(axes.flat, methods):
            g = sub[sub["method"] == method]
            cmap = plt.get_cmap("viridis")
            groups = sorted(g.groupby("label", sort=False), key=lambda kv: float(np.nanmean(kv[1]["ratio"])))
            for j, (label, lines) in enumerate(groups):
                length = min(len(c) for c in lines["curve"])
                mean = np.mean(np.stack([c[:length] for c in lines["curve"]]), axis=0)
                ax.plot(range(length), mean, "o-", ms=3, lw=1.2, color=cmap(j / max(1, len(groups) - 1) * 0.85),
                        label=label)
            ax.axhline(0, color="black", lw=0.8, ls="--")
            if tolerance:
                ax.axhspan(-tolerance, 0, color="grey", alpha=0.15, lw=0)
            ax.set_title(method, fontsize=9, color=method_color(method))
            ax.set_xlabel("retrain epoch")
            ax.set_xticks(range(0, max(len(c) for c in g["curve"])))
            ax.grid(alpha=0.3)
            ax.legend(fontsize=6.5, frameon=False)
        for ax in axes[:, 0]:
            ax.set_ylabel("accuracy - dense (points)")
        for ax in list(axes.flat)[len(methods):]:
            ax.axis("off")
        title = f"{model} / {dataset}" + (f" ({fixed})" if fixed else "")
        figures.append(Figure(section, title, save_both(fig, out_dir, f"retraining_{slug(dataset, model, fixed)}")))
    return figures


def _curve_label(rec: dict[str, Any], row: pd.Series) -> str:
    if rec.get("budget_asked") is not None:
        asked = rec["budget_asked"]
        return f"{asked:g}x" if rec.get("budget_kind") == "ratio" else f"{rec.get('budget_kind')} {asked:g}"
    setting = str(row.get("method_setting") or "")
    ratio = row.get("compression_ratio")
    text = setting if len(setting) <= 16 else setting[:15] + "\u2026"
    return f"{text} ({ratio:.1f}x)" if isinstance(ratio, (int, float)) and math.isfinite(ratio) else text or "-"
