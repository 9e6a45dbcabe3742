"""A real multirun through the CLI, then the report command: tables, figures, and the page as headless
Chromium renders it."""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import pytest

from tests.conftest import QUICK, REPO, run_cli

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def chromium(args: list[str], profile: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}", *args],
        capture_output=True, text=True, timeout=180)


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

    assert (out / "plots" / "acc_vs_compression_synthetic_lenet5.png").stat().st_size > 10_000
    assert (out / "plots" / "recovery_epochs.png").stat().st_size > 5_000
    page = (out / "report.html").read_text()
    images = re.findall(r'<img src="([^"]+)"', page)
    assert "plots/acc_vs_compression_synthetic_lenet5.png" in images
    assert all((out / src).is_file() for src in images)  # relative, and there
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
