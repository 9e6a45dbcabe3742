"""`python -m tnbench.dashboard`: the method comparison as a W&B workspace (and report).

The panels follow what every tnbench W&B run carries: config keys `method.name`, `model.name`,
`dataset.name`, `method.paper`; the history metrics `pretrain/val_acc`, `compress/val_acc`,
`retrain/val_acc` (x axis `epoch`); the summary keys acc_pretrain, acc_compressed,
acc_retrained, compression_ratio, compression_rate, recovery_epochs, norm_loss_mean and, with a
budget, budget_asked and budget_reached (config `budget.ratio`); group = experiment (or
model-dataset) and tags = method, model, dataset, paper. The first section has the report's
views: the budget on the x axis, the dense accuracy beside each budget, grouping by paper.

The definition is built with the `wandb-workspaces` library and pushed only when W&B is online
(WANDB_MODE is not offline/disabled and an API key is present): a saved workspace view plus a
report with the same panels. Otherwise (and always, for checking) the workspace definition is
written as JSON to --out (results/report/wandb_workspace.json): the library's own view spec
under "workspace" and a plain outline of the sections and panels under "sections".
"""
from __future__ import annotations

import argparse
import json
import netrc
import os
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from tnbench.reporting.schema import BRIEF, RUN, view

DEFAULT_OUT = Path("results/report/wandb_workspace.json")
DEFAULT_PROJECT = "tnbench"  # conf/logger/wandb.yaml
OFFLINE_MODES = {"offline", "disabled", "dryrun"}
PLACEHOLDER_ENTITY = "<your-entity>"

# W&B names of what tnbench logs (the schema's run view, tnbench.pipeline.trainer.finish_logger;
# the history metrics of tnbench.pipeline.classifier).
SUMMARY = [f.name for f in view(RUN) if BRIEF in f.views and f.kind in ("int", "float")] + ["norm_loss_mean"]
GROUPINGS = {"method": "method.name", "model": "model.name", "dataset": "dataset.name", "paper": "method.paper"}
BUDGET = "budget.ratio"  # the config key of the equal-budget comparison (budget.* of tnbench.config)
CONFIG_KEYS = {*GROUPINGS.values(), BUDGET}
RUNSET_GROUPBY = ("paper", "method", "model", "dataset")  # runs grouped by paper first, then method


@dataclass
class Panel:
    """One panel, independent of the library: kind line (history over x), scatter (summary x vs
    summary y), bar (summary metrics per group) or parallel (summary/config columns)."""

    kind: str
    title: str
    y: list[str] = field(default_factory=list)
    x: str | None = None
    groupby: str | None = None  # a config key
    log_x: bool = False


@dataclass
class Section:
    name: str
    panels: list[Panel]


