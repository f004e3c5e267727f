"""The shipped Prometheus config and rules, checked and unit-tested with the real promtool."""

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

OPS = Path(__file__).resolve().parents[3] / "ops" / "prometheus"
RUNBOOK = Path(__file__).resolve().parents[3] / "RUNBOOK.md"
# The documented default base of every runbook link; the Helm chart's runbookBaseUrl replaces it.
RUNBOOK_BASE = "https://github.com/ecomind/ecomind-streams/blob/main/RUNBOOK.md"

# How the same sidecar targets look when the Prometheus Operator scrapes them through the chart's
# ServiceMonitor: the job is the Service's name, instances are pod IPs, and the Operator adds the
# namespace, service, endpoint and pod labels. ecomind_component is set by both. Aggregated results
# (written with job last: `job="ecomind-streams"}` in samples, `job: ecomind-streams}` in alerts) keep
# namespace and job only, so they are rewritten first.
SERVICE_MONITOR_LABELS = [
    ('job="ecomind-streams"}', 'job="prod-ecomind-streams",namespace="monitoring"}'),
    ("job: ecomind-streams}", "job: prod-ecomind-streams, namespace: monitoring}"),
    ('job="ecomind-streams"', 'job="prod-ecomind-streams",namespace="monitoring",service="prod-ecomind-streams"'),
    ("job: ecomind-streams,", "job: prod-ecomind-streams, namespace: monitoring, service: prod-ecomind-streams,"),
    ("streams-1:6066", "10.42.0.11:6066"),
    ("streams-2:6066", "10.42.0.12:6066"),
    ("Service ecomind-streams is down", "Service prod-ecomind-streams is down"),
    ("of ecomind-streams has", "of prod-ecomind-streams has"),
]


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    promtool = shutil.which("promtool")
    assert promtool, "promtool comes with Debian's prometheus package (scripts/setup installs it)"
    return subprocess.run([promtool, *args], cwd=OPS, capture_output=True, text=True, timeout=120)


def test_config_and_rules_pass_promtool_check() -> None:
    done = _promtool("check", "config", "prometheus.yml")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS: 3 rule files found" in done.stdout + done.stderr


@pytest.mark.parametrize("case", sorted(p.name for p in (OPS / "tests").glob("*_test.yml")))
def test_rule_unit_tests_pass_with_static_config_labels(case: str) -> None:
    done = _promtool("test", "rules", f"tests/{case}")
    assert done.returncode == 0, done.stdout + done.stderr


# releases_test.yml is written with the Operator's labels already (two releases, told apart by them).
@pytest.mark.parametrize(
    "case", sorted(p.name for p in (OPS / "tests").glob("*_test.yml") if p.name != "releases_test.yml")
)
def test_rule_unit_tests_pass_with_service_monitor_labels(case: str, tmp_path: Path) -> None:
    text = (OPS / "tests" / case).read_text()
    for static, operator in SERVICE_MONITOR_LABELS:
        text = text.replace(static, operator)
    text = text.replace("../rules/", f"{OPS / 'rules'}/")
    # Every file has sidecar series; a rewrite that changed none would test nothing new.
    assert "prod-ecomind-streams" in text and 'job="ecomind-streams"' not in text
    (tmp_path / case).write_text(text)
    done = _promtool("test", "rules", str(tmp_path / case))
    assert done.returncode == 0, done.stdout + done.stderr


def test_no_rule_selects_by_job_name_alone() -> None:
    # A job's name differs between the static config and a ServiceMonitor; only ServiceDown may look at it,
    # and only as the fallback for ecomind-* jobs that lack ecomind_component.
    for path in (OPS / "rules").glob("*.yml"):
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                uses_job = re.search(r"job\s*=", rule["expr"])
                assert not uses_job or rule.get("alert") == "ServiceDown", rule
                assert 'job="ecomind-streams"' not in rule["expr"], rule


def test_ecomind_service_jobs_are_kept_apart_from_the_compose_config(tmp_path: Path) -> None:
    config = yaml.safe_load((OPS / "prometheus.yml").read_text())
    services = yaml.safe_load((OPS / "ecomind-services.yml").read_text())["scrape_configs"]
    assert [j["job_name"] for j in config["scrape_configs"]] == ["ecomind-streams"]
    assert {j["job_name"] for j in services} == {"ecomind-gateway", "ecomind-api", "ecomind-worker"}
    for job in [*config["scrape_configs"], *services]:
        for static in job["static_configs"]:
            assert static["labels"]["ecomind_component"] == job["job_name"].removeprefix("ecomind-")
    # The fragment is valid where it is meant to go: appended to a full config.
    config["scrape_configs"] += services
    config["rule_files"] = [str(OPS / "rules" / "recording.yml"), str(OPS / "rules" / "alerts.yml")]
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    done = _promtool("check", "config", str(tmp_path / "prometheus.yml"))
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
        assert annotations["runbook_url"] == f"{RUNBOOK_BASE}#{str(rule['alert']).lower()}"
        assert str(rule["alert"]).lower() in anchors, f"RUNBOOK.md has no section for {rule['alert']}"


def test_every_alert_and_recording_rule_is_unit_tested() -> None:
    tested = "\n".join(p.read_text() for p in (OPS / "tests").glob("*_test.yml"))
    for rule in _alerts():
        assert f"alertname: {rule['alert']}" in tested, rule["alert"]
    groups = yaml.safe_load((OPS / "rules" / "recording.yml").read_text())["groups"]
    for rule in (r for g in groups for r in g["rules"]):
        assert f"expr: {rule['record']}" in tested, rule["record"]


RELEASE_LABELS = ("cluster", "namespace", "job")


def _aggregations(expr: str) -> list[tuple[str, str]]:
    """(operator, grouping) of every aggregation in a PromQL expression; grouping is "" for a bare one."""
    found = re.findall(r"\b(sum|max|min|count|avg|topk|bottomk)\s*(?:by\s*\(([^)]*)\))?\s*\(", expr)
    return [(op, by) for op, by in found]


def _all_rules() -> list[dict[str, str]]:
    return [
        rule
        for path in sorted((OPS / "rules").glob("*.yml"))
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
    ]


def test_every_aggregation_keeps_the_labels_that_tell_releases_apart() -> None:
    # Two releases on one Prometheus: a bare sum() or absent() mixes them (one's series hide the other's
    # fault, or one fault fires for both without saying whose it is).
    checked = 0
    for rule in _all_rules():
        name = rule.get("alert") or rule["record"]
        assert "absent(" not in rule["expr"], name
        for op, by in _aggregations(rule["expr"]):
            kept = {label.strip() for label in by.split(",")}
            assert set(RELEASE_LABELS) <= kept, (name, op, by)
            checked += 1
        # Matching two sides on () or on a subset would pair one release's series with another's.
        for on in re.findall(r"\bon\s*\(([^)]*)\)", rule["expr"]):
            assert set(RELEASE_LABELS) <= {label.strip() for label in on.split(",")}, (name, on)
    assert checked >= 40, checked  # the parser found the aggregations (a broken regex would find none)


def test_the_two_release_cases_cover_every_alert_built_on_aggregation() -> None:
    cases = (OPS / "tests" / "releases_test.yml").read_text()
    for name in ("EcoMindStreamsNoExporter", "WorkerLagAboveSLA", "EnrichmentDelaySLOFastBurn",
                 "ConsumerGroupLagAboveSLO", "LagProbeStale", "RecordsLostToRetention"):  # fmt: skip
        assert f"alertname: {name}" in cases, name
    assert "namespace: team-a" in cases and "namespace: team-b" not in cases
