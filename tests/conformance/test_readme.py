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


# names that are not modules: the package's API and the registries' entry-point groups
PUBLIC = {"tnbench.run", "tnbench.compose", "tnbench.load", "tnbench.Result", "tnbench.methods", "tnbench.models",
          "tnbench.datasets"}


def test_docs_name_only_modules_that_exist():
    """Module paths and dotted names in the README, sweeps and results docs point at real files
    (a move that leaves the prose behind fails here)."""
    import re

    docs = [REPO / "README.md", *REPO.glob("sweeps/*.md"), *REPO.glob("results/**/*.md")]
    missing = set()
    for doc in docs:
        text = doc.read_text()
        for path in re.findall(r"\btnbench/[\w/]+\.py\b", text):
            if not (REPO / path).is_file():
                missing.add(f"{doc.relative_to(REPO)}: {path}")
        for dotted in re.findall(r"\btnbench(?:\.[a-z_]\w*)+", text):
            parts = dotted.split(".")
            if dotted in PUBLIC:
                continue
            # a dotted name may end in a function or class: some prefix must be a module or package
            found = any((REPO.joinpath(*parts[:k]).with_suffix(".py")).is_file() or
                        (REPO.joinpath(*parts[:k]) / "__init__.py").is_file() for k in range(len(parts), 1, -1))
            if not found:
                missing.add(f"{doc.relative_to(REPO)}: {dotted}")
    assert not missing, sorted(missing)
