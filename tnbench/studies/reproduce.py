"""`python -m tnbench.reproduce PAPER`: a paper's published numbers, each beside one measured here.

PAPER is dlrt, tdlrt, truncation, adtn or partial_norm (or the arXiv id). For each paper the
plan below names the runs this machine can make: its MNIST and CIFAR data are not here, so the
runs are **Fashion-MNIST stand-ins** with the paper's model, method and settings, and every
published row is shown with the stand-in's value, marked `measured (stand-in)`
(tnbench.reporting.reference.compare_with_stand_in). A row with no stand-in says "not measured
here" with the exact command that measures it where the data exists. Partial-norm rows are
measured by the scaling benchmark (results/bench), not by runs.

    python -m tnbench.reproduce dlrt                      # the plan and what is measured so far
    python -m tnbench.reproduce dlrt --run --epochs 3     # run the stand-ins first (skips finished runs)
        [--train-subset N] [--val-split N] [--taus 0.09,0.15] [--results DIR] [--out DIR] [-- overrides]

Runs go to `<results>/runs` through `python -m tnbench` (one process per job: a finished job is
skipped, an interrupted one resumes); the table goes to `<out>/<paper>.md` and `.csv`.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from tnbench.reporting.comparison import runs_frame
from tnbench.reporting.page import write_tables
from tnbench.reporting.records import read_records
from tnbench.reporting.reference import (
    COMPARISON_COLUMNS,
    compare_bench,
    compare_with_stand_in,
    load_bench,
    load_reference,
)

REPO = Path(__file__).resolve().parents[2]
DLRT_TAUS = (0.09, 0.11, 0.15, 0.2, 0.3, 0.4)
STAND_IN = ("dataset=fashion_mnist",)


@dataclass
class Plan:
    """One paper: its reference table, the stand-in jobs (overrides of `python -m tnbench`), and
    the commands that measure its rows on the paper's own data."""

    arxiv: str
    table: str  # file name in results/reference
    jobs: dict[str, list[str]] = field(default_factory=dict)  # job name -> overrides
    commands: dict[str, str] = field(default_factory=dict)  # reference setting -> command on the paper's data
    default_command: str = ""
    taus: bool = False  # jobs swept over method.tau (--taus)
    experiment: str | None = None  # only runs of this experiment_name speak for the paper (its protocol)


def _dlrt_jobs(experiment: str, method: str | None, taus: tuple[float, ...]) -> dict[str, list[str]]:
    head = [f"experiment={experiment}", *STAND_IN, *([f"method={method}"] if method else [])]
    return {f"tau={t}": [*head, f"method.tau={t}"] for t in taus}


PLANS = {
    "dlrt": Plan(
        "2205.13571", "dlrt_2205.13571.csv",
        jobs={**_dlrt_jobs("dlrt_lenet5_official", None, DLRT_TAUS),
              "full": ["experiment=dlrt_lenet5_official", *STAND_IN, "method=none"]},
        commands={"full": "python -m tnbench experiment=dlrt_lenet5_official method=none"},
        default_command="python -m tnbench +sweep=dlrt_lenet5_official", taus=True,
        experiment="dlrt_lenet5_official"),
    "tdlrt": Plan(
        "2305.19059", "tdlrt_2305.19059.csv",
        jobs=_dlrt_jobs("dlrt_lenet5", "tucker_adaptive", (0.09, 0.15, 0.3)),
        default_command="python -m tnbench experiment=tdlrt_vgg16_cifar10   # the paper's CIFAR-10 table; "
                        "+sweep=tdlrt_lenet5 for the LeNet-5 / MNIST benchmark", taus=True, experiment="dlrt_lenet5"),
    "truncation": Plan(
        "2403.14379", "truncation_2403.14379.csv",
        jobs={f"out-{nl}": ["model=cnn4", *STAND_IN, "method=svd_truncation", "method.cut=out",
                            f"method.norm_loss={nl}", "method.factorized=false", "pipeline.retrain_epochs=3"]
              for nl in (0.3, 0.5, 0.7)},
        default_command="python -m tnbench +sweep=truncation_norm_loss"),
    "adtn": Plan(
        "2305.06058", "adtn_2305.06058.csv",
        jobs={"lenet5": ["experiment=adtn_lenet5_mnist", *STAND_IN]},
        default_command="python -m tnbench +sweep=adtn_vgg16"),
    "partial_norm": Plan(
        "2309.06577", "partial_norm_2309.06577.csv",
        default_command="python -m pytest -m bench tests/bench/test_partial_norm_scaling.py"),
}
ALIASES = {p.arxiv: name for name, p in PLANS.items()}
BRIEF_COLUMNS = ["setting", "quantity", "published", "measured", "measured_on", "difference", "runs", "status",
                 "count_rule", "note", "command"]


