"""The package map of docs/design.md, enforced: which part of the code may import which.

Every `import` in the shipped code is read from its syntax tree (inside functions and `if TYPE_CHECKING:`
blocks too: a type-only import is still an arrow of the design), resolved to a module, and mapped to
the part that holds it. A part may import only the parts the contract lists for it, so the arrows run
one way: core <- tables <- agents <- streams' wiring <- lag, web <- the composition root <- the harness.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
PACKAGES = ("core", "tables", "agents", "streams")

# Each part and the parts it may import besides itself. "streams" is the app package's own modules
# (settings, clients, exposition, metrics, exporter...), shared by the lag probe and the web side.
CONTRACT: dict[str, frozenset[str]] = {
    "core": frozenset(),
    "tables": frozenset({"core"}),
    "agents": frozenset({"core", "tables"}),
    "streams.auth": frozenset({"core"}),
    "streams": frozenset({"core", "tables", "agents", "streams.auth"}),
    "streams.lag": frozenset({"core", "tables", "agents", "streams", "streams.auth"}),
    "streams.tools": frozenset({"core", "tables", "agents", "streams"}),
    "streams.web": frozenset({"core", "tables", "agents", "streams", "streams.auth", "streams.lag"}),
    "streams.sidecar": frozenset({"core", "tables", "agents", "streams", "streams.auth", "streams.lag", "streams.web"}),
    "streams.app": frozenset(
        {"core", "tables", "agents", "streams", "streams.auth", "streams.lag", "streams.web", "streams.sidecar"}
    ),
    "streams.local": frozenset(
        {
            *("core", "tables", "agents", "streams", "streams.auth", "streams.lag", "streams.web"),
            *("streams.sidecar", "streams.tools"),
        }
    ),
}


def part_of(module: str) -> str | None:
    """The part that holds `module`; None for what is not the project's (the standard library, packages)."""
    if module == "streams":
        return "streams.app"  # the package's __init__ is the Faust entry point: it builds the app
    if module.split(".")[0] not in PACKAGES:
        return None
    return max((p for p in CONTRACT if module == p or module.startswith(p + ".")), key=len)


def module_name(relative: str) -> str:
    parts = Path(relative).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_module(dotted: str) -> bool:
    base = ROOT.joinpath(*dotted.split("."))
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def imports(relative: str, source: str) -> Iterator[tuple[int, str]]:
    """(line, module) for every import in the file, `from a import b` resolved to `a.b` when b is a module."""
    for node in ast.walk(ast.parse(source, relative)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.module is not None:
            assert node.level == 0, f"{relative}:{node.lineno}: relative import; the contract reads absolute ones"
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                yield node.lineno, sub if is_module(sub) else node.module


def shipped() -> list[tuple[str, str]]:
    """(path relative to the root, source) of every module of the shipped packages."""
    files = sorted(p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py"))
    return [(str(p.relative_to(ROOT)), p.read_text()) for p in files]


def violations(files: list[tuple[str, str]]) -> list[str]:
    found = []
    for relative, source in files:
        importer = part_of(module_name(relative))
        assert importer is not None, relative
        for line, module in imports(relative, source):
            imported = part_of(module)
            if imported is not None and imported != importer and imported not in CONTRACT[importer]:
                found.append(f"{relative}:{line}: {importer} imports {module} ({imported})")
    return found


def test_every_import_of_the_shipped_code_follows_the_package_map() -> None:
    files = shipped()
    assert len(files) > 60  # the walk found the code, not an empty tree
    assert violations(files) == []


def test_the_contract_has_no_cycle() -> None:
    def reaches(start: str, goal: str, seen: frozenset[str] = frozenset()) -> bool:
        return any(p == goal or (p not in seen and reaches(p, goal, seen | {p})) for p in CONTRACT[start])

    assert [p for p in CONTRACT if reaches(p, p)] == []


@pytest.mark.parametrize(
    ("module", "part"),
    [
        ("core.events", "core"),
        ("agents.fold", "agents"),
        ("streams.settings", "streams"),
        ("streams.lag.probe", "streams.lag"),
        ("streams.web.view", "streams.web"),
        ("streams.sidecar", "streams.sidecar"),
        ("streams", "streams.app"),
        ("streams.local.demo", "streams.local"),
        ("aiokafka", None),
        ("bench.run", None),
    ],
)
def test_modules_map_to_their_part(module: str, part: str | None) -> None:
    assert part_of(module) == part


@pytest.mark.parametrize(
    ("importer", "text", "wrong"),
    [
        ("agents/x.py", "from streams.settings import Settings", "agents imports streams.settings (streams)"),
        ("core/x.py", "import tables.keys", "core imports tables.keys (tables)"),
        ("streams/lag/x.py", "from streams.web import view", "streams.lag imports streams.web.view (streams.web)"),
        ("streams/web/x.py", "if 1:\n    from streams.sidecar import Sidecar", "streams.web imports streams.sidecar"),
        ("tables/x.py", "def f():\n    from agents import tap", "tables imports agents.tap (agents)"),
    ],
)
def test_a_wrong_arrow_is_found(importer: str, text: str, wrong: str) -> None:
    found = violations([(importer, text + "\n")])
    assert len(found) == 1 and wrong in found[0], found
