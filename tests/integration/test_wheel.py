"""tnbench as a package: the wheel built from the sources, installed (not editable) in a fresh
venv, runs a job from a directory that is not the checkout (`make wheel-check`, part of `make test`).

torch and the other dependencies are not installed again (5.5 GB): the fresh venv sees the
project venv's site-packages through a .pth, by way of a folder of links to every entry there
except tnbench's own (editable) install, so the tnbench that runs is the wheel's.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from tests.conftest import REPO, records

pytestmark = pytest.mark.slow

JOB = ["dataset=synthetic", "dataset.train_size=256", "dataset.test_size=64", "pipeline.pretrain_epochs=1",
       "pipeline.retrain_epochs=1", "logger=none", "trainer.progress=false"]


def sources(dest: Path) -> Path:
    """The files a clean clone has (tracked, or new and not ignored): never a stale build/ or
    *.egg-info, which would put files in the wheel that package-data does not ask for."""
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO, capture_output=True,
                            check=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        src = REPO / name
        if src.is_file() and not src.is_symlink():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    return dest


def build_wheel(tmp: Path) -> Path:
    src = sources(tmp / "src")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                    "-q", "-w", str(tmp / "dist"), str(src)], check=True, capture_output=True)
    return next((tmp / "dist").glob("tnbench-*.whl"))


def fresh_venv(tmp: Path, wheel: Path) -> Path:
    """A venv with the wheel installed and the project venv's packages but tnbench visible."""
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps",
                    "--no-index", str(wheel)], check=True, capture_output=True)
    deps = tmp / "deps"
    deps.mkdir()
    site = Path(sysconfig.get_paths()["purelib"])
    for entry in site.iterdir():
        if not entry.name.lower().startswith(("tnbench", "__editable__")):
            (deps / entry.name).symlink_to(entry)
    target = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                            capture_output=True, text=True, check=True).stdout.strip()
    (Path(target) / "project_deps.pth").write_text(f"{deps}\n")
    return venv


def test_wheel_installed_in_a_fresh_venv_runs_a_job_from_another_directory(tmp_path):
    wheel = build_wheel(tmp_path)
    names = zipfile.ZipFile(wheel).namelist()
    conf = REPO / "tnbench" / "conf"
    # every config file ships, and nothing from outside the package
    assert {f"tnbench/conf/{p.relative_to(conf)}" for p in conf.rglob("*.yaml")} <= set(names)
    assert {"tnbench/conf/__init__.py", "tnbench/reporting/report.css"} <= set(names)
    assert all(n.startswith(("tnbench/", "tnbench-")) for n in names)

    venv = fresh_venv(tmp_path, wheel)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(WANDB_MODE="offline", WANDB_SILENT="true")
    where = subprocess.run([str(venv / "bin" / "python"), "-c", "import tnbench, torch; print(tnbench.__file__); "
                            "print(torch.__file__)"], cwd=elsewhere, env=env, capture_output=True, text=True)
    assert where.returncode == 0, where.stderr[-2000:]
    tnbench_file, torch_file = where.stdout.split()
    assert Path(tnbench_file).is_relative_to(venv)  # the wheel's tnbench, not the checkout's
    assert Path(torch_file).is_relative_to(tmp_path / "deps")  # torch not installed again

    # the console script (Hydra finds the configs as pkg://tnbench.conf) runs a job here
    job = subprocess.run([str(venv / "bin" / "tnbench"), *JOB], cwd=elsewhere, env=env, capture_output=True,
                         text=True, timeout=600)
    assert job.returncode == 0, job.stderr[-3000:]
    (rec,) = records(elsewhere / "results" / "runs")
    assert rec["status"] == "ok" and (rec["dataset"], rec["model"], rec["method"]) == ("synthetic", "lenet5", "svd")
    assert rec["num_train"] == 256 and rec["compression_ratio"] > 1
    # `python -m tnbench` (configs found next to the installed module) composes the same config
    shown = subprocess.run([str(venv / "bin" / "python"), "-m", "tnbench", "--cfg", "job", "method=cp"], cwd=elsewhere,
                           env=env, capture_output=True, text=True)
    assert shown.returncode == 0, shown.stderr[-2000:]
    assert "name: cp" in shown.stdout
