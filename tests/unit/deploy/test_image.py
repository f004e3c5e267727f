"""No Docker engine runs here, so the Dockerfile's promises are read off it: two stages, a base pinned to
a Debian release, installs only from the hash-checked lock (the runtime one, or an extra's), nothing for
building left in the final stage, a non-root user, OCI labels, a zone check, and a build context that
holds what it copies."""

from __future__ import annotations

import fnmatch
import re
import shlex
import subprocess
import tomllib

from tests.unit.project.supply_chain import PYPROJECT, ROOT


def _instructions(text: str) -> list[tuple[str, str]]:
    """(KEYWORD, arguments) per instruction, continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n", " ", "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#")))
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in joined.splitlines() if line.strip()]


INSTRUCTIONS = _instructions((ROOT / "Dockerfile").read_text())
GLOBAL_ARGS = dict(
    a.split("=", 1)
    for k, a in INSTRUCTIONS[: next(i for i, (k, _) in enumerate(INSTRUCTIONS) if k == "FROM")]
    if k == "ARG"
)


def _stages() -> dict[str, list[tuple[str, str]]]:
    stages: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] = []
    for keyword, args in INSTRUCTIONS:
        if keyword == "FROM":
            image, _, name = args.partition(" AS ")
            current = stages.setdefault(name.strip(), [("FROM", image.strip())])
        elif stages:
            current.append((keyword, args))
    return stages


STAGES = _stages()
FINAL = list(STAGES)[-1]


def _runs(stage: str) -> list[str]:
    return [args for keyword, args in STAGES[stage] if keyword == "RUN"]


def test_two_stages_from_the_same_pinned_base_and_the_last_one_is_the_runtime() -> None:
    assert list(STAGES) == ["build", "runtime"]  # compose's `build: .` takes the last one
    assert all(STAGES[s][0] == ("FROM", "${BASE_IMAGE}") for s in STAGES)
    # a Python minor on a named Debian release: not `latest`, not `3.11-slim`, whose Debian moves
    assert re.fullmatch(
        r"python:3\.11(\.\d+)?-slim-(bookworm|trixie)(@sha256:[0-9a-f]{64})?", GLOBAL_ARGS["BASE_IMAGE"]
    )


def test_every_dependency_is_installed_from_the_lock_with_hashes_checked() -> None:
    build = " ".join(_runs("build"))
    assert "pip install --require-hashes --only-binary=:all: -r requirements/build.txt" in build
    assert 'pip download --require-hashes --only-binary=:all: --dest /wheels/deps -r "$lock"' in build
    assert 'cp "$lock" /wheels/requirements.txt' in build  # what the runtime stage installs: the same lock
    assert "pip wheel --no-deps --no-build-isolation" in build
    (final,) = _runs(FINAL)
    installs = [part.strip() for part in final.split("&&") if "pip install" in part]
    assert len(installs) == 2
    lock_install, project_install = (shlex.split(part) for part in installs)
    assert {"--require-hashes", "--no-index", "--only-binary=:all:"} <= set(lock_install)
    assert lock_install[lock_install.index("-r") + 1] == "/wheels/requirements.txt"
    assert {"--no-deps", "--no-index"} <= set(project_install) and project_install[-1] == "/wheels/project/*.whl"


def _lock_for(extras: str | None) -> subprocess.CompletedProcess[str]:
    """The build stage's choice of lock, run by sh with the build arg as Docker passes it (unset: default)."""
    (choose,) = [run for run in _runs("build") if run.startswith("case ")]
    script = choose.split(" && ", 1)[0] + ' && echo "$lock"'
    default = next(a.partition("=")[2].strip('"') for k, a in STAGES["build"] if k == "ARG" and a.startswith("EXTRAS"))
    env = {"PATH": "/usr/bin:/bin", "EXTRAS": default if extras is None else extras}
    return subprocess.run(["sh", "-c", script], capture_output=True, text=True, env=env, timeout=10)


def test_the_default_image_ships_the_runtime_lock_and_extras_their_own_lock() -> None:
    assert _lock_for(None).stdout == "requirements/runtime.txt\n"
    assert _lock_for("msk-iam").stdout == "requirements/msk-iam.txt\n"
    for wrong in ("dev", "build", "msk_iam"):  # never a lock that is not an image's
        refused = _lock_for(wrong)
        assert refused.returncode == 1 and f"EXTRAS={wrong}: expected msk-iam or nothing" in refused.stderr
    copied = [a.split()[:-1] for k, a in STAGES["build"] if k == "COPY" and "requirements/" in a]
    assert copied == [
        ["requirements/build.txt", "requirements/compile.txt", "requirements/runtime.txt", "requirements/msk-iam.txt"]
    ]


def test_the_final_stage_keeps_no_wheels_caches_compilers_or_packaging_tools() -> None:
    (final,) = _runs(FINAL)
    assert final.startswith("--mount=type=bind,from=build,source=/wheels,target=/wheels ")  # not a COPY layer
    assert not any(k == "COPY" for k, _ in STAGES[FINAL])
    assert all("--no-cache-dir" in part for part in final.split("&&") if "pip install" in part)
    assert "pip uninstall --yes --disable-pip-version-check pip setuptools wheel" in final
    assert "rm -rf /root/.cache" in final
    assert not re.search(r"apt-get|gcc|g\+\+|build-essential|make\b|-dev\b", final)


