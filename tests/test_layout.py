"""The floors of the code base, checked on the source: who may import whom, and no import circles.

Every ``import`` counts, at module level or inside a function (a lazy import is still a dependency).
An import of a module's own parent package is not counted: Python imports the parents of a module
before the module itself, so that edge adds nothing.
"""

from __future__ import annotations

import ast
import logging
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("benchmark", "methods", "attacks", "datamodules")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_modules() -> dict[str, Path]:
    return {module_name(p): p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")}


def imports_of(path: Path, known: set[str]) -> set[str]:
    """The project modules ``path`` imports (``from a.b import c`` counts a.b.c when that is a module)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        found |= {n for n in names if n in known}
    return found


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    modules = project_modules()
    known = set(modules)
    return {name: {m for m in imports_of(path, known) if not name.startswith(m + ".")}
            for name, path in modules.items()}


def floor(module: str) -> str:
    """``benchmark.engine.cell`` -> ``benchmark.engine``; ``methods.ft`` -> ``methods``."""
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] == "benchmark" and len(parts) > 1 else parts[0]


# what each floor may import of the project besides itself (the bottom floor is benchmark.core)
ALLOWED = {
    "benchmark.core": set(),
    "attacks": set(),
    "datamodules": {"benchmark.core"},
    "methods": {"benchmark.core", "datamodules"},
    "benchmark.report": {"benchmark.core"},
    "benchmark.engine": {"benchmark.core", "benchmark.report", "attacks", "methods", "datamodules", "benchmark"},
    "benchmark.studies": {"benchmark.core", "benchmark.report", "benchmark.engine", "attacks", "methods",
                          "datamodules", "benchmark"},
    "benchmark.cli": {"benchmark.core", "benchmark.report", "benchmark.engine", "benchmark.studies", "attacks",
                      "methods", "datamodules"},
    "benchmark": set(),  # the package itself: its version only
}


def test_every_module_imports_only_the_floors_below_it(graph):
    wrong = [f"{m} imports {d}" for m, deps in sorted(graph.items()) for d in sorted(deps)
             if floor(d) != floor(m) and floor(d) not in ALLOWED[floor(m)]]
    assert not wrong, "\n".join(wrong)


def test_nothing_imports_the_command_line(graph):
    assert not [m for m, deps in graph.items() if "benchmark.cli" in deps]


def test_attacks_import_nothing_of_the_benchmark_package():
    text = "\n".join(p.read_text() for p in (ROOT / "attacks").rglob("*.py"))
    assert "from benchmark" not in text and "import benchmark" not in text


def test_no_import_circles(graph):
    """Depth-first search for a back edge; the message shows the circle."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = finished
    path: list[str] = []

    def visit(module: str) -> list[str] | None:
        state[module] = 1
        path.append(module)
        for dep in sorted(graph[module]):
            if state.get(dep) == 1:
                return path[path.index(dep):] + [dep]
            if dep not in state and (circle := visit(dep)):
                return circle
        path.pop()
        state[module] = 2
        return None

    for module in sorted(graph):
        if module not in state and (circle := visit(module)):
            pytest.fail("import circle: " + " -> ".join(circle))


def test_importing_the_project_changes_no_logging_level_or_warning_filter():
    """A user's notebook keeps its own settings: only a run quiets Lightning, for its own length."""
    code = ("import logging, warnings; names = ('lightning.pytorch', 'lightning.fabric', 'lightning'); "
            "import lightning; before = [logging.getLogger(n).level for n in names], list(warnings.filters); "
            "import methods, attacks, datamodules, benchmark.engine.grid, benchmark.cli; "
            "after = [logging.getLogger(n).level for n in names], list(warnings.filters); "
            "print(before == after)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert done.stdout.strip() == "True", done.stderr[-2000:]


def test_a_run_restores_the_logging_level_it_found():
    from benchmark.core.quiet import quiet_lightning

    logger = logging.getLogger("lightning.pytorch")
    before = logger.level
    with quiet_lightning():
        assert logger.level == logging.WARNING
    assert logger.level == before
