"""The unit tests mirror the code: one folder per part of the package map (tests/unit/streams/lag for
streams/lag, ...), plus folders for what is not Python code (ops, deploy), the benchmark, the simulator and
the project's own files. A test file dropped at the top, or a folder named for no part, fails here."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
UNIT = ROOT / "tests" / "unit"
NOT_PACKAGES = {"ops", "deploy", "bench", "sim", "project"}  # ops/, deploy/, bench/, tests/sim, the repository


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
