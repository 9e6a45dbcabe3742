"""The README's list of record fields is the record schema's (tnbench.reporting.schema.markdown)."""
from __future__ import annotations

from tests.conftest import REPO
from tnbench.reporting.schema import markdown

START, END = "<!-- record-fields:start -->", "<!-- record-fields:end -->"


def test_readme_record_fields_are_the_schemas():
    readme = (REPO / "README.md").read_text()
    assert START in readme and END in readme, f"README.md has no {START} ... {END} block"
    block = readme.split(START, 1)[1].split(END, 1)[0]
    assert block.strip() == markdown().strip(), "README's record fields differ from schema.markdown(): " \
                                                "paste `python -c 'from tnbench.reporting.schema import markdown; " \
                                                "print(markdown())'` between the markers"
