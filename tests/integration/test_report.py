"""A real multirun through the CLI, then the report command: tables, figures, and the page as headless
Chromium renders it at 1400 px (no horizontal scroll, no console errors, every figure shown)."""
from __future__ import annotations

import copy
import json
import random
import re
import shutil
import subprocess
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import pytest

from tests.conftest import QUICK, REPO, run_cli
from tnbench.reporting.comparison import build_report
from tnbench.reporting.records import write_record

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def chromium(args: list[str], profile: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}", *args],
        capture_output=True, text=True, timeout=180)


# A test-only page (the report itself has no JavaScript) that loads `page` in a 1400 px frame and
# writes what the browser laid out: the frame's scroll and client widths, and its images.
HARNESS = """<!DOCTYPE html><html><body style="margin:0">
<iframe id="f" src="PAGE" style="width:1400px;height:900px;border:0"></iframe><pre id="out">pending</pre>
<script>
document.getElementById('f').addEventListener('load', function () {
  var d = this.contentDocument, e = d.documentElement, imgs = Array.from(d.images);
  document.getElementById('out').textContent = JSON.stringify({scrollWidth: e.scrollWidth, clientWidth: e.clientWidth,
    images: imgs.length, broken: imgs.filter(function (i) { return !(i.complete && i.naturalWidth > 0); }).length});
});
</script></body></html>"""


def layout_at_1400px(page: Path, tmp: Path) -> dict:
    harness = tmp / f"harness_{page.stem}.html"
    harness.write_text(HARNESS.replace("PAGE", page.as_uri()))
    r = chromium(["--allow-file-access-from-files", "--virtual-time-budget=10000", "--dump-dom", harness.as_uri()],
                 tmp / "profile")
    found = re.search(r'<pre id="out">([^<]*)</pre>', r.stdout)
    assert found and found.group(1) != "pending", r.stderr[-2000:]
    return json.loads(found.group(1))


