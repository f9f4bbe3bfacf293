"""The package's one dependency rule, checked on the source.

The three processes (`api`, `worker`, `operator`) build on the core; the core never imports
them and they never import each other. Breaking this would tie, say, the operator's image
footprint and start-up to FastAPI, or let a worker reach into request handling.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "agent_growth"
PROCESSES = ("api", "worker", "operator")

# The command line starts every role, so it imports the processes by design.
ENTRYPOINTS = {"cli", "__main__"}


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in found if name.startswith("agent_growth.")}


def owner(module: str) -> str:
    """The top-level part of agent_growth a module belongs to: `api`, `tasks`, `cli`, ..."""
    return module.split(".")[1]


MODULES = sorted(PACKAGE.rglob("*.py"))


def test_imports_follow_the_dependency_rule() -> None:
    offending = {}
    for path in MODULES:
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        here = owner("agent_growth." + ".".join(parts))
        if here in ENTRYPOINTS:
            continue
        crossing = sorted(
            module
            for module in imported_modules(path)
            if owner(module) in PROCESSES and owner(module) != here
        )
        if crossing:
            offending[str(path.relative_to(PACKAGE))] = crossing
    assert offending == {}


def test_the_rule_is_checked_on_real_files() -> None:
    assert len(MODULES) > 30
    assert "agent_growth.tasks.lifecycle" in imported_modules(PACKAGE / "worker" / "runner.py")