def parse_args(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m tnbench.reproduce", description=__doc__.splitlines()[0])
    ap.add_argument("paper", help=f"one of {', '.join(PLANS)} (or its arXiv id)")
    ap.add_argument("--run", action="store_true", help="run the stand-in jobs first (finished ones are skipped)")
    ap.add_argument("--epochs", type=int, default=None, help="training epochs of each run (default: the paper's)")
    ap.add_argument("--train-subset", type=int, default=None, help="a seeded subset of the training set")
    ap.add_argument("--val-split", type=int, default=None, help="validation split size (DLRT's protocol: 10000)")
    ap.add_argument("--taus", default=None, help="comma-separated tolerances (dlrt, tdlrt)")
    ap.add_argument("--results", type=Path, default=Path("results"), help="paths.results_dir of the runs")
    ap.add_argument("--out", type=Path, default=None, help="where the table goes (default: <results>/reproduce)")
    ap.add_argument("overrides", nargs="*", help="more tnbench overrides for every job, e.g. trainer.num_threads=1")
    return ap.parse_intermixed_args(argv)


def budget(args: argparse.Namespace, plan: Plan) -> list[str]:
    out = []
    if args.epochs is not None:
        out.append(f"pipeline.retrain_epochs={args.epochs}")
    if args.train_subset is not None:
        out.append(f"dataset.train_subset={args.train_subset}")
    if args.val_split is not None:
        out.append(f"dataset.val_split={args.val_split}")
    return out


def jobs_of(plan: Plan, args: argparse.Namespace) -> dict[str, list[str]]:
    jobs = dict(plan.jobs)
    if plan.taus and args.taus:
        wanted = {f"tau={float(t)}" for t in args.taus.split(",")}
        jobs = {k: v for k, v in jobs.items() if k in wanted or not k.startswith("tau=")}
    common = ["logger=none", "trainer.progress=false", f"paths.results_dir={args.results}"]
    return {k: [*v, *budget(args, plan), *common, *args.overrides] for k, v in jobs.items()}


def run_jobs(jobs: dict[str, list[str]]) -> dict[str, int]:
    """Each job through the CLI (skip when done, resume when interrupted); exit codes by name."""
    codes = {}
    for name, overrides in jobs.items():
        print(f"[reproduce] {name}: python -m tnbench {' '.join(overrides)}", flush=True)
        codes[name] = subprocess.run([sys.executable, "-m", "tnbench", *overrides], check=False).returncode
    return codes


def table(plan: Plan, jobs: dict[str, list[str]], runs_root: Path, ref_dir: Path, bench_dir: Path) -> pd.DataFrame:
    """Every published row of the paper beside its measured (or stand-in) value, with the command
    that measures it on the paper's data and the stand-in job's command."""
    ref = load_reference(ref_dir)
    ref = ref[ref["file"] == plan.table] if not ref.empty else ref
    records, _ = read_records(runs_root) if runs_root.is_dir() else ([], [])
    runs = runs_frame(records)
    ok = runs[runs["status"] == "ok"] if not runs.empty else runs
    if plan.experiment and not ok.empty:  # e.g. DLRT's table: the official protocol's runs, not ours
        ok = ok[ok["experiment"] == plan.experiment]
    bench, source = load_bench(bench_dir)
    rows = []
    for _, row in ref.iterrows():
        if str(row.get("normalization_steps", "")).strip():
            got = compare_bench(row, bench, source)
        elif ok.empty:
            got = [{c: row.get(c, "") for c in ("paper", "arxiv", "model", "dataset", "method", "setting")}
                   | {"status": "not run", "note": "no runs yet"}]
        else:
            got = compare_with_stand_in(row, ok, records)
        setting = str(row.get("setting", ""))
        for g in got:
            g["command"] = plan.commands.get(setting, plan.default_command)
            job = jobs.get(setting)
            g["stand_in_command"] = f"python -m tnbench {' '.join(job)}" if job else ""
            if g.get("status") == "not run":
                g["status"] = "not measured here"
        rows += got
    return pd.DataFrame(rows, columns=[*COMPARISON_COLUMNS, "command", "stand_in_command"])


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    name = ALIASES.get(args.paper.removeprefix("arXiv:"), args.paper)
    if name not in PLANS:
        print(f"error: PAPER must be one of {', '.join(PLANS)} (or its arXiv id), got {args.paper!r}", file=sys.stderr)
        return 2
    plan = PLANS[name]
    jobs = jobs_of(plan, args)
    failed = {}
    if args.run:
        failed = {k: c for k, c in run_jobs(jobs).items() if c != 0}
    out = args.out or args.results / "reproduce"
    ref_dir = next((p for p in (Path("results/reference"), REPO / "results" / "reference") if p.is_dir()),
                   Path("results/reference"))
    result = table(plan, jobs, args.results / "runs", ref_dir, args.results / "bench")
    out.mkdir(parents=True, exist_ok=True)
    result.to_csv(out / f"{name}.csv", index=False)
    write_tables(result[[c for c in BRIEF_COLUMNS if c in result]], out, name)  # the csv keeps every column
    counts = result["status"].value_counts().to_dict() if not result.empty else {}
    print(f"arXiv:{plan.arxiv}: {len(result)} published numbers {counts}; table: {out / (name + '.md')}")
    if failed:
        print(f"failed jobs: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0
