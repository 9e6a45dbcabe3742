"""The truncation study's figures (tnbench.studies.truncation): accuracy against the truncation
per cut and per layer setting, the spectra, and the depth summary. matplotlib, Agg backend."""
from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

ALL = "all"
X_AXES = {"norm_loss": "norm loss 1 - ||W_t|| / ||W||", "norm_loss_energy": "norm loss, energy 1 - ||W_t||^2 / ||W||^2",
          "relative_error": "relative error ||W - W_t|| / ||W||"}


def _grid(n: int, sharey: bool = True) -> tuple[plt.Figure, Any]:
    ncol = min(4, n)
    nrow = math.ceil(n / ncol)
    return plt.subplots(nrow, ncol, figsize=(4 * ncol, 3.2 * nrow), squeeze=False, sharey=sharey)


def _finish_grid(axes: Any, used: int, ylabel: str, legend_title: str) -> None:
    for ax in axes[:, 0]:
        ax.set_ylabel(ylabel)
    for ax in list(axes.flat)[used:]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7, title=legend_title, title_fontsize=7)


def accuracy_grids(table: pd.DataFrame, save: Callable[[plt.Figure, str], None], colour: Callable[[str], Any],
                   cut_colours: dict[str, Any]) -> None:
    """Accuracy against the truncation: a panel per cut with a line per layer setting (against
    the norm loss in both forms and the relative error), then a panel per setting with a line per cut (against norm
    loss, and against what the factorized form would save: cuts whose ranks cost very different
    numbers of parameters compared fairly)."""
    dense = float(table.accuracy_dense.iloc[0])
    settings = list(dict.fromkeys(table.layers))
    singles = [s for s in settings if s != ALL]
    cuts = list(dict.fromkeys(table.cut))
    axes_files = [("norm_loss", "accuracy_by_cut.png"), ("norm_loss_energy", "accuracy_vs_energy_norm_loss.png"),
                  ("relative_error", "accuracy_vs_relative_error.png")]
    for x, name in [(x, n) for x, n in axes_files if x in table.columns]:
        fig, axes = _grid(len(cuts))
        for ax, cut in zip(axes.flat, cuts):
            for setting in settings:
                g = table[(table.cut == cut) & (table.layers == setting)].sort_values(x)
                if len(g):
                    ax.plot(g[x], g.accuracy, "o-", ms=3, color=colour(setting), label=setting,
                            lw=2 if setting == ALL else 1)
            ax.axhline(dense, color="grey", ls=":", lw=1)
            ax.set_title(f"cut {cut}" if cut != "cp" else "CP decomposition")
            ax.set_xlabel(X_AXES[x] + (" (mean over layers)" if len(singles) > 1 else ""), fontsize=8)
        _finish_grid(axes, len(cuts), "test accuracy (%)", "layers (shallow->deep)")
        save(fig, name)
    for x, xlabel, name in (("norm_loss", "norm loss", "accuracy_by_layer.png"),
                            ("compression_rate", "weights removed if factorized (%)", "accuracy_vs_compression.png")):
        fig, axes = _grid(len(settings))
        for ax, setting in zip(axes.flat, settings):
            for cut in cuts:
                g = table[(table.cut == cut) & (table.layers == setting)].sort_values(x)
                if len(g):
                    ax.plot(g[x], g.accuracy, "o-", ms=3, color=cut_colours[cut], label=cut, lw=2 if cut == "out" else 1)
            ax.axhline(dense, color="grey", ls=":", lw=1)
            ax.set_title(f"layers: {setting}")
            ax.set_xlabel(xlabel)
        _finish_grid(axes, len(settings), "test accuracy (%)", "cut")
        save(fig, name)


def spectra_grids(spectra: pd.DataFrame, save: Callable[[plt.Figure, str], None], cut_colours: dict[str, Any]) -> None:
    """Per conv: the normalized spectrum of every cut, and the norm loss against the factorized size."""
    layers = list(dict.fromkeys(spectra.layer))
    for name, x, y, ylabel, log in [("spectra.png", "rank_fraction", "normalized", "s_k / s_1", True),
                                    ("norm_loss_vs_params.png", "params_fraction", "norm_loss_keeping_k",
                                     "norm loss keeping top k", False)]:
        fig, axes = _grid(len(layers), sharey=False)
        for ax, layer in zip(axes.flat, layers):
            g = spectra[spectra.layer == layer]
            for cut, gc in g.groupby("cut", sort=False):
                ax.plot(gc[x], gc[y], ".-", ms=3, lw=1, label=cut, color=cut_colours.get(cut))
            ax.set_title(f"{layer} ({g['shape'].iloc[0]})", fontsize=9)
            ax.set_xlabel("k / max rank" if x == "rank_fraction" else "factorized params / dense (top k kept)")
            if log:
                ax.set_yscale("log")
            else:
                ax.axvline(1.0, color="grey", ls=":", lw=1)
        _finish_grid(axes, len(layers), ylabel, "cut")
        save(fig, name)


