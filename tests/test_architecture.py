"""The package's shape, checked from its source with ``ast``: layers, no import cycles, no private names across modules.

Every import counts, including those inside functions (a lazy import is
still a dependency).  The layers, bottom to top, are the README's developer
section; a module may import from its own layer and those below it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "rastercore"

LAYERS = [
    ("ground", ["errors", "checks", "grid", "progress", "quotas", "palette", "_memory", "_random", "_deprecated"]),
    ("storage", ["scheduler", "store"]),
    ("io", ["io"]),
    ("stack", ["stack"]),
    ("engine", ["engine"]),
    ("per tile", ["features", "models", "preprocess", "targets", "datasets"]),
    ("stages", ["contract", "predict", "sampling", "importance", "search", "training", "boosting", "unsupervised", "autoencoder", "maps", "export", "evaluate", "viz", "views"]),
    ("faces", ["pipeline", "demo", "accessor", "cli", "__init__", "tiles", "cluster"]),
]
LAYER_OF = {top: rank for rank, (_, tops) in enumerate(LAYERS) for top in tops}
# Within a layer, modules may import each other only in this order (a stage builds on sampling, ...).
ORDER_WITHIN = {"errors": 0, "checks": 1, "scheduler": 0, "store": 1, "preprocess": 0, "features": 1, "targets": 0, "models": 0,
                "datasets": 1, "sampling": 0, "importance": 0, "search": 0, "training": 1, "boosting": 2, "predict": 1, "unsupervised": 2, "maps": 2, "export": 2, "viz": 2,
                "evaluate": 3, "views": 3, "autoencoder": 3}


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


MODULES = _modules()


def _resolve(module: str, node: ast.ImportFrom, is_package: bool) -> str:
    if node.level == 0:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _imports(module: str) -> list[tuple[str, str | None, int]]:
    """``(imported module, imported name or None, line)`` for every rastercore import of ``module``."""
    path = MODULES[module]
    tree = ast.parse(path.read_text(), str(path))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(alias.name, None, node.lineno) for alias in node.names if alias.name.startswith("rastercore")]
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(module, node, path.name == "__init__.py")
            if not target.startswith("rastercore"):
                continue
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                out.append((sub, None, node.lineno) if sub in MODULES else (target, alias.name, node.lineno))
    return out


def _top(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def test_every_module_has_a_layer():
    assert {_top(m) for m in MODULES} <= set(LAYER_OF), sorted({_top(m) for m in MODULES} - set(LAYER_OF))


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_only_from_its_layer_and_below(module):
    rank = LAYER_OF[_top(module)]
    wrong = []
    for target, _, line in _imports(module):
        top, here = _top(target), _top(module)
        if top == here or target == "rastercore":
            continue
        if LAYER_OF[top] > rank or (LAYER_OF[top] == rank and ORDER_WITHIN.get(top, 0) > ORDER_WITHIN.get(here, 0)):
            wrong.append(f"line {line}: {target} ({LAYERS[LAYER_OF[top]][0]})")
    assert not wrong, f"{module} ({LAYERS[rank][0]}) imports from above: {wrong}"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_private_name_crosses_a_module_boundary(module):
    private = [f"line {line}: {target}.{name}" for target, name, line in _imports(module)
               if name is not None and name.startswith("_") and not name.startswith("__") and target != module]
    assert not private, f"{module} imports private names of other modules: {private}"


def test_no_import_cycle_between_top_level_modules():
    graph: dict[str, set[str]] = {}
    for module in MODULES:
        graph.setdefault(_top(module), set()).update(
            _top(t) for t, _, _ in _imports(module) if _top(t) != _top(module) and t != "rastercore")
    graph.pop("__init__", None)
    for deps in graph.values():
        deps.discard("__init__")
    visiting, done, cycles = set(), set(), []

    def visit(node, trail):
        if node in visiting:
            cycles.append(trail[trail.index(node):] + [node])
            return
        if node in done:
            return
        visiting.add(node)
        for dep in sorted(graph.get(node, ())):
            visit(dep, trail + [node])
        visiting.discard(node)
        done.add(node)

    for node in sorted(graph):
        visit(node, [])
    assert not cycles, cycles
