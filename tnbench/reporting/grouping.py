"""Never pool different settings: the report's summary rows are the runs that differ only by seed.

Every config value of a record (flattened to dotted keys: `dataset.train_subset`,
`pipeline.retrain_epochs`, `budget.ratio`, `method.rank`, ...) that differs between the runs of
a report splits them, except the seed and what cannot change a number (the run key's own list,
`tnbench.pipeline.identity.NOT_RESULTS`: paths, loggers, displays). The differing keys outside
`method.*` become columns (an option added after a record was written counts there as its
old-behaviour default, `tnbench.pipeline.identity.ADDED`); the method's options that differ between runs of that method become
its `setting` (the option a budget searched is left out: it is an outcome, shown as `knob`).
Seeds are aggregated as mean, standard deviation and count, with a 95% confidence interval of
the mean (Student's t) where there are 3 or more.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

SKIPPED = ("seed", "run_id", "experiment_name", "hydra")
# How a plugin entry was found (`_target_` in its YAML, or an entry point without one) is not a
# setting: the runs are one setting and one run key (tnbench.pipeline.identity keys a plugin by
# the object it resolves to), so the report neither splits them nor shows `_target_=...`.
ENTRY_ROUTE = ("dataset._target_", "model._target_", "method._target_")


def _config(rec: dict[str, Any]) -> dict[str, Any]:
    """The record's config, options added since it was written at their old-behaviour default."""
    from tnbench.pipeline.identity import with_added_defaults

    return with_added_defaults(rec.get("config") or {})


def _ignored() -> tuple[str, ...]:
    from tnbench.pipeline.identity import NOT_RESULTS

    return (*SKIPPED, *NOT_RESULTS)


def _plain(value: Any) -> Any:
    if isinstance(value, (list, tuple, dict)):
        return str(value)
    return value