def sections() -> list[Section]:
    by_group = []
    for label in ("model", "dataset", "paper"):
        key = GROUPINGS[label]
        by_group.append(Section(f"By {label}", [
            Panel("bar", f"accuracy after retraining by {label}", y=["acc_retrained"], groupby=key),
            Panel("bar", f"accuracy right after compression by {label}", y=["acc_compressed"], groupby=key),
            Panel("bar", f"compression ratio by {label}", y=["compression_ratio"], groupby=key),
            Panel("bar", f"recovery epochs by {label}", y=["recovery_epochs"], groupby=key),
        ]))
    method = GROUPINGS["method"]
    return [
        # the report's views: the budget on the x axis, the dense accuracy beside every budget
        Section("Equal budgets", [
            Panel("scatter", "accuracy after retraining vs budget asked (compression ratio)", x="budget_asked",
                  y=["acc_retrained"], log_x=True),
            Panel("scatter", "accuracy after retraining vs compression ratio reached", x="budget_reached",
                  y=["acc_retrained"], log_x=True),
            Panel("bar", "dense, compressed and retrained accuracy per budget", y=["acc_pretrain", "acc_compressed",
                                                                                  "acc_retrained"], groupby=BUDGET),
            Panel("bar", "accuracy after retraining per budget and paper", y=["acc_retrained"],
                  groupby=GROUPINGS["paper"]),
            Panel("line", "retraining per budget: test accuracy per epoch", x="retrain/epoch", y=["retrain/val_acc"],
                  groupby=BUDGET),
        ]),
        Section("Accuracy vs compression", [
            Panel("scatter", "accuracy after retraining vs compression ratio", x="compression_ratio",
                  y=["acc_retrained"], log_x=True),
            Panel("scatter", "accuracy after retraining vs compression rate (compressed layers, %)",
                  x="compression_rate", y=["acc_retrained"]),
            Panel("scatter", "accuracy right after compression vs compression ratio", x="compression_ratio",
                  y=["acc_compressed"], log_x=True),
            Panel("scatter", "accuracy right after compression vs norm loss", x="norm_loss_mean", y=["acc_compressed"]),
        ]),
        Section("By method", [
            Panel("line", "retraining: test accuracy per epoch", x="retrain/epoch", y=["retrain/val_acc"], groupby=method),
            Panel("line", "pretraining: test accuracy per epoch", x="pretrain/epoch", y=["pretrain/val_acc"], groupby=method),
            Panel("bar", "test accuracy after compression", y=["compress/val_acc"], groupby=method),
            Panel("bar", "accuracy: pretrained, compressed, retrained", y=["acc_pretrain", "acc_compressed",
                                                                            "acc_retrained"], groupby=method),
            Panel("bar", "recovery epochs", y=["recovery_epochs"], groupby=method),
            Panel("bar", "compression ratio", y=["compression_ratio"], groupby=method),
        ]),
        *by_group,
        Section("All runs", [
            Panel("parallel", "settings and outcomes", y=[method, GROUPINGS["model"], GROUPINGS["dataset"],
                                                           "compression_ratio", "norm_loss_mean", "acc_compressed",
                                                           "acc_retrained", "recovery_epochs"]),
        ]),
    ]


def outline(secs: list[Section]) -> list[dict[str, Any]]:
    return [{"name": s.name, "panels": [asdict(p) for p in s.panels]} for s in secs]


# -- the wandb-workspaces objects ---------------------------------------------------------------

def _metric(name: str) -> Any:
    """A summary key, or a config key for the dotted names of GROUPINGS."""
    import wandb_workspaces.reports.v2 as wr

    return wr.Config(name) if name in CONFIG_KEYS else wr.SummaryMetric(name)


def library_panel(p: Panel) -> Any:
    import wandb_workspaces.reports.v2 as wr

    if p.kind == "line":
        return wr.LinePlot(title=p.title, x=p.x, y=list(p.y), groupby=p.groupby, smoothing_factor=0.0)
    if p.kind == "scatter":
        return wr.ScatterPlot(title=p.title, x=_metric(p.x), y=_metric(p.y[0]), log_x=p.log_x or None)
    if p.kind == "bar":
        metrics = [m if "/" in m else wr.SummaryMetric(m) for m in p.y]
        return wr.BarPlot(title=p.title, metrics=metrics, groupby=wr.Config(p.groupby) if p.groupby else None,
                          orientation="v")
    if p.kind == "parallel":
        return wr.ParallelCoordinatesPlot(title=p.title,
                                          columns=[wr.ParallelCoordinatesPlotColumn(metric=_metric(m)) for m in p.y])
    raise ValueError(f"unknown panel kind {p.kind!r}")


def build_workspace(entity: str, project: str, name: str, experiment: str | None = None) -> Any:
    import wandb_workspaces.workspaces as ws

    filters = [ws.Metric("Group") == experiment] if experiment else []
    return ws.Workspace(
        entity=entity, project=project, name=name,
        sections=[ws.Section(name=s.name, panels=[library_panel(p) for p in s.panels], is_open=i < 2)
                  for i, s in enumerate(sections())],
        runset_settings=ws.RunsetSettings(
            filters=filters,
            groupby=[ws.Config(GROUPINGS[k]) for k in RUNSET_GROUPBY],
            pinned_columns=[f"summary:{k}" for k in SUMMARY],
        ),
        # W&B's default x-axis: each stage has its own (`<stage>/epoch`), named by the per-epoch panels
        settings=ws.WorkspaceSettings(x_axis="Step"),
    )


