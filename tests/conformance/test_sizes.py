"""No module of tnbench grows past 450 lines (the target is about 400): one concern a module."""
from __future__ import annotations

from tests.conftest import PACKAGE, REPO

LIMIT, TARGET = 450, 400


def test_no_module_is_longer_than_450_lines():
    sizes = {str(p.relative_to(REPO)): len(p.read_text().splitlines()) for p in sorted(PACKAGE.rglob("*.py"))}
    assert len(sizes) > 50
    over = {path: n for path, n in sizes.items() if n > LIMIT}
    near = {path: n for path, n in sizes.items() if n > TARGET}
    assert not over, f"over {LIMIT} lines: {over}; over the {TARGET}-line target: {near}"
