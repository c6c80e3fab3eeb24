"""The house: the rooms of src/authapp, which room may import which, no import circles, no
module much over 400 lines, and every module saying in its first line what it is."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import ROOT

PACKAGE = ROOT / "src" / "authapp"
MAX_LINES = 420  # "about 400"

# A room may import itself and the rooms listed; the top (assembly) may import anything.
ROOMS = {
    "infra": {"infra", "shared"},
    "models": {"models", "shared"},
    "accounts": {"accounts", "models", "infra", "shared"},
    "web": {"web", "accounts", "models", "infra", "shared", "assembly"},
}
# Modules at the top of the package: what every room may use (the settings, the error type,
# the signals), and the assembly beside create_app that knows every service.
SHARED = {"authapp.config", "authapp.errors", "authapp.signals"}
ASSEMBLY = {"authapp.state"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


MODULES = {module_name(path): path for path in PACKAGE.rglob("*.py")}


def room_of(module: str) -> str:
    if module in SHARED:
        return "shared"
    if module in ASSEMBLY:
        return "assembly"
    parts = module.split(".")
    if parts[:2] == ["authapp", "cli"]:  # the command line, a package beside create_app: the top
        return "top"
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and parts[1] in ROOMS) else "top"


def imports_of(module: str) -> set[str]:
    """The authapp modules `module` imports when it is imported (not under TYPE_CHECKING, not
    inside functions: those run later, and break no circle at import time)."""
    path = MODULES[module]
    tree = ast.parse(path.read_text())
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found: set[str] = set()

    def visit(nodes: list[ast.stmt]) -> None:
        for node in nodes:
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                continue
            if isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*parts, *([node.module] if node.module else [])])
                if not base.startswith("authapp"):
                    continue
                for alias in node.names:
                    sub = f"{base}.{alias.name}"
                    found.add(sub if sub in MODULES else base)
            elif isinstance(node, ast.Import):
                found.update(a.name for a in node.names if a.name.startswith("authapp"))
            elif isinstance(node, ast.If | ast.Try):
                visit(node.body)
                visit(node.orelse)

    visit(tree.body)
    return {name for name in found if name in MODULES and name != module}


GRAPH = {module: imports_of(module) for module in MODULES}


@pytest.mark.parametrize("module", sorted(MODULES))
def test_each_room_imports_only_the_rooms_below_it(module: str) -> None:
    room = room_of(module)
    if room in {"top", "assembly", "shared"}:
        return
    allowed = ROOMS[room]
    wrong = sorted(name for name in GRAPH[module] if room_of(name) not in allowed)
    assert not wrong, f"{module} ({room}) imports {wrong}"


def test_there_are_no_import_circles() -> None:
    """Tarjan's strongly connected components of the import graph: each must be one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []

    def connect(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for imported in GRAPH[module]:
            if imported not in index:
                connect(imported)
                low[module] = min(low[module], low[imported])
            elif imported in on_stack:
                low[module] = min(low[module], index[imported])
        if low[module] == index[module]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == module:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for module in sorted(GRAPH):
        if module not in index:
            connect(module)
    assert not circles, circles


@pytest.mark.parametrize("module", sorted(MODULES))
def test_modules_are_small_and_say_what_they_are(module: str) -> None:
    path = MODULES[module]
    text = path.read_text()
    assert len(text.splitlines()) <= MAX_LINES, f"{path} has {len(text.splitlines())} lines"
    docstring = ast.get_docstring(ast.parse(text))
    assert docstring, f"{path} does not say what room it is"
    assert docstring.splitlines()[0].strip(), path


def test_the_rooms_are_there() -> None:
    for room in ("web", "web/blueprints", "web/blueprints/api", "accounts", "models", "infra"):
        assert (PACKAGE / room / "__init__.py").is_file(), room
