"""Table of the partial-norm study: one row per run in runs/, from record.json and csv/metrics.csv.

    .venv/bin/python results/studies/partial_norm/summarize.py   # writes summary.{md,json} here
"""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path

HERE = Path(__file__).resolve().parent


def floats(rows: list[dict[str, str]], key: str) -> list[float]:
    return [float(r[key]) for r in rows if r.get(key) not in (None, "")]


def summarize(run: Path) -> dict:
    rec = json.loads((run / "record.json").read_text())
    metrics = run / "csv" / "metrics.csv"
    rows = list(csv.DictReader(metrics.open())) if metrics.exists() else []
    m = rec["config"]["method"]
    layers = [l for l in rec.get("layers", []) if l["compressed"]]
    return {
        "run": run.name, "method": m["name"], "init": m["init"], "init_mean": m["init_mean"], "init_std": m["init_std"],
        "status": rec["status"], "error": rec.get("error"),
        "acc_pretrain": rec.get("acc_pretrain"), "acc_compressed": rec.get("acc_compressed"),
        "retrain_acc_per_epoch": rec.get("retrain_history") or [],
        "retrain_loss_per_epoch": floats(rows, "retrain/train_loss_epoch"),
        "retrain_loss_steps_50_100_150": floats(rows, "retrain/train_loss_step")[:3],
        "compression_ratio_layers": rec.get("compression_ratio_layers"),
        "layers": {l["name"]: {"norm": l["extra"].get("norm"), "target_norm": l["extra"].get("target_norm"),
                               "steps": (l["extra"].get("normalization") or {}).get("steps"),
                               "relative_error": l["relative_error"], "ranks": l["ranks"]} for l in layers},
        "time_retrain_s": rec.get("time_retrain_s"),
    }


def fmt(v) -> str:
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.4g}"
    if isinstance(v, list):
        return ", ".join(fmt(x) for x in v) or "-"
    return "-" if v is None else str(v)


def main() -> None:
    rows = [summarize(r) for r in sorted((HERE / "runs").iterdir()) if (r / "record.json").exists()]
    (HERE / "summary.json").write_text(json.dumps(rows, indent=1))
    cols = ["run", "init", "init_mean", "status", "acc_compressed", "retrain_acc_per_epoch", "retrain_loss_per_epoch",
            "retrain_loss_steps_50_100_150", "error"]
    md = ["# LeNet-5 / Fashion-MNIST: tensorized layers from a fresh init vs from the pretrained weights", "",
          "`results/studies/partial_norm/run_study.sh <runs>` then `summarize.py`. Pretrained LeNet-5 (3 epochs, "
          f"test accuracy {fmt(rows[0]['acc_pretrain'])}%) from the shared cache; the selected layers (default "
          "`all_but_first_last`) replaced, then 3 retrain epochs (SGD lr 0.01, cosine). Accuracies are test "
          "accuracies in %, losses the epoch-mean training loss and the batch loss logged at steps 50, 100, 150. "
          "A diverged run stopped at its first non-finite batch loss (see `error`).", "",
          "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    md += ["| " + " | ".join(fmt(r[c]) for c in cols) + " |" for r in rows]
    md += ["", "Layer norms after the init (||W||_F of the tensorized layer) and the target:", "",
           "| run | layer | bonds | norm | target | steps | rel. error to pretrained |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        for name, l in r["layers"].items():
            md.append(f"| {r['run']} | {name} | {fmt(l['ranks'])} | {fmt(l['norm'])} | {fmt(l['target_norm'])} | "
                      f"{fmt(l['steps'])} | {fmt(l['relative_error'])} |")
    (HERE / "summary.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
