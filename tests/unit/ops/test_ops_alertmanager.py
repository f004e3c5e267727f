"""The shipped Alertmanager config, checked and route-tested with the real amtool."""

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

CONFIG = Path(__file__).resolve().parents[3] / "ops" / "alertmanager" / "alertmanager.yml"


def _amtool(*args: str) -> subprocess.CompletedProcess[str]:
    amtool = shutil.which("amtool")
    assert amtool, "amtool comes with Debian's prometheus-alertmanager package (scripts/setup installs it)"
    return subprocess.run([amtool, *args], capture_output=True, text=True, timeout=60)


def test_config_passes_amtool_check() -> None:
    done = _amtool("check-config", str(CONFIG))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "4 inhibit rules" in done.stdout and "3 receivers" in done.stdout


@pytest.mark.parametrize(
    ("labels", "receiver"),
    [
        (["severity=critical", "alertname=ServiceDown", "ecomind_component=streams"], "pagerduty-critical"),
        (["severity=critical", "alertname=WorkerLagAboveSLA"], "pagerduty-critical"),
        (["severity=warning", "alertname=HighKafkaLag"], "slack-warnings"),
        (["severity=info", "alertname=LabelCapReached"], "slack-info"),
        (["alertname=SomethingUnlabelled"], "slack-warnings"),
    ],
)
def test_routes(labels: list[str], receiver: str) -> None:
    done = _amtool("config", "routes", "test", f"--config.file={CONFIG}", f"--verify.receivers={receiver}", *labels)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip() == receiver


def test_secrets_come_from_files_not_the_config() -> None:
    config = yaml.safe_load(CONFIG.read_text())
    for receiver in config["receivers"]:
        for pd in receiver.get("pagerduty_configs", []):
            assert "routing_key" not in pd and pd["routing_key_file"].startswith("/etc/alertmanager/secrets/")
        for slack in receiver.get("slack_configs", []):
            assert "api_url" not in slack and slack["api_url_file"].startswith("/etc/alertmanager/secrets/")


def test_a_down_sidecar_silences_its_derived_alerts() -> None:
    rules = yaml.safe_load(CONFIG.read_text())["inhibit_rules"]
    down = next(r for r in rules if 'alertname="ServiceDown"' in r["source_matchers"])
    # Keyed on the label the static config and the chart both set, never on the job's name.
    assert 'ecomind_component="streams"' in down["source_matchers"]
    assert down["equal"] == ["cluster", "namespace", "job", "instance"]
    assert not any("job" in m for r in rules for m in r["source_matchers"] + r["target_matchers"])
    assert "EcoMindStreamsNotReady" in down["target_matchers"][0]


def test_every_inhibition_and_the_grouping_keep_releases_apart() -> None:
    # An inhibition without these labels in equal lets one release's alert silence another release's.
    config = yaml.safe_load(CONFIG.read_text())
    for rule in config["inhibit_rules"]:
        assert {"cluster", "namespace", "job"} <= set(rule["equal"]), rule
    assert {"cluster", "namespace", "job", "alertname"} <= set(config["route"]["group_by"])
