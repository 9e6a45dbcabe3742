"""The W&B workspace definition (tnbench.reporting.dashboard), written offline."""
from __future__ import annotations

import json

from tests.conftest import run_cli


def test_dashboard_offline_writes_the_workspace_definition(tmp_path):
    out = tmp_path / "wandb_workspace.json"
    r = run_cli(["--out", str(out)], tmp_path, module="tnbench.dashboard",
                env={"WANDB_MODE": "offline", "WANDB_API_KEY": "", "NETRC": str(tmp_path / "no-netrc")})
    assert r.returncode == 0, r.stderr[-2000:]
    assert "not pushed: WANDB_MODE=offline" in r.stdout
    d = json.loads(out.read_text())
    assert d["pushed"] is None and d["project"] == "tnbench"
    assert d["generator"].startswith("wandb-workspaces")
    names = [s["name"] for s in d["sections"]]
    assert names[:3] == ["Equal budgets", "Accuracy vs compression", "By method"]
    assert {"By model", "By dataset", "By paper"} <= set(names)
    grouped = {p["groupby"] for s in d["sections"] for p in s["panels"] if p["groupby"]}
    assert grouped == {"method.name", "model.name", "dataset.name", "method.paper", "budget.ratio"}
    budget = d["sections"][0]["panels"]
    assert budget[0]["x"] == "budget_asked" and budget[0]["log_x"]  # the budget on the x axis
    assert any("acc_pretrain" in p["y"] and p["groupby"] == "budget.ratio" for p in budget)  # dense beside it
    assert d["runset_groupby"][0] == "method.paper"
    shown = {m for s in d["sections"] for p in s["panels"] for m in [*p["y"], p["x"]] if m}
    assert {"retrain/val_acc", "pretrain/val_acc", "compress/val_acc", "acc_pretrain", "acc_compressed",
            "acc_retrained", "compression_ratio", "compression_rate", "recovery_epochs", "norm_loss_mean"} <= shown
    # the library's own view spec: the same sections and panels, grouped in W&B's terms
    spec = d["workspace"]["spec"]["section"]
    sections = spec["panelBankConfig"]["sections"]
    assert [s["name"] for s in sections] == names
    assert sum(len(s["panels"]) for s in sections) == sum(len(s["panels"]) for s in d["sections"])
    group_by = {p["config"].get("groupBy") for s in sections for p in s["panels"]} - {None}
    assert group_by == {"method.value.name", "model.value.name", "dataset.value.name", "method.value.paper",
                        "budget.value.ratio"}
    grouping = spec["runSets"][0]["grouping"]
    assert [g["name"] for g in grouping] == ["method.value.paper", "method.value.name", "model.value.name",
                                             "dataset.value.name"]
    assert "summary:acc_retrained" in spec["runSets"][0]["runFeed"]["columnPinned"]


def test_dashboard_is_not_pushed_without_an_api_key(tmp_path):
    r = run_cli(["--out", str(tmp_path / "ws.json"), "--experiment", "compare_lenet5_fmnist"], tmp_path,
                module="tnbench.dashboard",
                env={"WANDB_MODE": "online", "WANDB_API_KEY": "", "NETRC": str(tmp_path / "no-netrc")})
    assert r.returncode == 0, r.stderr[-2000:]
    d = json.loads((tmp_path / "ws.json").read_text())
    assert d["pushed"] is None and "no W&B API key" in d["not_pushed_because"]
    assert d["experiment"] == "compare_lenet5_fmnist"
    filters = json.dumps(d["workspace"]["spec"]["section"]["runSets"][0]["filters"])
    assert "compare_lenet5_fmnist" in filters
