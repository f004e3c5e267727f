"""The wheel ships the sidecar, not the harness that tests, benchmarks and the demo run on."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def test_the_wheel_holds_the_sidecar_and_no_harness(tmp_path: Path) -> None:
    built = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stdout + built.stderr
    (wheel,) = tmp_path.glob("ecomind_streams-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for shipped in ("streams/app.py", "streams/tools/traffic.py", "agents/tap.py", "tables/store.py", "core/events.py"):
        assert shipped in names
    # Every package of the code but the harness ships, its modules with it.
    for package in sorted(
        p.parent for top in ("core", "tables", "agents", "streams") for p in (ROOT / top).rglob("__init__.py")
    ):
        relative = package.relative_to(ROOT).as_posix()
        if relative.startswith("streams/local"):
            continue
        for module in package.glob("*.py"):
            assert f"{relative}/{module.name}" in names, f"{relative}/{module.name} is not in the wheel"
    assert not [n for n in names if n.startswith("streams/local/")], "the harness must stay out of the wheel"
    assert not [n for n in names if n.startswith("tests/")]
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "streams.local" not in zipfile.ZipFile(wheel).read(entry_points).decode()
