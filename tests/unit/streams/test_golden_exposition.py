"""The exposition of a fixed Snapshot, LagSnapshot and Status, held byte for byte to tests/golden/metrics.prom.

A rename, a HELP change, a new label or a new number format fails here until the golden file is
regenerated (one command, see REGENERATE) and the diff reviewed with the change.
"""

from __future__ import annotations

import platform
import re
import shutil
import subprocess
from importlib.metadata import version

from core.compiled import hot_path
from streams.exposition import render
from tests.golden.exposition import GOLDEN_FILE, HOSTILE_ORGS, PINNED_VERSION, REGENERATE, collectors, golden


def test_exposition_equals_the_golden_file() -> None:
    assert golden() == GOLDEN_FILE.read_bytes(), (
        f"the exposition changed; if that is intended, run `{REGENERATE}` and review the diff of {GOLDEN_FILE.name}"
    )


def test_golden_file_passes_promtool_check_metrics() -> None:
    promtool = shutil.which("promtool")
    assert promtool, "promtool comes with Debian's prometheus package (scripts/setup installs it)"
    done = subprocess.run([promtool, "check", "metrics"], input=GOLDEN_FILE.read_bytes(), capture_output=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_golden_file_escapes_every_hostile_org_id() -> None:
    text = GOLDEN_FILE.read_text("utf-8")
    for org in HOSTILE_ORGS:
        escaped = org.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")
        assert f'ecomind_total_kwh_today{{org_id="{escaped}"}}' in text


def test_only_build_info_versions_are_pinned() -> None:
    """The golden file pins build_info's label values, which are the versions installed where the test
    runs; here the unpinned line is checked to carry exactly those versions, and nothing else differs."""
    rendered = render(collectors()).decode("utf-8")
    installed = {
        "aiokafka_version": version("aiokafka"),
        "faust_version": version("faust-streaming"),
        "hot_path": hot_path(),
        "python_version": platform.python_version(),
        "version": version("ecomind-streams"),
    }
    labels = ",".join(f'{name}="{value}"' for name, value in installed.items())
    assert f"ecomind_streams_build_info{{{labels}}} 1.0\n" in rendered
    pinned = ",".join(f'{name}="{PINNED_VERSION}"' for name in installed)
    assert re.sub(r"ecomind_streams_build_info\{.*\}", f"ecomind_streams_build_info{{{pinned}}}", rendered) == (
        golden().decode("utf-8")
    )
