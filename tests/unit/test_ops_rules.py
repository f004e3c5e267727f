"""The shipped Prometheus config and rules, checked and unit-tested with the real promtool."""

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

OPS = Path(__file__).resolve().parents[2] / "ops" / "prometheus"
RUNBOOK = Path(__file__).resolve().parents[2] / "RUNBOOK.md"


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    promtool = shutil.which("promtool")
    assert promtool, "promtool comes with Debian's prometheus package (scripts/setup installs it)"
    return subprocess.run([promtool, *args], cwd=OPS, capture_output=True, text=True, timeout=120)


def test_config_and_rules_pass_promtool_check() -> None:
    done = _promtool("check", "config", "prometheus.yml")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS: 2 rule files found" in done.stdout + done.stderr


@pytest.mark.parametrize("case", sorted(p.name for p in (OPS / "tests").glob("*_test.yml")))
def test_rule_unit_tests_pass(case: str) -> None:
    done = _promtool("test", "rules", f"tests/{case}")
    assert done.returncode == 0, done.stdout + done.stderr


def _alerts() -> list[dict[str, object]]:
    groups = yaml.safe_load((OPS / "rules" / "alerts.yml").read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def test_every_alert_has_severity_summary_description_and_a_runbook_section() -> None:
    runbook = RUNBOOK.read_text()
    anchors = {line[3:].strip().lower() for line in runbook.splitlines() if line.startswith("## ")}
    for rule in _alerts():
        annotations = rule["annotations"]
        assert isinstance(annotations, dict) and isinstance(rule["labels"], dict)
        assert rule["labels"]["severity"] in ("critical", "warning", "info"), rule["alert"]
        assert annotations["summary"] and annotations["description"], rule["alert"]
        assert annotations["runbook_url"] == f"RUNBOOK.md#{str(rule['alert']).lower()}"
        assert str(rule["alert"]).lower() in anchors, f"RUNBOOK.md has no section for {rule['alert']}"


def test_every_alert_and_recording_rule_is_unit_tested() -> None:
    tested = "\n".join(p.read_text() for p in (OPS / "tests").glob("*_test.yml"))
    for rule in _alerts():
        assert f"alertname: {rule['alert']}" in tested, rule["alert"]
    groups = yaml.safe_load((OPS / "rules" / "recording.yml").read_text())["groups"]
    for rule in (r for g in groups for r in g["rules"]):
        assert f"expr: {rule['record']}" in tested, rule["record"]
