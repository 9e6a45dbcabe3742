"""The truncation study's tables (tnbench.studies.truncation): one row per grid point, the
spectra of every conv along every cut, and the tolerated norm loss. Every loss is given in the
forms of tnbench.functional.approximation: norm loss 1 - ||W_t|| / ||W|| (what the grid
targets), its energy form 1 - ||W_t||^2 / ||W||^2, the relative error and the correlation loss
(share of the cut's singular values discarded), each the mean over the truncated layers."""
from __future__ import annotations

import math
from typing import Any

import pandas as pd
import torch
from torch import nn

from tnbench.functional.approximation import energy_norm_loss, truncation_losses
from tnbench.functional.bipartition import factorized_params, spectrum

ALL = "all"


def spectra_frame(layers: list[tuple[str, nn.Module]], cuts: list[str]) -> pd.DataFrame:
    rows = []
    for depth, (name, layer) in enumerate(layers):
        w = layer.weight.detach()
        for cut in cuts if w.ndim == 4 else ["out"]:
            s = spectrum(w, cut) if w.ndim == 4 else torch.linalg.svdvals(w.double())
            losses = truncation_losses(s)
            for k in range(1, s.numel() + 1):
                params = factorized_params(tuple(w.shape), cut, k) if w.ndim == 4 else k * sum(w.shape)
                rows.append({"layer": name, "depth": depth, "shape": "x".join(map(str, w.shape)), "cut": cut,
                             "k": k, "max_rank": s.numel(), "singular_value": float(s[k - 1]),
                             "normalized": float(s[k - 1] / s[0]) if s[0] > 0 else 0.0,
                             "norm_loss_keeping_k": float(losses["norm_loss"][k]),
                             "norm_loss_energy_keeping_k": float(losses["norm_loss_energy"][k]),
                             "correlation_loss_keeping_k": float(losses["correlation_loss"][k]),
                             "rank_fraction": k / s.numel(), "params_fraction": params / w.numel()})
    return pd.DataFrame(rows)


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else math.nan


def row(method: str, cut: str, target_kind: str, target: float, setting: str, depth: Any, reports: list,
        acc: float, dense_acc: float, evaluated: bool) -> dict[str, Any]:
    dense = sum(r.weight_params_dense for r in reports)
    fact = sum(min(r.extra.get("params_factorized", r.weight_params_dense), r.weight_params_dense) for r in reports)
    losses = [r.norm_loss for r in reports]
    return {
        "method": method, "cut": cut, "target_kind": target_kind, "target": target, "layers": setting,
        "depth": depth, "n_layers": len(reports),
        "ranks": "/".join(str(r.ranks[0]) for r in reports),
        "max_ranks": "/".join(str(r.extra.get("max_rank", "")) for r in reports),
        "norm_loss": _mean(losses), "norm_loss_max": max(losses),
        "norm_loss_energy": _mean([energy_norm_loss(v) for v in losses]),
        # CP has no bipartition: no correlation loss
        "correlation_loss": _mean([r.extra["correlation_loss"] for r in reports if "correlation_loss" in r.extra]),
        "relative_error": _mean([r.relative_error for r in reports]),
        "params_dense": dense, "params_factorized": fact, "compression_rate": 100.0 * (1 - fact / dense),
        "accuracy": acc, "accuracy_dense": dense_acc, "accuracy_drop": dense_acc - acc, "evaluated": evaluated,
    }


def backfill(table: pd.DataFrame, spectra: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Tables written before the energy form and the correlation loss were recorded get them
    from their own columns: each layer's norm loss at the row's rank is in spectra.csv (rows
    list their layers' ranks in order), so nothing is re-evaluated."""
    if "norm_loss_energy_keeping_k" not in spectra.columns:
        spectra = spectra.copy()
        at = list(spectra.columns).index("norm_loss_keeping_k") + 1
        spectra.insert(at, "norm_loss_energy_keeping_k", spectra.norm_loss_keeping_k.map(energy_norm_loss))
        spectra.insert(at + 1, "correlation_loss_keeping_k", 1.0 - spectra.k / spectra.max_rank)
    if {"norm_loss_energy", "correlation_loss"} <= set(table.columns):
        return table, spectra
    table = table.copy()
    losses = {(r.layer, r.cut, int(r.k)): r.norm_loss_keeping_k for r in spectra.itertuples()}
    convs = list(dict.fromkeys(spectra.layer))
    energy, correlation = [], []
    for r in table.itertuples():
        names = convs if r.layers == ALL else [r.layers]
        ranks = [int(v) for v in str(r.ranks).split("/")]
        if r.method != "svd" or len(names) != len(ranks):
            energy.append(energy_norm_loss(r.norm_loss) if r.n_layers == 1 else math.nan)
            correlation.append(math.nan)
            continue
        maxima = [int(v) for v in str(r.max_ranks).split("/")]
        energy.append(_mean([energy_norm_loss(losses[(n, r.cut, k)]) for n, k in zip(names, ranks)]))
        correlation.append(_mean([1.0 - k / m for k, m in zip(ranks, maxima)]))
    at = list(table.columns).index("norm_loss_max") + 1
    table.insert(at, "norm_loss_energy", energy)
    table.insert(at + 1, "correlation_loss", correlation)
    return table, spectra


def tolerated(table: pd.DataFrame, threshold: float) -> pd.DataFrame:
    """Per (cut, layers): the largest target norm loss such that it and every smaller target lose
    at most `threshold` points."""
    out = []
    svd = table[table.method == "svd"]
    for (cut, setting), g in svd.groupby(["cut", "layers"], sort=False):
        g = g.sort_values("target")
        ok = (g.accuracy_drop <= threshold).to_numpy()
        n = len(ok) if ok.all() else int(ok.argmin())
        out.append({"cut": cut, "layers": setting, "depth": g.depth.iloc[0],
                    "tolerated_norm_loss": float(g.target.iloc[n - 1]) if n else 0.0,
                    "drop_at_0.5": float(g[g.target == 0.5].accuracy_drop.iloc[0]) if (g.target == 0.5).any() else math.nan})
    return pd.DataFrame(out)
