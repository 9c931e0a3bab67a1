"""The layers hold: no import runs up them, no cycles, Faust's private names in one place.

    schemas  ←  connectors  ←  topologies, gateways  ←  deploy, perf

A module may import its own package and the layers below it; ``deploy.settings``
imports no project module and may be read from every layer. Imports inside functions
count too: a lazy import up the layers is still a dependency up the layers. The check
reads the source (AST), so it needs no server and imports nothing.

``PENDING`` lists the imports that still break a rule in files this change could not
edit; the integrator moves each one and empties the list (an entry that no longer
occurs fails the test, so the list cannot go stale).
"""

from __future__ import annotations

import ast
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RANK = {"schemas": 0, "connectors": 1, "topologies": 2, "gateways": 2, "deploy": 3, "perf": 3}
READ_FROM_EVERYWHERE = "deploy.settings"

# Edges between packages of one rank that are allowed, each with its reason.
SIDEWAYS = {
    # perf measures the product on the stack deploy launches; deploy never imports perf.
    ("perf", "deploy"),
}
# The gateway refuses a post early with the very rules of the pipeline's first stage.
# That stage is pure (it imports schemas only, checked below), so sharing it is safe.
SHARED_PURE_STAGES = ("topologies.stages.validate",)

PENDING: set[tuple[str, str]] = set()

# Faust and aiokafka internals are adapted in one module, where each patch is tested.
FAUST_ADAPTER = "topologies.faust_compat"
FAUST_PACKAGES = frozenset({"faust", "aiokafka", "mode"})
PENDING_PRIVATE: set[tuple[str, str]] = set()


def _modules() -> Iterator[tuple[str, Path]]:
    for package in RANK:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            yield ".".join(parts), path


MODULES = dict(_modules())


def _resolve(name: str) -> str:
    """The longest project module ``name`` starts with (``a.b.func`` → ``a.b``)."""
    parts = name.split(".")
    while parts and ".".join(parts) not in MODULES:
        parts.pop()
    return ".".join(parts) if parts else name


def _imports(path: Path) -> Iterator[str]:
    """Project modules imported anywhere in the file, ``from a import b`` as ``a.b``."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            if name.split(".")[0] in RANK:
                yield _resolve(name)


GRAPH: dict[str, set[str]] = {module: set(_imports(path)) for module, path in MODULES.items()}


def _package(module: str) -> str:
    return module.split(".")[0]


def _allowed(importer: str, imported: str) -> bool:
    source, target = _package(importer), _package(imported)
    if source == target or imported == READ_FROM_EVERYWHERE:
        return True
    if imported in SHARED_PURE_STAGES:
        return True
    return RANK[target] < RANK[source] or (source, target) in SIDEWAYS


def _violations() -> set[tuple[str, str]]:
    return {
        (importer, imported)
        for importer, targets in GRAPH.items()
        for imported in targets
        if not _allowed(importer, imported)
    }


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a path, or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_import_runs_up_the_layers() -> None:
    assert _violations() - PENDING == set()


def test_every_pending_layer_exception_still_occurs() -> None:
    # When a pending import is fixed, strike it from PENDING.
    assert PENDING - _violations() == set()


def test_settings_import_no_project_module() -> None:
    assert GRAPH[READ_FROM_EVERYWHERE] == set()


def test_names_and_error_codes_import_nothing_of_the_project() -> None:
    assert GRAPH["schemas.names"] == set()
    assert GRAPH["gateways.error_codes"] == set()


def test_shared_pure_stages_import_only_schemas() -> None:
    for module in SHARED_PURE_STAGES:
        assert {_package(m) for m in GRAPH[module]} <= {"schemas"}, module


def test_no_import_cycle_between_packages() -> None:
    packages: dict[str, set[str]] = defaultdict(set)
    for importer, targets in GRAPH.items():
        for imported in targets:
            if (importer, imported) in PENDING or imported == READ_FROM_EVERYWHERE:
                continue
            if _package(importer) != _package(imported):
                packages[_package(importer)].add(_package(imported))
    assert _cycle(packages) is None


def test_no_import_cycle_inside_deploy_stack() -> None:
    stack = {
        module: {m for m in targets if m.startswith("deploy.stack.")}
        for module, targets in GRAPH.items()
        if module.startswith("deploy.stack.")
    }
    assert _cycle(stack) is None


def _private_names(module: str, path: Path) -> Iterator[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.ImportFrom)
            and node.module
            and node.module.split(".")[0] in FAUST_PACKAGES
        ):
            for alias in node.names:
                if alias.name.startswith("_"):
                    yield f"{node.module}.{alias.name}"
        if isinstance(node, ast.Attribute) and node.attr.startswith("_"):
            if node.attr.startswith("__"):
                continue
            base = node.value
            # Our own privates (self._x, cls._x) and the standard library's os._exit.
            if isinstance(base, ast.Name) and base.id in ("self", "cls", "os", "sys"):
                continue
            yield ast.unparse(node)


def test_faust_and_aiokafka_private_names_only_in_the_adapter() -> None:
    found: set[tuple[str, str]] = set()
    for module, path in MODULES.items():
        if module == FAUST_ADAPTER:
            continue
        source = path.read_text(encoding="utf-8")
        if not any(f"import {p}" in source or f"from {p}" in source for p in FAUST_PACKAGES):
            continue
        found |= {(module, name) for name in _private_names(module, path)}
    assert found - PENDING_PRIVATE == set()
    assert PENDING_PRIVATE - found == set(), "strike fixed entries from PENDING_PRIVATE"


# -- one word per concept ----------------------------------------------------------------------

# Class names that still mean two things, in files this change could not edit. Rename
# one side of each and strike it from here.
PENDING_NAMES: set[str] = set()
# Where `now_ms()` is defined: schemas/clock.py, and gateways/server.py until it imports it.
PENDING_CLOCKS: set[str] = set()


def _defined(kind: type[ast.AST]) -> dict[str, set[str]]:
    found: dict[str, set[str]] = defaultdict(set)
    for module, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, kind):
                found[getattr(node, "name")].add(module)  # noqa: B009
    return found


def test_each_class_name_means_one_thing() -> None:
    shared = {name for name, modules in _defined(ast.ClassDef).items() if len(modules) > 1}
    assert shared - PENDING_NAMES == set()
    assert PENDING_NAMES - shared == set(), "strike renamed classes from PENDING_NAMES"


def test_one_now_ms() -> None:
    assert _defined(ast.FunctionDef)["now_ms"] == {"schemas.clock"} | PENDING_CLOCKS
