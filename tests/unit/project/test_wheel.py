"""The wheel ships the sidecar, not the harness that tests, benchmarks and the demo run on."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from core.compiled import GROUP, HOT_MODULES

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
    assert not [n for n in names if n.endswith(".so")], "the plain wheel is pure Python, whatever the checkout built"
    assert not [n for n in names if n.startswith("tests/")]
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "streams.local" not in zipfile.ZipFile(wheel).read(entry_points).decode()


def test_the_compiled_wheel_holds_the_hot_path_built_beside_its_sources(tmp_path: Path) -> None:
    """What the image's build stage makes (ECOMIND_STREAMS_COMPILE=1): the plain wheel holds no build."""
    # From a copy of the checkout's files: a build/ folder left by other builds would be packed as well.
    source, out = tmp_path / "source", tmp_path / "wheel"
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        if (ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    pip_wheel = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out)]
    built = subprocess.run(
        [*pip_wheel, str(source)],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "ECOMIND_STREAMS_COMPILE": "1"},
    )
    assert built.returncode == 0, built.stdout + built.stderr
    (wheel,) = out.glob("ecomind_streams-*-cp311-cp311-linux_x86_64.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for module in (*HOT_MODULES, GROUP):
        path = module.replace(".", "/")
        assert [n for n in names if n.startswith(f"{path}.cpython-311-") and n.endswith(".so")], f"{module} not built"
    for module in HOT_MODULES:  # the sources ship too: the reference, and what a traceback shows
        assert module.replace(".", "/") + ".py" in names
    assert not [n for n in names if "/" not in n and n.endswith(".so")], "nothing at the top level of site-packages"
