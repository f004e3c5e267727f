"""scripts/setup-demo, what ./scripts/demo runs first: it installs redis-server, a virtualenv from
requirements/build.txt and requirements/demo.txt and the project, and Java, Maven and Kafka's jars only for
`--broker kafka`; never the test toolchain, and nothing at all when nothing changed.

Run on a copy of the scripts, with a PATH that holds only the shell tools they use plus recording fakes
of apt-get and Python, so that what they would install is read from the fakes' logs and nothing is."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.unit.project.supply_chain import lock

ROOT = Path(__file__).resolve().parents[3]
TOOLS = ("bash", "env", "cat", "sha256sum", "cut", "grep", "mktemp", "rm", "id", "dirname", "mkdir", "cp")
PIP = "-m pip install -q --disable-pip-version-check"

# Records each call. As `-m venv DIR` it makes DIR/bin/python a copy of itself; as `-c` it answers the
# Python 3.11 check (unless FAKE_NOT_311) and the question for Kafka's version; pip fails when told to.
FAKE_PYTHON = """#!/usr/bin/env bash
echo "$*" >>"$FAKE_LOG"
case "$1" in
  -c) [ -z "${FAKE_NOT_311:-}" ] || exit 1; echo 4.1.1 ;;
  -m) if [ "$2" = venv ]; then mkdir -p "$3/bin"; cp "$0" "$3/bin/python"; fi
      if [ -n "${FAKE_PIP_FAIL:-}" ] && [[ "$*" == *"$FAKE_PIP_FAIL"* ]]; then
        echo "ERROR: THESE PACKAGES DO NOT MATCH THE HASHES FROM THE REQUIREMENTS FILE."; exit 1
      fi ;;
