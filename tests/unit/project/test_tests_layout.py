"""The unit tests mirror the code: one folder per part of the package map (tests/unit/streams/lag for
streams/lag, ...), plus folders for what is not Python code (ops, deploy), the benchmark, the simulator and
the project's own files. A test file dropped at the top, a folder named for no part, or a test in the
folder of a part it does not import, fails here."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.project.test_import_contract import imports, part_of

ROOT = Path(__file__).resolve().parents[3]
UNIT = ROOT / "tests" / "unit"
NOT_PACKAGES = {"ops", "deploy", "bench", "sim", "project"}  # ops/, deploy/, bench/, tests/sim, the repository
# The parts whose tests a folder holds, where it is not simply the part of the same path.
FOLDER_PARTS = {
    "streams": {"streams", "streams.sidecar", "streams.app"},  # the package's own modules, root and app included
    "bench": {"bench"},
    "sim": {"tests.sim"},
}
NO_CODE = {"ops", "deploy", "project"}  # their tests read files, whatever they import to do it


def test_no_test_file_sits_at_the_top_of_the_unit_tests() -> None:
    assert sorted(p.name for p in UNIT.glob("*.py")) == ["__init__.py"]


def test_every_folder_of_unit_tests_is_named_for_a_part_of_the_code() -> None:
    folders = sorted(p.parent.relative_to(UNIT) for p in UNIT.rglob("*.py") if p.parent != UNIT)
    assert folders, "the walk found the tests"
    for folder in folders:
        top = folder.parts[0]
        if top in NOT_PACKAGES:
            assert len(folder.parts) == 1, folder
            continue
        assert (ROOT / folder / "__init__.py").is_file(), f"tests/unit/{folder} mirrors no package of the code"


def project_parts(relative: str, source: str) -> set[str]:
    """The parts of the code a test module imports (tests/sim among them; the unit tests' own helpers not)."""
    parts = set()
    for _, module in imports(relative, source):
        part = part_of(module)
        if part == "tests":
            part = "tests.sim" if module == "tests.sim" or module.startswith("tests.sim.") else None
        if part is not None:
            parts.add(part)
    return parts


def misplaced(relative: str, source: str) -> str | None:
    """Why a unit test module is in the wrong folder: it imports the project's code, none of it from the
    part its folder mirrors. So a test whose imports all come from one part lives in that part's folder."""
    folder = Path(relative).parent.relative_to("tests/unit")
    if folder.parts[0] in NO_CODE:
        return None
    own = FOLDER_PARTS.get(str(folder), {".".join(folder.parts)})
    parts = project_parts(relative, source)
    if parts and not parts & own:
        return f"{relative} imports {sorted(parts)}, nothing of {sorted(own)}"
    return None


def test_every_unit_test_imports_the_part_its_folder_mirrors() -> None:
    files = sorted(UNIT.rglob("test_*.py"))
    assert len(files) > 100
    found = [misplaced(str(p.relative_to(ROOT)), p.read_text()) for p in files]
    assert [f for f in found if f] == []


@pytest.mark.parametrize(
    ("relative", "source"),
    [
        # The first two: tests once filed by the feature they concern (lag, benchmark), not by the code they import.
        (
            "tests/unit/streams/lag/test_x.py",
            "from streams.cluster_settings import env_key\nfrom streams.settings import Settings",
        ),
        (
            "tests/unit/bench/test_x.py",
            "from core.calendar import DayCalendar\nfrom streams.local.workload import build",
        ),
        ("tests/unit/streams/test_x.py", "from agents.fold import fold_raw\nfrom tables.delta import Delta"),
        ("tests/unit/sim/test_x.py", "from agents.tap import TapAgent"),
    ],
)
def test_a_test_in_the_folder_of_a_part_it_does_not_import_is_found(relative: str, source: str) -> None:
    assert misplaced(relative, source) is not None


@pytest.mark.parametrize(
    ("relative", "source"),
    [
        ("tests/unit/streams/test_x.py", "from streams.sidecar import Sidecar\nfrom streams.web.view import View"),
        (
            "tests/unit/streams/local/test_x.py",
            "from core.calendar import DayCalendar\nfrom streams.local import workload",
        ),
        ("tests/unit/sim/test_x.py", "from agents.tap import TapAgent\nfrom tests.sim.kafka import SimConsumer"),
        ("tests/unit/streams/lag/test_x.py", "from tests.unit.streams.lag.fakes import FakeAdmin"),  # helpers only
        ("tests/unit/deploy/test_x.py", "from streams.settings import Settings"),
    ],
)
def test_a_test_beside_the_code_it_imports_passes(relative: str, source: str) -> None:
    assert misplaced(relative, source) is None
