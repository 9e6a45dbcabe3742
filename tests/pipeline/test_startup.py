"""Start-up stays light (tnbench.__main__): `--help` and `--cfg job` answer without importing
torch, Lightning or any method, so they take well under a second of imports, not ten."""
from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import REPO

PROBE = """
import runpy, sys
sys.argv = ["tnbench", *sys.argv[1:]]
try:
    runpy.run_module("tnbench", run_name="__main__")
except SystemExit as e:
    code = e.code
else:
    code = 0
heavy = sorted(m for m in ("torch", "lightning", "tnbench.methods", "tnbench.layers", "wandb") if m in sys.modules)
print("HEAVY:" + ",".join(heavy), "CODE:" + str(code), file=sys.stderr)
"""


@pytest.mark.parametrize("argv", [["--help"], ["--cfg", "job", "method=svd", "dataset=synthetic"], ["--hydra-help"]])
def test_answers_without_heavy_imports(argv, tmp_path):
    r = subprocess.run([sys.executable, "-c", PROBE, *argv], cwd=tmp_path, capture_output=True, text=True,
                       timeout=120, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    last = r.stderr.strip().splitlines()[-1]
    assert last == "HEAVY: CODE:0", (last, r.stderr[-2000:])
    assert r.stdout.strip()  # it did answer