def config_frame(records: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per record: its config's leaves as dotted columns (lists as text), minus the seed
    and the settings that cannot change a number (the run key's lists, the method's unread options)."""
    from tnbench.config import budget_kind
    from tnbench.pipeline.identity import method_ignores

    ignored = _ignored()
    rows = []
    for rec in records:
        config = _config(rec)
        method = config.get("method") if isinstance(config.get("method"), dict) else {}
        unread = tuple(f"method.{o}" for o in method_ignores(method, budget_kind(config.get("budget")) is not None))
        flat = pd.json_normalize(config, sep=".").to_dict("records")
        row = {k: _plain(v) for k, v in (flat[0] if flat else {}).items()
               if k not in ENTRY_ROUTE and not any(k == p or k.startswith(p + ".") for p in (*ignored, *unread))}
        rows.append(row)
    return pd.DataFrame(rows, index=range(len(records)))


def differing(frame: pd.DataFrame) -> list[str]:
    """The columns with more than one distinct value (a missing value counts as one)."""
    return [c for c in frame.columns if frame[c].astype(str).nunique(dropna=False) > 1]


def label(key: str) -> str:
    """A human header for a dotted config key: `pipeline.retrain_optimizer.lr` -> `retrain optimizer lr`."""
    parts = key.split(".")
    if parts[0] in ("dataset", "pipeline", "trainer") and len(parts) > 1:
        parts = parts[1:]
    return " ".join(parts).replace("_", " ")


def add_settings(runs: pd.DataFrame, records: list[dict[str, Any]]) -> tuple[pd.DataFrame, list[str], dict[str, Any]]:
    """`runs` with a column per differing non-method setting (named by its dotted key) and
    `method_setting` (the method's differing options as k=v); returns it, the setting columns,
    and the settings all runs share."""
    cfg = config_frame(records)
    keys = [k for k in differing(cfg) if not k.startswith("method.")]
    common = {k: cfg[k].iloc[0] for k in cfg.columns if k not in differing(cfg) and not k.startswith("method.")}
    out = runs.copy()
    order = out["_i"].astype(int).to_numpy()
    for k in keys:
        out[k] = cfg[k].to_numpy()[order]
    names = pd.Series([r.get("method") for r in records])
    settings = [""] * len(records)
    for method in names.dropna().unique():
        idx = names.index[names == method]
        sub = cfg.loc[idx, [c for c in cfg.columns if c.startswith("method.") and c != "method.name"]]
        vary = differing(sub)
        for i in idx:
            searched = set((records[i].get("budget_knob") or {}).keys())
            parts = [f"{c[len('method.'):]}={sub.at[i, c]}" for c in vary if c[len("method."):] not in searched
                     and not _missing(sub.at[i, c])]
            settings[i] = " ".join(parts)
    out["method_setting"] = [settings[i] for i in order]
    out["knob"] = [" ".join(f"{k}={_short(v)}" for k, v in (records[i].get("budget_knob") or {}).items()) for i in order]
    return out, keys, common


def _missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def _short(v: Any) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)


def t_quantile(n: int) -> float:
    """The 97.5% quantile of Student's t with n - 1 degrees of freedom."""
    from scipy import stats

    return float(stats.t.ppf(0.975, n - 1))


def seed_stats(values: pd.Series) -> dict[str, Any]:
    """mean, std (ddof 1), n and the half-width of the 95% interval of the mean (n >= 3)."""
    v = pd.to_numeric(values, errors="coerce").dropna()
    n = len(v)
    std = float(v.std(ddof=1)) if n > 1 else np.nan
    ci = t_quantile(n) * std / math.sqrt(n) if n >= 3 else np.nan
    return {"mean": float(v.mean()) if n else np.nan, "std": std, "n": n, "ci95": ci}


GROUP_HEAD = ["dataset", "model", "method"]
SUMMARY_TAIL = ["setting", "knob", "seeds", "acc_pretrain", "acc_compressed", "acc_compressed_std",
                "acc_retrained", "acc_retrained_std", "acc_retrained_ci95", "compression_ratio_compressed",
                "compression_ratio", "budget_reached",
                "recovered", "recovery_epochs", "flops_ratio", "time_total_s"]


def summarize(runs: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """One row per distinct setting (dataset, model, method, every differing config value, the
    method's own options), seeds aggregated; ok runs only."""
    columns = [*GROUP_HEAD, *keys, *SUMMARY_TAIL]
    ok = runs[runs["status"] == "ok"]
    if ok.empty:
        return pd.DataFrame(columns=columns)
    by = [*GROUP_HEAD, *keys, "method_setting"]
    rows = []
    for values, g in ok.groupby(by, dropna=False, sort=False):
        row = dict(zip(by, values))
        row["setting"] = row.pop("method_setting")
        acc, comp = seed_stats(g["acc_retrained"]), seed_stats(g["acc_compressed"])
        rec = pd.to_numeric(g["recovery_epochs"], errors="coerce")
        flops_c = pd.to_numeric(g.get("flops_compressed"), errors="coerce").mean()
        knobs = sorted(set(g["knob"]) - {""})
        row.update({
            "knob": ", ".join(knobs), "seeds": acc["n"], "acc_pretrain": g["acc_pretrain"].mean(),
            "acc_compressed": comp["mean"], "acc_compressed_std": comp["std"],
            "acc_retrained": acc["mean"], "acc_retrained_std": acc["std"], "acc_retrained_ci95": acc["ci95"],
            "compression_ratio_compressed": pd.to_numeric(g.get("compression_ratio_compressed",
                                                                g["compression_ratio"]), errors="coerce").mean(),
            "compression_ratio": g["compression_ratio"].mean(),
            "budget_reached": pd.to_numeric(g.get("budget_reached"), errors="coerce").mean(),
            "recovered": f"{int(rec.notna().sum())}/{len(g)}",
            "recovery_epochs": rec.median() if rec.notna().any() else np.nan,
            "flops_ratio": g["flops_dense"].mean() / flops_c if flops_c and flops_c > 0 else np.nan,
            "time_total_s": pd.to_numeric(g.get("time_total_s"), errors="coerce").mean(),
        })
        rows.append(row)
    out = pd.DataFrame(rows)
    for c in columns:
        if c not in out:
            out[c] = np.nan
    out = out[columns]
    return out.sort_values([*GROUP_HEAD, *keys, "compression_ratio"], kind="stable", na_position="last") \
        .reset_index(drop=True)