def budget_study_records(root: Path) -> None:
    """45 records as the budget study writes them: 5 methods x 3 budgets x 3 seeds."""
    rng = random.Random(0)
    knobs = {"svd": "rank", "tucker": "ranks", "mpo": "bond_dim", "tt": "bond_dim", "adtn": "depth"}
    for method, knob in knobs.items():
        for ratio in (4, 8, 16):
            for seed in range(3):
                dense = 88 + rng.random()
                hist = [dense - 3 - ratio / 8 + rng.random(), dense - 1.5 - ratio / 10 + rng.random()]
                write_record(root / f"{method}-{ratio}-{seed}", copy.deepcopy({
                    "status": "ok", "dataset": "fashion_mnist", "model": "lenet5", "method": method, "seed": seed,
                    "acc_pretrain": dense, "acc_compressed": dense - 5 * ratio**0.5 - 5 * rng.random(),
                    "acc_retrained": hist[-1], "retrain_history": hist, "recovery_epochs": None,
                    "compression_ratio": ratio * rng.uniform(0.96, 1.04), "compression_rate": 100 * (1 - 1 / ratio),
                    "params_dense": 61706, "params_compressed": 61706 // ratio, "flops_dense": 833040,
                    "flops_compressed": 833040 // ratio, "time_total_s": 30.0, "budget_kind": "ratio",
                    "budget_asked": ratio, "budget_reached": ratio, "budget_knob": {knob: 40 // ratio},
                    "config": {"seed": seed, "dataset": {"name": "fashion_mnist", "train_subset": 20000},
                               "pipeline": {"pretrain_epochs": 5, "retrain_epochs": 2, "recovery_tolerance": 0.5},
                               "budget": {"ratio": ratio, "tolerance": 0.05},
                               "method": {"name": method, knob: 8, "long_option": method.upper() * 40}}}))


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (make browser)")
def test_report_page_at_1400px_has_no_horizontal_scroll_errors_or_missing_figures(tmp_path):
    budget_study_records(tmp_path / "runs")
    rep = build_report(tmp_path / "runs", tmp_path / "out", REPO / "results" / "reference", tmp_path / "no-bench")
    page = rep["html"]
    drawn = [f for f in rep["figures"] if f.path]
    assert {Path(f.path).stem for f in drawn} >= {"acc_vs_ratio_fashion_mnist_lenet5", "retraining_fashion_mnist_lenet5"}
    layout = layout_at_1400px(page, tmp_path)
    assert layout["scrollWidth"] <= layout["clientWidth"], layout  # no horizontal scroll of the page
    assert layout["images"] == len(drawn) and layout["broken"] == 0, layout  # every figure, embedded and decoded
    wide = tmp_path / "wide.html"  # the check itself sees an overflowing page
    wide.write_text('<html><body><div style="width:2000px">x</div></body></html>')
    over = layout_at_1400px(wide, tmp_path)
    assert over["scrollWidth"] > over["clientWidth"]
    r = chromium(["--enable-logging=stderr", "--v=0", f"--screenshot={tmp_path / 'shot.png'}", "--window-size=1400,2400",
                  page.as_uri()], tmp_path / "profile")
    console_errors = [l for l in r.stderr.splitlines() if "Uncaught" in l or "ERROR:CONSOLE" in l]
    assert r.returncode == 0 and not console_errors, console_errors or r.stderr[-2000:]
    html = page.read_text()
    assert "<script" not in html and not re.search(r'(src|href)="(https?:)?//', html)  # self-contained, no JS
    assert html.count('src="data:image/png;base64,') == len(drawn)
    long = "TUCKER" * 40  # a long setting: shortened in the cells, in full on hover only
    assert html.count(long) == html.count(f"long_option={long}\"") > 0


@pytest.mark.slow
def test_multirun_then_report_tables_figures_and_page(tmp_path):
    r = run_cli(["-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "method=none,svd", "method.rank=2,4",
                 *QUICK, "logger=none"], tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    runs = tmp_path / "results" / "runs"
    (runs / "broken").mkdir()
    (runs / "broken" / "record.json").write_text("{not json")  # reported and skipped
    out = tmp_path / "report"
    r = run_cli(["--runs", str(runs), "--out", str(out), "--reference", str(REPO / "results" / "reference"),
                 "--bench", str(tmp_path / "no-bench")], tmp_path, module="tnbench.report")
    assert r.returncode == 0, r.stderr[-3000:]
    assert "skipped unreadable record" in r.stderr and "broken" in r.stderr

    table = pd.read_csv(out / "runs.csv")
    # method=none ignores method.rank: rank=2 and rank=4 are one run (the run key leaves it out)
    assert len(table) == 3
    assert sorted(table["method"]) == ["none", "svd", "svd"]
    assert sorted(table.loc[table.method == "svd", "setting"]) == ["rank=2 skip_if_larger=True", "rank=4 skip_if_larger=True"]
    assert (table["status"] == "ok").all()
    summary = pd.read_csv(out / "summary.csv")
    assert set(summary["method"]) == {"none", "svd"} and summary["seeds"].sum() == 3
    assert summary.loc[summary.method == "none", "compression_ratio"].tolist() == [1.0]
    assert (out / "summary.md").read_text().startswith("| dataset")
    comparison = pd.read_csv(out / "reference_comparison.csv")
    assert len(comparison) > 0 and set(comparison["status"]) <= {"not run", "no published value"}

    assert (out / "plots" / "acc_vs_ratio_synthetic_lenet5.png").stat().st_size > 10_000
    assert (out / "plots" / "retraining_synthetic_lenet5.pdf").stat().st_size > 1_000
    assert (out / "plots" / "speedup_synthetic_lenet5.png").stat().st_size > 5_000  # measured vs FLOPs
    page = (out / "report.html").read_text()
    images = re.findall(r'<img src="data:image/png;base64,[^"]+" width="\d+" height="\d+" data-file="([^"]+)"', page)
    assert "plots/acc_vs_ratio_synthetic_lenet5.png" in images
    assert all((out / src).is_file() for src in images)  # embedded, and the files are there too
    assert "<script" not in page and not re.search(r'(src|href)="(https?:)?//', page)  # nothing from elsewhere
    assert "Skipped:" in page and "rank_history" in page  # the figures without data are notes
    assert "broken" in page

    if CHROMIUM is None:
        pytest.skip("chromium is not installed (apt-get install -y chromium); the page was not rendered")
    shot = tmp_path / "report.png"
    url = (out / "report.html").as_uri()
    r = chromium(["--enable-logging=stderr", "--v=0", f"--screenshot={shot}", "--window-size=1280,2000", url],
                 tmp_path / "profile")
    assert r.returncode == 0, r.stderr[-2000:]
    console_errors = [l for l in r.stderr.splitlines() if "Uncaught" in l or "ERROR:CONSOLE" in l]
    assert not console_errors, console_errors
    assert shot.stat().st_size > 20_000
    pixels = mpimg.imread(shot)[..., :3]
    assert pixels.std() > 0.05  # not a blank page
    assert len(np.unique((pixels * 255).astype(np.uint8).reshape(-1, 3), axis=0)) > 50  # text, tables, figures
    dom = chromium(["--dump-dom", url], tmp_path / "profile").stdout
    assert dom.count("<table") >= 3 and dom.count("<img") == len(images)
    assert "synthetic" in dom and "svd" in dom
