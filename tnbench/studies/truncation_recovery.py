"""Recovery after truncation (arXiv 2403.14379, its re-training experiment) as one command: the
pretrained dense model truncated along a cut to a grid of norm losses, then retrained epoch by
epoch, in two labelled series:

  dense       `method.factorized=false`: the truncated kernels are written back into the dense
              layers and retraining may leave the low-rank set, as in the paper (its models
              are dense CNNs whose truncated weights are re-trained);
  factorized  `method.factorized=true`: the truncated layers are replaced by their factors and
              retraining stays rank-constrained (what a tensorized model would do).

A control run (`method=none`) retrains the untouched dense model for the same epochs.

    python -m tnbench.studies.truncation_recovery dataset=fashion_mnist model=lenet5 \\
        [tnbench overrides] [--cuts out] [--norm-losses 0.1,0.3,0.5,0.7] [--retrain-epochs 3]
        [--series dense,factorized] [--out DIR] [--plots-only]

Every point is an ordinary tnbench job (`tnbench.api.run`, logger none) under
<out>/runs/<run_id>/record.json, sharing the pretrain cache of <paths.results_dir> (the same
dense model as `python -m tnbench.studies.truncation` with the same overrides). Finished jobs
are skipped, so the command can be run in chunks (interrupt it and start it again).

Outputs (default <paths.results_dir>/studies/truncation_<model>_<dataset>/recovery/):
  recovery.csv   one row per job: series, cut, target, achieved norm loss (both forms),
                 correlation loss, relative error, accuracy after truncation and after each
                 retrain epoch, recovery_epochs, compression rate
  recovery.png   accuracy against the norm loss, one panel per form (1 - ||W_t||/||W|| and
                 1 - ||W_t||^2/||W||^2), right after truncation and after each retrain epoch,
                 both series
  recovery_epochs.png  accuracy against the retrain epoch, one line per target, per series
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd

SERIES = {"dense": "false", "factorized": "true"}
DEFAULT_NORM_LOSSES = "0.1,0.3,0.5,0.7"


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m tnbench.studies.truncation_recovery",
                                description="Accuracy recovery after truncation (arXiv 2403.14379), dense and factorized.")
    p.add_argument("overrides", nargs="*", help="tnbench overrides, e.g. dataset=fashion_mnist model=lenet5")
    p.add_argument("--cuts", default="out", help="comma-separated cuts (default: %(default)s)")
    p.add_argument("--norm-losses", default=DEFAULT_NORM_LOSSES, help="norm-loss targets (default: %(default)s)")
    p.add_argument("--retrain-epochs", type=int, default=3, help="retrain epochs per job (default: %(default)s)")
    p.add_argument("--series", default="dense,factorized", help="dense, factorized or both (default: %(default)s)")
    p.add_argument("--out", default=None, help="output directory")
    p.add_argument("--plots-only", action="store_true", help="rebuild recovery.csv and the plots from the records")
    return p.parse_args(argv)


def jobs(args: argparse.Namespace) -> list[tuple[str, str, float | None, list[str]]]:
    """(series, cut, target, overrides) of every job, the control first; bad grids raise ConfigError."""
    from tnbench.errors import ConfigError
    from tnbench.functional.bipartition import CUTS

    cuts = [c.strip() for c in args.cuts.split(",") if c.strip()]
    if not cuts or any(c not in CUTS for c in cuts):
        raise ConfigError(f"--cuts must name cuts among {', '.join(CUTS)}; got {args.cuts!r}")
    try:
        targets = [float(v) for v in args.norm_losses.split(",") if v.strip()]
    except ValueError:
        targets = []
    if not targets or any(not 0.0 <= t < 1.0 for t in targets):
        raise ConfigError(f"--norm-losses must be comma-separated values in [0, 1), got {args.norm_losses!r}")
    series = [s.strip() for s in args.series.split(",") if s.strip()]
    if not series or any(s not in SERIES for s in series):
        raise ConfigError(f"--series must be dense, factorized or both; got {args.series!r}")
    if args.retrain_epochs < 1:
        raise ConfigError(f"--retrain-epochs must be >= 1, got {args.retrain_epochs}")
    out = [("control", "-", None, ["method=none"])]
    for s in series:
        for cut in cuts:
            for t in targets:
                out.append((s, cut, t, ["method=svd_truncation", f"method.cut={cut}", f"method.norm_loss={t}",
                                        f"method.factorized={SERIES[s]}"]))
    return out


def run_jobs(args: argparse.Namespace, out: Path, cache_dir: str) -> None:
    from tnbench.api import compose, run, run_dir_of
    from tnbench.pipeline.jobs import previous_ok_record

    t0 = time.perf_counter()
    for series, cut, target, method in jobs(args):
        cfg = compose(["logger=none", *args.overrides, *method, f"pipeline.retrain_epochs={args.retrain_epochs}",
                       f"paths.results_dir={out}", f"paths.cache_dir={cache_dir}"])
        if previous_ok_record(run_dir_of(cfg)) is not None:
            continue
        rec = run(cfg).record
        print(f"{series} {cut} {target}: acc {rec['acc_compressed']:.2f} -> {rec['retrain_history']} "
              f"({time.perf_counter() - t0:.0f}s)", flush=True)


def table(out: Path) -> pd.DataFrame:
    """One row per finished job under <out>/runs."""
    from tnbench.reporting.records import read_records

    rows = []
    for rec in sorted(read_records(out / "runs")[0], key=lambda r: r["run_dir"]):
        if rec.get("status") != "ok":
            continue
        trunc = rec.get("truncation") or {}
        series = "control" if rec["method"] == "none" else ("factorized" if trunc.get("factorized") else "dense")
        history = rec.get("retrain_history") or []
        rows.append({
            "series": series, "cut": trunc.get("cut", "-"), "target": trunc.get("target_value"),
            "norm_loss": (rec.get("norm_loss") or {}).get("mean", 0.0),
            "norm_loss_energy": (rec.get("norm_loss_energy") or {}).get("mean", 0.0),
            "correlation_loss": (rec.get("correlation_loss") or {}).get("mean", 0.0),
            "relative_error": _mean((rec.get("relative_error") or {}).values()),
            "compression_rate": rec.get("compression_rate"), "acc_pretrain": rec["acc_pretrain"],
            "acc_compressed": rec["acc_compressed"],
            **{f"acc_epoch_{i}": a for i, a in enumerate(history, start=1)},
            "recovery_epochs": rec.get("recovery_epochs"), "run_id": Path(rec["run_dir"]).name,
        })
    return pd.DataFrame(rows).sort_values(["series", "cut", "target"], na_position="first", ignore_index=True)


def _mean(values: Any) -> float:
    values = list(values)
    return sum(values) / len(values) if values else 0.0


def main(argv: list[str] | None = None) -> Path:
    from tnbench.studies.truncation import compose_config

    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    jobs(args)  # bad grids fail before any work
    cfg = compose_config(args.overrides)
    out = Path(args.out or Path(cfg.paths.results_dir) / "studies" /
               f"truncation_{cfg.model.name}_{cfg.dataset.name}" / "recovery")
    t0 = time.perf_counter()
    if not args.plots_only:
        out.mkdir(parents=True, exist_ok=True)
        run_jobs(args, out, str(cfg.paths.cache_dir))
    frame = table(out)
    frame.to_csv(out / "recovery.csv", index=False)
    from tnbench.studies.truncation_plots import recovery_plots

    plots = recovery_plots(frame, out, f"{cfg.model.name} on {cfg.dataset.name}: recovery after truncation")
    meta_path = out / "study.json"
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    if not args.plots_only:
        meta.setdefault("time_s", []).append(round(time.perf_counter() - t0, 1))
        meta["command"] = " ".join(["python -m tnbench.studies.truncation_recovery", *argv])
    meta.update(paper="arXiv:2403.14379", jobs=len(frame), series=sorted(set(frame.series)) if len(frame) else [],
                files=["recovery.csv", *[p.name for p in plots]])
    meta_path.write_text(json.dumps(meta, indent=2))
    print(f"{len(frame)} jobs -> {out}")
    return out


def cli() -> None:
    from tnbench.errors import BAD_INPUT

    try:
        main()
    except BAD_INPUT as e:
        print(f"error: {str(e).splitlines()[0] if str(e) else type(e).__name__}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    cli()
