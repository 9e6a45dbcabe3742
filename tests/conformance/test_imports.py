"""How tnbench's modules import each other, read from their source with `ast`: no import cycle,
the layering (functional <- layers <- methods, nothing of the pipeline in a method), the modules
that composing a config goes through stay free of torch, and every module imports."""
from __future__ import annotations

import ast
import subprocess
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

from tests.conftest import PACKAGE, REPO

# what composing a config (`--help`, `--cfg job`) imports: light on purpose
LIGHT = ["tnbench.config", "tnbench.errors", "tnbench.registry", "tnbench.pipeline.configstore",
         "tnbench.pipeline.identity"]
HEAVY = ("torch", "torchvision", "torchmetrics", "lightning", "pytorch_lightning")


@dataclass(frozen=True)
class Import:
    target: str  # the imported module: a tnbench module, or the top-level name of another package
    line: int
    module_level: bool  # False: inside a function (runs when called)
    type_checking: bool  # under `if TYPE_CHECKING:` (never runs)


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@cache
def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def resolve(name: str, node: ast.ImportFrom | ast.Import, alias: ast.alias, current: str) -> str:
    """The module an import statement brings in: `from a.b import c` is a.b.c when that is a
    module, else a.b; relative imports are resolved against `current`."""
    if isinstance(node, ast.Import):
        return alias.name
    base = node.module or ""
    if node.level:
        package = current if modules()[current].name == "__init__.py" else current.rpartition(".")[0]
        for _ in range(node.level - 1):
            package = package.rpartition(".")[0]
        base = f"{package}.{base}" if base else package
    return f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules() else base


def is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


@cache
def imports_of(name: str) -> tuple[Import, ...]:
    found: list[Import] = []

    def visit(node: ast.AST, module_level: bool, type_checking: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                for alias in child.names:
                    target = resolve(name, child, alias, name)
                    if not target.startswith("tnbench"):
                        target = target.split(".")[0]
                    found.append(Import(target, child.lineno, module_level, type_checking))
            elif isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                visit(child, False, type_checking)
            elif isinstance(child, ast.If) and is_type_checking(child.test):
                visit(child, module_level, True)
            else:
                visit(child, module_level, type_checking)

    visit(ast.parse(modules()[name].read_text()), True, False)
    return tuple(found)


def tnbench_imports(name: str, module_level_only: bool) -> list[Import]:
    return [i for i in imports_of(name) if i.target.startswith("tnbench")
            and (i.module_level or not module_level_only)]


def where(name: str, imp: Import) -> str:
    return f"{modules()[name].relative_to(REPO)}:{imp.line} imports {imp.target}"


def in_package(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the directed graph (as a path that returns to its start), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def dfs(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := dfs(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := dfs(node)):
            return cycle
    return None


def test_the_modules_are_found():
    assert {"tnbench", "tnbench.methods.svd", "tnbench.functional.tucker", "tnbench.pipeline.jobs"} <= set(modules())
    assert any(i.target == "tnbench.methods.base" for i in imports_of("tnbench.methods.svd"))
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle_at_module_level():
    graph = {name: {i.target for i in tnbench_imports(name, module_level_only=True)
                    if not i.type_checking and i.target != name}
             for name in modules()}
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


# package -> the tnbench packages it may not import (module level or inside functions)
FORBIDDEN = {
    "tnbench.functional": ["tnbench.layers", "tnbench.methods", "tnbench.pipeline", "tnbench.reporting",
                           "tnbench.data", "tnbench.models"],
    "tnbench.methods": ["tnbench.pipeline", "tnbench.reporting"],
    # a saved model is rebuilt and exported without any method or training code
    "tnbench.artifacts": ["tnbench.pipeline", "tnbench.methods"],
}
# package -> all that it may import of tnbench
ALLOWED_ONLY = {"tnbench.layers": ["tnbench.layers", "tnbench.functional", "tnbench.errors"]}


@pytest.mark.parametrize("package", [*FORBIDDEN, *ALLOWED_ONLY])
def test_layering(package):
    bad = []
    for name in modules():
        if not in_package(name, package):
            continue
        for imp in tnbench_imports(name, module_level_only=False):
            if package in FORBIDDEN and any(in_package(imp.target, p) for p in FORBIDDEN[package]):
                bad.append(where(name, imp))
            if package in ALLOWED_ONLY and not any(in_package(imp.target, p) for p in ALLOWED_ONLY[package]):
                bad.append(where(name, imp))
    assert not bad, f"{package} breaks the layering:\n" + "\n".join(bad)


def module_level_closure(name: str) -> set[str]:
    """The tnbench modules importing `name` runs: its packages' __init__ and, transitively, what
    each imports at module level."""
    todo, seen = [name], set()
    while todo:
        current = todo.pop()
        if current in seen or current not in modules():
            continue
        seen.add(current)
        parts = current.split(".")
        todo += [".".join(parts[:k]) for k in range(1, len(parts))]
        todo += [i.target for i in tnbench_imports(current, module_level_only=True) if not i.type_checking]
    return seen


@pytest.mark.parametrize("name", LIGHT)
def test_config_modules_import_no_torch_at_module_level(name):
    heavy = [where(m, i) for m in sorted(module_level_closure(name)) for i in imports_of(m)
             if i.module_level and not i.type_checking and i.target in HEAVY]
    assert not heavy, f"importing {name} brings in torch:\n" + "\n".join(heavy)


def run_python(code: str, *args: str) -> subprocess.CompletedProcess:
    # cwd: this checkout's tnbench comes first on sys.path
    return subprocess.run([sys.executable, "-c", code, *args], cwd=REPO, capture_output=True, text=True, timeout=300)


def test_composing_a_config_loads_no_torch():
    code = ("import sys\n"
            "from hydra import compose, initialize_config_dir\n"
            "from tnbench.pipeline.configstore import register_configs\n"
            "for name in sys.argv[3:]:\n"
            "    __import__(name)\n"
            "register_configs()\n"
            "with initialize_config_dir(config_dir=sys.argv[1], version_base='1.3'):\n"
            "    cfg = compose(config_name='config', overrides=['method=tucker_adaptive', 'dataset=synthetic'])\n"
            # not `run_id`: its key types the method's and dataset's sections by their schemas
            # (tnbench.pipeline.identity), which a run loads anyway
            "assert (cfg.dataset.name, cfg.method.name) == ('synthetic', 'tucker_adaptive'), cfg\n"
            "print(sorted({m.split('.')[0] for m in sys.modules} & set(sys.argv[2].split(','))))\n")
    r = run_python(code, str(PACKAGE / "conf"), ",".join(HEAVY), *LIGHT)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.strip() == "[]", f"composing a config imported {r.stdout.strip()}"


def test_every_module_imports_in_a_fresh_interpreter():
    code = ("import importlib, sys\n"
            "for name in sys.argv[1:]:\n"
            "    importlib.import_module(name)\n"
            "    print(name)\n")
    names = sorted(modules())
    r = run_python(code, *names)
    done = r.stdout.split()
    assert r.returncode == 0, f"the import after {done[-1] if done else 'none'} failed:\n{r.stderr[-3000:]}"
    assert r.stdout.split() == names
