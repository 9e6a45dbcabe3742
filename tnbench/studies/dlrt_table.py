"""The DLRT settings study's table: `dlrt` runs under the official code's settings and ours, each
compression rate under both counting rules, beside the published MNIST table.

    python -m tnbench.studies.dlrt_table RUNS_DIR [--out FILE.md]

One row per run record below RUNS_DIR (dlrt and method=none runs of lenet5_dlrt): which settings
(official: `rank_cap=half`, `init=random`, ...; ours: the defaults), tau, the reported test
accuracy (the selected epoch's under `pipeline.select=best_val_loss`, else the last), the dense
reference (the run's dense twin, or the method=none run of the same protocol) and the gap to it,
the ranks, and the rate counted as stored (ours) and by the DLRT table's rule
(tnbench.functional.counting), with the published row of the same tau.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import pandas as pd

from tnbench.functional.counting import DLRT, STORED, paper_count
from tnbench.reporting.records import read_records

REPO = Path(__file__).resolve().parents[2]
PUBLISHED = REPO / "results" / "reference" / "dlrt_2205.13571.csv"


def settings_of(rec: dict[str, Any]) -> str:
    m = (rec.get("config") or {}).get("method") or {}
    if rec.get("method") == "none":
        return "dense"
    official = m.get("rank_cap") == "half" and m.get("init") == "random" and m.get("rank_init") == "cap"
    return "official" if official else "ours"


def row(rec: dict[str, Any], published: dict[str, pd.Series]) -> dict[str, Any]:
    cfg = rec.get("config") or {}
    tau = (cfg.get("method") or {}).get("tau") if rec.get("method") == "dlrt" else None
    layers = rec.get("layers") or []
    rates = {rule: paper_count(rule, layers, rec.get("weights_dense") or 0)["compression_rate_paper"]
             if rec.get("method") == "dlrt" and rec.get("weights_dense") else 0.0 for rule in (STORED, DLRT)}
    pub = published.get(f"tau={tau}" if tau is not None else "full")
    acc = rec.get("acc_selected", rec.get("acc_retrained"))
    dense = rec.get("acc_dense_twin")
    ranks = "; ".join(str(r[0]) for r in (rec.get("ranks") or {}).values() if r)
    return {
        "settings": settings_of(rec), "tau": tau if tau is not None else "-",
        "select": (cfg.get("pipeline") or {}).get("select", "last"),
        "epochs": (cfg.get("pipeline") or {}).get("retrain_epochs"),
        "selected_epoch": rec.get("selected_epoch"), "acc (%)": acc, "dense twin (%)": dense,
        "vs dense (pts)": None if acc is None or dense is None else acc - dense,
        "ranks": ranks or "-", "rate stored (%)": rates[STORED], "rate dlrt rule (%)": rates[DLRT],
        "published acc / ranks / rate dlrt rule / rate stored (MNIST)":
            "-" if pub is None else f"{pub['accuracy']} / {pub['ranks'] or '-'} / {pub['compression_rate']} / "
                                    f"{pub['compression_rate_stored']}",
        "time (s)": rec.get("time_total_s"),
    }


def build(runs_dir: Path) -> pd.DataFrame:
    records, _ = read_records(runs_dir)
    ref = pd.read_csv(PUBLISHED, dtype=str, keep_default_na=False)
    published = {r["setting"]: r for _, r in ref.iterrows()}
    rows = [row(r, published) for r in records if r.get("status") == "ok" and r.get("method") in ("dlrt", "none")]
    df = pd.DataFrame(rows)
    if df.empty:
        return df
    order = {"dense": 0, "official": 1, "ours": 2}
    df["_o"] = df["settings"].map(order)
    df["_t"] = pd.to_numeric(df["tau"], errors="coerce").fillna(0)
    return df.sort_values(["_t", "_o"]).drop(columns=["_o", "_t"]).reset_index(drop=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tnbench.studies.dlrt_table", description=__doc__.splitlines()[0])
    ap.add_argument("runs", type=Path, help="directory searched for record.json files")
    ap.add_argument("--out", type=Path, default=None, help="markdown file (default: print)")
    args = ap.parse_args(sys.argv[1:] if argv is None else argv)
    df = build(args.runs)
    text = df.to_markdown(index=False, floatfmt=".2f") if not df.empty else "(no runs)"
    if args.out:
        args.out.write_text(text + "\n")
        df.to_csv(args.out.with_suffix(".csv"), index=False)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
