"""ops/prometheus/rules/lag.yml: valid for promtool, each alert unit-tested and in RUNBOOK.md."""

import shutil
import subprocess
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[3]
OPS = ROOT / "ops" / "prometheus"


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    promtool = shutil.which("promtool")
    assert promtool, "promtool comes with Debian's prometheus package (scripts/setup installs it)"
    return subprocess.run([promtool, *args], cwd=OPS, capture_output=True, text=True, timeout=120)


def _alerts() -> list[dict[str, object]]:
    groups = yaml.safe_load((OPS / "rules" / "lag.yml").read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def test_lag_rules_pass_promtool() -> None:
    done = _promtool("check", "rules", "rules/lag.yml")
    assert done.returncode == 0 and "SUCCESS: 6 rules found" in done.stdout, done.stdout + done.stderr
    done = _promtool("test", "rules", "tests/lag_test.yml")
    assert done.returncode == 0, done.stdout + done.stderr


RUNBOOK_BASE = "https://github.com/ecomind/ecomind-streams/blob/main/RUNBOOK.md"


def test_every_lag_alert_is_tested_and_has_a_runbook_section() -> None:
    runbook = (ROOT / "RUNBOOK.md").read_text()
    sections = {line[3:].strip().lower() for line in runbook.splitlines() if line.startswith("## ")}
    tested = (OPS / "tests" / "lag_test.yml").read_text()
    for rule in _alerts():
        name = str(rule["alert"])
        annotations = rule["annotations"]
        assert isinstance(annotations, dict) and isinstance(rule["labels"], dict)
        assert rule["labels"]["severity"] in ("critical", "warning", "info"), name
        assert annotations["summary"] and annotations["description"], name
        assert annotations["runbook_url"] == f"{RUNBOOK_BASE}#{name.lower()}"
        assert name.lower() in sections, f"RUNBOOK.md has no section for {name}"
        assert f"alertname: {name}" in tested, name