def test_every_timezone_must_load_for_the_image_to_build() -> None:
    (final,) = _runs(FINAL)
    assert "z.available_timezones(); assert len(n) > 400" in final and "[z.ZoneInfo(k) for k in n]" in final


def test_it_runs_as_a_non_root_user_created_in_the_image() -> None:
    users = [a for k, a in STAGES[FINAL] if k == "USER"]
    assert users == ["streams"]
    assert "useradd --system --uid 10001 streams" in _runs(FINAL)[0]
    keywords = [k for k, _ in STAGES[FINAL]]
    assert keywords.index("USER") > max(i for i, k in enumerate(keywords) if k == "RUN")
    assert [a for k, a in STAGES[FINAL] if k == "CMD"] == [
        '["faust", "-A", "streams", "--datadir", "/tmp/faust", "worker", "-l", "info"]'
    ]


def test_oci_labels_come_from_build_args_and_agree_with_pyproject() -> None:
    labels = dict(
        re.findall(
            r'(org\.opencontainers\.image\.[a-z.]+)="([^"]*)"', " ".join(a for k, a in STAGES[FINAL] if k == "LABEL")
        )
    )
    assert labels["org.opencontainers.image.source"] == "${SOURCE}"
    assert labels["org.opencontainers.image.revision"] == "${REVISION}"
    assert labels["org.opencontainers.image.version"] == "${VERSION}"
    assert labels["org.opencontainers.image.licenses"] == PYPROJECT["project"]["license"]
    args = dict(a.partition("=")[::2] for k, a in STAGES[FINAL] if k == "ARG")
    assert args["VERSION"] == PYPROJECT["project"]["version"]
    assert {"SOURCE", "REVISION", "BASE_IMAGE"} <= set(args)


def test_the_build_context_holds_what_the_dockerfile_copies_and_nothing_else() -> None:
    patterns = [line for line in (ROOT / ".dockerignore").read_text().splitlines() if line and line[0] != "#"]
    assert patterns[0] == "*"  # an allow-list: the venv, .git and local secrets never reach the builder

    def in_context(path: str) -> bool:
        included = False
        for pattern in patterns:
            negated = pattern.startswith("!")
            glob = pattern.removeprefix("!").rstrip("/")
            if fnmatch.fnmatch(path, glob) or path.startswith(glob + "/"):
                included = negated
        return included

    copied = [a.split()[:-1] for k, a in INSTRUCTIONS if k == "COPY" and "--from" not in a]
    mounted = re.findall(r"--mount=type=bind,source=([^,]+),", " ".join(a for k, a in INSTRUCTIONS if k == "RUN"))
    sources = [s for group in copied for s in group] + mounted
    assert {"requirements/runtime.txt", "requirements/msk-iam.txt", "streams"} <= set(sources)
    for source in sources:
        assert (ROOT / source).exists(), source
        assert in_context(source), f"{source} is copied but .dockerignore leaves it out"
    assert in_context("setup.py")
    private_files = (".venv/bin/python", ".git/HEAD", "ops/alertmanager/secrets/x", "tests/unit/deploy/test_image.py")
    # A checkout's own build of the hot path (./scripts/compile) stays out: the image compiles its own.
    built = ("agents/fold.cpython-311-x86_64-linux-gnu.so", "core/hot_path__mypyc.cpython-311-x86_64-linux-gnu.so")
    for private in (*private_files, *built):
        assert not in_context(private), private


def test_the_build_stage_compiles_the_hot_path_into_the_wheel_and_checks_it_did() -> None:
    build = " ".join(_runs("build"))
    assert "apt-get install --yes --no-install-recommends gcc libc6-dev" in build
    wheel = next(r for r in _runs("build") if "pip wheel" in r)
    assert wheel.startswith("ECOMIND_STREAMS_COMPILE=1 python -m pip wheel --no-deps --no-build-isolation")
    # A wheel without the build would still install and run, slower: the stage fails instead.
    assert "grep -q 'agents/fold\\.cpython-.*\\.so'" in wheel
    # mypyc comes from the hash-checked compile lock, which the stage installs before the wheel.
    assert "-r requirements/build.txt -r requirements/compile.txt" in build
    assert re.search(r"^mypy==2\.4\.1 ", (ROOT / "requirements" / "compile.txt").read_text(), re.MULTILINE)
    assert ("COPY", "pyproject.toml setup.py README.md LICENSE ./") in STAGES["build"]
    # And the image refuses to be built with a hot path that is not the build of the sources it ships.
    assert "python -m core.compiled --stale" in " ".join(_runs(FINAL))


def test_the_image_copies_every_package_the_wheel_ships() -> None:
    """A package missing from the COPY lines builds an image that fails on its first import."""
    include = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]["include"]
    packages = {pattern.removesuffix("*") for pattern in include}
    copied = {a.split()[0] for k, a in INSTRUCTIONS if k == "COPY" and "--from" not in a and len(a.split()) == 2}
    assert packages == {"core", "tables", "agents", "streams"}
    assert packages <= copied, packages - copied
