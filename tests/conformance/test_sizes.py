"""No module of tnbench grows past 450 lines (the target is about 400): one concern a module."""
from __future__ import annotations

import pytest

from tests.conftest import PACKAGE, REPO

LIMIT, TARGET = 450, 400
# over the limit when this test was written; each is to be split, then taken off this list
PENDING_SPLIT = {"tnbench/studies/truncation.py"}


def lengths() -> dict[str, int]:
    return {str(p.relative_to(REPO)): len(p.read_text().splitlines()) for p in sorted(PACKAGE.rglob("*.py"))}


def over(limit: int, among: dict[str, int]) -> dict[str, int]:
    return {path: n for path, n in among.items() if n > limit}


def report(sizes: dict[str, int]) -> str:
    return (f"over {LIMIT} lines: {over(LIMIT, sizes)}; over the {TARGET}-line target: "
            f"{over(TARGET, sizes)} (pending a split: {sorted(PENDING_SPLIT)})")


def test_no_module_is_longer_than_450_lines():
    sizes = lengths()
    assert len(sizes) > 50 and PENDING_SPLIT <= set(sizes)
    assert not over(LIMIT, {p: n for p, n in sizes.items() if p not in PENDING_SPLIT}), report(sizes)


@pytest.mark.xfail(strict=True, reason="tnbench/studies/truncation.py (528 lines) is not split yet; once it is, "
                                       "empty PENDING_SPLIT and drop this test")
def test_modules_pending_a_split_are_split():
    sizes = lengths()
    assert not over(LIMIT, {p: sizes[p] for p in PENDING_SPLIT}), report(sizes)