def build_report(entity: str, project: str, title: str, experiment: str | None, notes: str) -> Any:
    """The same panels as a W&B report, one panel grid per section. Serializing a report's run
    sets needs a logged-in W&B API, so this is only built when pushing."""
    import wandb_workspaces.reports.v2 as wr

    runset = wr.Runset(entity=entity, project=project, name="tnbench runs", groupby=[GROUPINGS["method"]],
                       filters=f"Group = '{experiment}'" if experiment else "")
    blocks: list[Any] = [wr.H1(title), wr.MarkdownBlock(text=notes)]
    for s in sections():
        blocks += [wr.H2(s.name), wr.PanelGrid(runsets=[runset], panels=[library_panel(p) for p in s.panels])]
    return wr.Report(entity=entity, project=project, title=title, blocks=blocks,
                     description="tnbench: compression methods and papers compared on equal terms")


# -- online or not ------------------------------------------------------------------------------

def api_key_present() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    host = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname or "api.wandb.ai"
    try:
        return bool(netrc.netrc(os.environ.get("NETRC")).authenticators(host))
    except (OSError, netrc.NetrcParseError):
        return False


def online() -> tuple[bool, str]:
    mode = os.environ.get("WANDB_MODE", "").strip().lower()
    if mode in OFFLINE_MODES:
        return False, f"WANDB_MODE={mode}"
    if not api_key_present():
        return False, "no W&B API key (WANDB_API_KEY or `wandb login`)"
    return True, "online"


def reference_notes(report_dir: Path) -> str:
    md = report_dir / "reference_comparison.md"
    head = ("Published numbers beside measured ones (from `python -m tnbench.report`):\n\n" if md.is_file() else
            "Run `python -m tnbench.report` to put the published-vs-measured table here.")
    return head + (md.read_text() if md.is_file() else "")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tnbench.dashboard", description=__doc__.splitlines()[0])
    ap.add_argument("--entity", default=os.environ.get("WANDB_ENTITY"), help="W&B entity (default: WANDB_ENTITY, "
                    "or the API's default entity when online)")
    ap.add_argument("--project", default=os.environ.get("WANDB_PROJECT", DEFAULT_PROJECT))
    ap.add_argument("--name", default="tnbench: methods compared", help="the workspace view's name")
    ap.add_argument("--experiment", help="only runs of this W&B group (experiment_name, e.g. compare_lenet5_fmnist)")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where the definition is written (JSON)")
    ap.add_argument("--offline", action="store_true", help="write the definition only, even when online")
    args = ap.parse_args(argv)

    is_online, why = online()
    push = is_online and not args.offline
    entity = args.entity
    definition: dict[str, Any] = {
        "project": args.project, "entity": entity or PLACEHOLDER_ENTITY, "name": args.name,
        "experiment": args.experiment, "runset_groupby": [GROUPINGS[k] for k in RUNSET_GROUPBY],
        "tags": list(GROUPINGS), "summary_keys": SUMMARY, "sections": outline(sections()),
    }
    workspace = None
    try:
        import wandb_workspaces  # noqa: F401

        if push and not entity:
            import wandb

            entity = wandb.Api().default_entity
            definition["entity"] = entity
        workspace = build_workspace(definition["entity"], args.project, args.name, args.experiment)
        definition["generator"] = f"wandb-workspaces {metadata.version('wandb-workspaces')}"
        definition["workspace"] = workspace._spec  # the view spec save() uploads (no public accessor)
    except ImportError as e:
        definition["generator"] = f"plain outline (wandb-workspaces not importable: {e})"
        push = False
        why = "wandb-workspaces is not installed"

    if push and workspace is not None:
        saved = workspace.save()
        report = build_report(entity, args.project, args.name, args.experiment, reference_notes(args.out.parent))
        report.save()
        definition["pushed"] = {"workspace": saved.url, "report": report.url}
        print(f"workspace: {saved.url}\nreport: {report.url}")
    else:
        definition["pushed"] = None
        definition["not_pushed_because"] = "--offline" if is_online and args.offline else why
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(definition, indent=2, default=str) + "\n")
    n_panels = sum(len(s.panels) for s in sections())
    print(f"W&B workspace definition ({len(sections())} sections, {n_panels} panels) written to {args.out}"
          + ("" if push else f"; not pushed: {definition['not_pushed_because']}"))
    return 0
