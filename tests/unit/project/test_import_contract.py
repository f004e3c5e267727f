"""The package map of docs/design.md, enforced: which part of the code may import which.

The contract is read from the map's table itself, so the document and the check cannot drift apart.
Every import of the shipped code is read from its syntax tree (inside functions and `if TYPE_CHECKING:`
blocks too: a type-only import is still an arrow of the design; relative imports resolved; and
`importlib.import_module`/`__import__` calls with a literal name), mapped to the part that holds the
module, and checked against the parts the table lists for the importer.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
PACKAGES = ("core", "tables", "agents", "streams")
HARNESS = ("bench", "tests")  # may import anything; nothing shipped may import them
_CELL = re.compile(r"`([^`]+)`")


def _part(cell: str) -> str:
    """`streams/lag/` -> streams.lag, `streams/sidecar.py` -> streams.sidecar."""
    return cell.removesuffix("/").removesuffix(".py").replace("/", ".")


def read_contract(design: str) -> dict[str, frozenset[str]]:
    """The package map's table: part -> the parts it may import."""
    table = design.split("## Package map", 1)[1].split("\n## ", 1)[0]
    contract: dict[str, frozenset[str]] = {}
    for line in table.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 3 or not cells[0].startswith("`"):
            continue
        part = _part(_CELL.findall(cells[0])[0])  # `streams/app.py`, `streams/__init__.py`: the first names it
        contract[part] = frozenset(_part(c) for c in _CELL.findall(cells[2]))
    return contract


CONTRACT = read_contract((ROOT / "docs" / "design.md").read_text())


def part_of(module: str) -> str | None:
    """The part that holds `module`; None for what is not the project's (the standard library, packages)."""
    if module == "streams":
        return "streams.app"  # the package's __init__ is the Faust entry point: it builds the app
    top = module.split(".")[0]
    if top in HARNESS:
        return top
    if top not in PACKAGES:
        return None
    return max((p for p in CONTRACT if module == p or module.startswith(p + ".")), key=len)


def module_name(relative: str) -> str:
    parts = Path(relative).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_module(dotted: str) -> bool:
    base = ROOT.joinpath(*dotted.split("."))
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def _absolute(relative: str, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    package = module_name(relative).split(".")
    if not relative.endswith("__init__.py"):
        package = package[:-1]
    base = package[: len(package) - (node.level - 1)]
    return ".".join([*base, *([node.module] if node.module else [])])


def imports(relative: str, source: str) -> Iterator[tuple[int, str]]:
    """(line, module) for every import in the file, `from a import b` resolved to `a.b` when b is a module."""
    for node in ast.walk(ast.parse(source, relative)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            module = _absolute(relative, node)
            for alias in node.names:
                sub = f"{module}.{alias.name}"
                yield node.lineno, sub if is_module(sub) else module
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            if name in ("import_module", "__import__") and isinstance(node.args[0].value, str):
                yield node.lineno, node.args[0].value


def shipped() -> list[tuple[str, str]]:
    """(path relative to the root, source) of every module of the shipped packages."""
    files = sorted(p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py"))
    return [(str(p.relative_to(ROOT)), p.read_text()) for p in files]


def violations(files: list[tuple[str, str]]) -> list[str]:
    found = []
    for relative, source in files:
        importer = part_of(module_name(relative))
        assert importer is not None and importer in CONTRACT, relative
        for line, module in imports(relative, source):
            imported = part_of(module)
            if imported is not None and imported != importer and imported not in CONTRACT[importer]:
                found.append(f"{relative}:{line}: {importer} imports {module} ({imported})")
    return found


def test_every_import_of_the_shipped_code_follows_the_package_map() -> None:
    files = shipped()
    assert len(files) > 60  # the walk found the code, not an empty tree
    assert violations(files) == []


def test_the_map_names_every_part_of_the_tree() -> None:
    assert set(CONTRACT) >= {"core", "tables", "agents", "streams", "streams.lag", "streams.web", "streams.app"}
    packages = {module_name(str(p.relative_to(ROOT))) for pkg in PACKAGES for p in (ROOT / pkg).rglob("__init__.py")}
    assert sorted(packages - set(CONTRACT)) == [], "a package the map does not name gets no rights by accident"
    named = {p for allowed in CONTRACT.values() for p in allowed}
    assert sorted(named - set(CONTRACT)) == []


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
        ("bench.run", "bench"),
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
        ("streams/web/x.py", "from .. import sidecar", "streams.web imports streams.sidecar"),
        ("streams/web/x.py", "from ..sidecar import Sidecar", "streams.web imports streams.sidecar"),
        ("tables/x.py", "def f():\n    from agents import tap", "tables imports agents.tap (agents)"),
        ("core/x.py", "import importlib\nimportlib.import_module('streams.settings')", "core imports streams.settings"),
        ("agents/x.py", "__import__('streams.app')", "agents imports streams.app"),
        ("streams/x.py", "from bench.run import main", "streams imports bench.run (bench)"),
        ("streams/lag/x.py", "from tests.sim import world", "streams.lag imports tests.sim"),
    ],
)
def test_a_wrong_arrow_is_found(importer: str, text: str, wrong: str) -> None:
    found = violations([(importer, text + "\n")])
    assert len(found) == 1 and wrong in found[0], found