def depth_summary(table: pd.DataFrame, tol: pd.DataFrame, threshold: float, save: Callable[[plt.Figure, str], None],
                  cut_colours: dict[str, Any]) -> None:
    """The accuracy drop at a few fixed targets, and the tolerated norm loss (noisier: one point of
    accuracy on a small eval set is a handful of images), against the depth of the layer truncated
    alone, per cut."""
    singles = [s for s in dict.fromkeys(table.layers) if s != ALL]
    svd_singles = table[(table.method == "svd") & (table.layers != ALL)]
    if not singles or not len(svd_singles):
        return
    grid = sorted(svd_singles.target.unique())
    shown = [t for t in (0.3, 0.5) if t in grid] or grid[len(grid) // 2:len(grid) // 2 + 1]
    fig, axes = plt.subplots(1, len(shown) + 1, figsize=(4.5 * (len(shown) + 1), 3.6), squeeze=False)
    for ax, target in zip(axes.flat, shown):
        at = svd_singles[svd_singles.target == target]
        for cut, g in at.groupby("cut", sort=False):
            ax.plot(g.depth, g.accuracy_drop, "o-", label=cut, color=cut_colours.get(cut))
        ax.set_title(f"target norm loss {target}")
        ax.set_ylabel("accuracy drop (points)")
    ax = axes.flat[len(shown)]
    for cut, g in tol[tol.layers != ALL].groupby("cut", sort=False):
        ax.plot(g.depth, g.tolerated_norm_loss, "o-", label=cut, color=cut_colours.get(cut))
    ax.set_title(f"largest norm loss within {threshold:g} points")
    for ax in axes.flat:
        ax.set_xticks(range(len(singles)), singles, rotation=30, fontsize=8)
        ax.set_xlabel("layer truncated alone (shallow -> deep)")
    axes.flat[0].legend(fontsize=7, title="cut", title_fontsize=7)
    save(fig, "depth_summary.png")


def plot_all(table: pd.DataFrame, spectra: pd.DataFrame, tol: pd.DataFrame, out: Path, title: str,
             threshold: float) -> list[Path]:
    written: list[Path] = []
    singles = [s for s in dict.fromkeys(table.layers) if s != ALL]
    cmap = plt.get_cmap("viridis")
    cut_colours = {c: plt.get_cmap("tab10")(i) for i, c in enumerate(dict.fromkeys(table.cut))}

    def colour(setting: str) -> Any:
        return "black" if setting == ALL else cmap(singles.index(setting) / max(len(singles) - 1, 1))

    def save(fig: plt.Figure, name: str) -> None:
        fig.suptitle(title)
        fig.tight_layout()
        fig.savefig(out / name, dpi=120)
        plt.close(fig)
        written.append(out / name)

    accuracy_grids(table, save, colour, cut_colours)
    spectra_grids(spectra, save, cut_colours)
    depth_summary(table, tol, threshold, save, cut_colours)
    return written


RECOVERY_AXES = (("norm_loss", X_AXES["norm_loss"]), ("norm_loss_energy", X_AXES["norm_loss_energy"]))
SERIES_STYLE = {"dense": "-", "factorized": "--"}


def recovery_plots(frame: pd.DataFrame, out: Path, title: str) -> list[Path]:
    """The truncation recovery study (tnbench.studies.truncation_recovery): accuracy against
    the achieved norm loss in both forms, right after truncation and after each retrain epoch
    (darker = later), per series; and accuracy against the retrain epoch per target."""
    written: list[Path] = []
    if frame.empty:
        return written
    epochs = sorted(int(c.rsplit("_", 1)[1]) for c in frame.columns if c.startswith("acc_epoch_"))
    stages = [("acc_compressed", "after truncation")] + [(f"acc_epoch_{e}", f"retrain epoch {e}") for e in epochs]
    shades = plt.get_cmap("viridis")
    dense_acc = float(frame.acc_pretrain.iloc[0])
    control = frame[frame.series == "control"]
    trunc = frame[frame.series != "control"]

    def references(ax: Any) -> None:
        ax.axhline(dense_acc, color="grey", ls=":", lw=1, label="dense, before truncation")
        if len(control) and epochs:
            ax.axhline(float(control[f"acc_epoch_{epochs[-1]}"].iloc[0]), color="black", ls="-.", lw=1,
                       label=f"dense retrained {epochs[-1]} epochs (control)")

    fig, axes = plt.subplots(1, len(RECOVERY_AXES), figsize=(6.5 * len(RECOVERY_AXES), 4.4), squeeze=False)
    for ax, (x, xlabel) in zip(axes.flat, RECOVERY_AXES):
        for (series, cut), g in trunc.groupby(["series", "cut"], sort=False):
            g = g.sort_values(x)
            for i, (col, label) in enumerate(stages):
                ax.plot(g[x], g[col], "o" + SERIES_STYLE.get(series, "-"), ms=3, color=shades(i / max(len(stages) - 1, 1)),
                        label=f"{series} ({cut}): {label}")
        references(ax)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("test accuracy (%)")
    axes.flat[0].legend(fontsize=6, ncol=2)
    fig.suptitle(title + " (solid: dense truncated, retrained dense; dashed: factorized)")
    fig.tight_layout()
    fig.savefig(out / "recovery.png", dpi=120)
    plt.close(fig)
    written.append(out / "recovery.png")

    groups = list(trunc.groupby(["series", "cut"], sort=False))
    fig, axes = plt.subplots(1, max(len(groups), 1), figsize=(5 * max(len(groups), 1), 3.8), squeeze=False, sharey=True)
    for ax, ((series, cut), g) in zip(axes.flat, groups):
        for i, r in enumerate(g.sort_values("target").itertuples()):
            accs = [getattr(r, col) for col, _ in stages]
            ax.plot(range(len(accs)), accs, "o-", ms=3, color=shades(i / max(len(g) - 1, 1)),
                    label=f"norm loss {r.norm_loss:.2f} (energy {r.norm_loss_energy:.2f})")
        references(ax)
        ax.set_title(f"{series}, cut {cut}")
        ax.set_xlabel("retrain epoch (0: right after truncation)")
        ax.legend(fontsize=6)
    axes.flat[0].set_ylabel("test accuracy (%)")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(out / "recovery_epochs.png", dpi=120)
    plt.close(fig)
    written.append(out / "recovery_epochs.png")
    return written