esac
"""
FAKE_APT = '#!/usr/bin/env bash\necho "apt-get $*" >>"$FAKE_LOG"\n'
FAKE_SUDO = '#!/usr/bin/env bash\nexec "$@"\n'  # only used where the tests do not run as root


@dataclass
class Sandbox:
    repo: Path
    bin: Path
    log: Path

    def run(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        self.log.write_text("")
        return subprocess.run(
            [str(self.repo / "scripts" / "setup-demo"), *args],
            env={"PATH": str(self.bin), "HOME": str(self.repo), "FAKE_LOG": str(self.log), **env},
            capture_output=True,
            text=True,
            timeout=60,
        )

    def calls(self) -> list[str]:
        return self.log.read_text().splitlines()

    def provide(self, *commands: str) -> None:
        for command in commands:
            _script(self.bin / command, "#!/usr/bin/env bash\n")


def _script(path: Path, text: str) -> None:
    path.write_text(text)
    path.chmod(0o755)


@pytest.fixture
def sandbox(tmp_path: Path) -> Sandbox:
    repo, bin_dir = tmp_path / "repo", tmp_path / "bin"
    (repo / "requirements").mkdir(parents=True)
    shutil.copytree(ROOT / "scripts", repo / "scripts")
    shutil.copy(ROOT / "pyproject.toml", repo)
    for name in ("build.txt", "demo.txt"):
        shutil.copy(ROOT / "requirements" / name, repo / "requirements")
    bin_dir.mkdir()
    for tool in TOOLS:
        found = shutil.which(tool)
        assert found, f"{tool} is not installed"
        (bin_dir / tool).symlink_to(found)
    _script(bin_dir / "python3.11", FAKE_PYTHON)
    _script(bin_dir / "apt-get", FAKE_APT)
    _script(bin_dir / "sudo", FAKE_SUDO)
    return Sandbox(repo, bin_dir, tmp_path / "calls.log")


def _stamp(repo: Path) -> str:
    digest = hashlib.sha256()
    for part in ("requirements/build.txt", "requirements/demo.txt", "pyproject.toml"):
        digest.update((repo / part).read_bytes())
    return digest.hexdigest()


def test_a_fresh_machine_gets_redis_and_the_demo_lock_and_nothing_of_the_tests(sandbox: Sandbox) -> None:
    done = sandbox.run()
    assert done.returncode == 0, done.stdout + done.stderr
    venv_python = sandbox.repo / ".venv-demo" / "bin" / "python"
    assert sandbox.calls() == [
        "apt-get update -qq",
        "apt-get install -y -qq --no-install-recommends redis-server",
        "-c import sys; sys.exit(sys.version_info[:2] != (3, 11))",
        "-m venv .venv-demo",
        f"{PIP} --require-hashes -r requirements/build.txt",
        f"{PIP} --require-hashes -r requirements/demo.txt",
        f"{PIP} --no-deps --no-build-isolation -e .",
    ]
    assert venv_python.exists()
    assert (sandbox.repo / ".venv-demo" / ".locks-installed").read_text() == _stamp(sandbox.repo) + "\n"
    assert (sandbox.repo / ".venv-demo" / ".gitignore").read_text() == "*\n"
    # one line per step, each naming what it installs
    lines = done.stdout.splitlines()
    assert all(line.startswith("demo: ") for line in lines), lines
    assert "demo: Debian packages: installing redis-server with apt-get" in lines
    demo_lock = f"installing {len(lock('demo'))} hash-pinned from requirements/demo.txt into .venv-demo"
    assert f"demo: Python packages: {demo_lock}" in lines
    assert len(lines) == 5


def test_a_second_start_that_changes_nothing_installs_nothing(sandbox: Sandbox) -> None:
    assert sandbox.run().returncode == 0
    sandbox.provide("redis-server")
    done = sandbox.run()
    assert done.returncode == 0, done.stderr
    assert sandbox.calls() == []
    assert done.stdout.splitlines() == [
        "demo: Debian packages: all present (redis-server)",
        "demo: Python packages: .venv-demo is up to date with requirements/build.txt requirements/demo.txt",
    ]


def test_a_changed_lock_is_installed_again_into_the_same_virtualenv(sandbox: Sandbox) -> None:
    sandbox.provide("redis-server")
    assert sandbox.run().returncode == 0
    with (sandbox.repo / "requirements" / "demo.txt").open("a") as lock:
        lock.write("# refreshed\n")
    assert sandbox.run().returncode == 0
    assert sandbox.calls() == [
        f"{PIP} --require-hashes -r requirements/build.txt",
        f"{PIP} --require-hashes -r requirements/demo.txt",
        f"{PIP} --no-deps --no-build-isolation -e .",
    ]
    assert (sandbox.repo / ".venv-demo" / ".locks-installed").read_text() == _stamp(sandbox.repo) + "\n"


@pytest.mark.parametrize("args", [("--broker", "kafka"), ("--broker=kafka", "--rate", "50")])
def test_the_kafka_broker_alone_brings_java_maven_and_kafkas_jars(sandbox: Sandbox, args: tuple[str, ...]) -> None:
    sandbox.provide("redis-server")
    done = sandbox.run(*args)
    assert done.returncode == 0, done.stdout + done.stderr
    calls = sandbox.calls()
    assert calls[:2] == [
        "apt-get update -qq",
        "apt-get install -y -qq --no-install-recommends openjdk-17-jre-headless maven",
    ]
    assert calls[-1] == "-c from streams.local.brokers import kafka_libs; kafka_libs()"
    assert (
        "demo: Apache Kafka 4.1.1's jars from Maven Central (once; cached in ~/.cache/ecomind-streams)" in done.stdout
    )


def test_another_broker_argument_is_not_taken_for_kafka(sandbox: Sandbox) -> None:
    sandbox.provide("redis-server")
    assert sandbox.run("--broker", "tansu", "--port", "kafka").returncode == 0
    assert not any("apt-get" in call or "kafka_libs" in call for call in sandbox.calls())


def test_a_python_other_than_3_11_is_refused_with_what_to_do(sandbox: Sandbox) -> None:
    (sandbox.bin / "python3.11").rename(sandbox.bin / "python3")
    sandbox.provide("redis-server")
    done = sandbox.run(FAKE_NOT_311="1")
    assert done.returncode == 1
    assert "demo: needs Python 3.11" in done.stderr and "set PYTHON=/path/to/python3.11" in done.stderr
    assert not (sandbox.repo / ".venv-demo").exists()


def test_a_failing_install_shows_pips_output_and_leaves_no_stamp(sandbox: Sandbox) -> None:
    sandbox.provide("redis-server")
    done = sandbox.run(FAKE_PIP_FAIL="demo.txt")
    assert done.returncode == 1
    assert "DO NOT MATCH THE HASHES" in done.stderr and "demo: failed: .venv-demo/bin/python -m pip" in done.stderr
    assert not (sandbox.repo / ".venv-demo" / ".locks-installed").exists()
    assert sandbox.run().returncode == 0  # the next start tries again
    assert f"{PIP} --require-hashes -r requirements/demo.txt" in sandbox.calls()


def test_the_demo_script_runs_the_demo_from_the_virtualenv_its_setup_fills() -> None:
    demo = (ROOT / "scripts" / "demo").read_text()
    assert './scripts/setup-demo "$@"' in demo
    assert "exec .venv-demo/bin/python -m streams.local.demo" in demo
    assert "scripts/setup\n" not in demo and "scripts/setup " not in demo
    assert os.access(ROOT / "scripts" / "setup-demo", os.X_OK)
