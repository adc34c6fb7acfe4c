"""The package's layers stay true: each subpackage imports only from the layers below it, and no module
imports another that imports it back (function-level imports included)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "ledger"

# Bottom to top. A module may import its own layer and the layers below it, never one above.
LAYERS = (
    ("ledger.errors", "ledger.money", "ledger.exactjson", "ledger.redact", "ledger.keys", "ledger.terminal"),
    ("ledger.accounting",),
    ("ledger.config",),
    ("ledger.store",),
    ("ledger.sink",),
    ("ledger.record",),
    ("ledger.reports",),
    ("ledger.service",),
    ("ledger.proxy",),
    ("ledger.sim",),
    ("ledger.commands",),
    ("ledger.web",),
    ("ledger.cli", "ledger.cli_types", "ledger"),
)
# Members that stand for one module only, not for what lies under them: `ledger`, the package's __init__,
# would otherwise hold every module, and a new one listed nowhere would never be reported.
EXACT = {"ledger"}
# What values-in, values-out code never loads: it is tested without I/O and reused by every shell.
IO_LIBRARIES = ("httpx", "httpx2", "sqlalchemy", "psycopg", "alembic", "pandas", "xlsxwriter", "apscheduler",
                "starlette", "uvicorn", "openai")
PURE = ("ledger.errors", "ledger.money", "ledger.exactjson", "ledger.redact", "ledger.keys", "ledger.accounting",
        "ledger.config")


def modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """Every module of the package and every outside top-level package `name` imports, wherever in the file."""
    tree = ast.parse(path.read_text())
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            node.body = []  # for type checkers only: never imported at run time
    for node in ast.walk(tree):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            targets = [module] + [f"{module}.{alias.name}" for alias in node.names]
        for target in targets:
            if not target.startswith("ledger"):
                found.add(target.split(".")[0])
                continue
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def layer_or_none(name: str) -> int | None:
    best = None
    for index, members in enumerate(LAYERS):
        for member in members:
            within = name == member or (member not in EXACT and name.startswith(member + "."))
            if within and (best is None or len(member) > len(best[1])):
                best = (index, member)
    return None if best is None else best[0]


def layer_of(name: str) -> int:
    index = layer_or_none(name)
    assert index is not None, f"{name} is in no layer: add it to LAYERS"
    return index


def graph() -> dict[str, set[str]]:
    found = modules()
    known = set(found)
    return {name: imports_of(name, path, known) for name, path in found.items()}


def test_every_module_is_in_a_layer():
    missing = sorted(name for name in modules() if layer_or_none(name) is None)
    assert not missing, f"in no layer of LAYERS (add each where it belongs): {', '.join(missing)}"


def test_each_module_imports_only_its_own_layer_and_those_below():
    wrong = [
        f"{name} (layer {layer_of(name)}) imports {target} (layer {layer_of(target)})"
        for name, targets in graph().items()
        for target in targets
        if target.startswith("ledger") and target != "ledger" and layer_of(target) > layer_of(name)
    ]
    assert not wrong, "\n".join(wrong)


def test_no_two_modules_import_each_other_round_a_cycle():
    edges = {name: {t for t in targets if t.startswith("ledger") and t != "ledger"} for name, targets in graph().items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles = []

    def visit(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in edges.get(node, ()):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in edges:
        if node not in index:
            visit(node)
    assert not cycles, cycles


def test_the_pure_core_loads_no_io_library():
    wrong = [
        f"{name} imports {target}"
        for name, targets in graph().items()
        if any(name == p or name.startswith(p + ".") for p in PURE)
        for target in targets
        if target in IO_LIBRARIES
    ]
    assert not wrong, "\n".join(wrong)


def test_no_module_grows_past_what_one_reader_holds():
    sizes = {name: len(path.read_text().splitlines()) for name, path in modules().items()}
    assert max(sizes.values()) <= 500, sorted(sizes.items(), key=lambda item: -item[1])[:3]


def test_the_workbook_writer_only_formats():
    """Its figures and row streams are built first (reports/xlsx_figures.py): the writer never reads the ledger."""
    edges = graph()
    wrong = [f"{name} imports {target}" for name in ("ledger.reports.xlsx", "ledger.reports.xlsx_rows")
             for target in edges[name] if target.startswith("ledger.store") or target in ("sqlalchemy",)]
    assert not wrong, "\n".join(wrong)
