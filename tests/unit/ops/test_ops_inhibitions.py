"""The shipped inhibitions in a real Alertmanager, with the labels of the static config and with those of
the Helm chart's ServiceMonitor: a down sidecar replica silences its own derived alerts in both, and with
two releases on one Alertmanager, one release's alerts never silence the other's."""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from streams.local.alertmanager_server import start_alertmanager

CONFIG = Path(__file__).resolve().parents[3] / "ops" / "alertmanager" / "alertmanager.yml"
STATIC = {"job": "ecomind-streams", "ecomind_component": "streams"}
SERVICE_MONITOR = {
    "job": "prod-ecomind-streams",
    "service": "prod-ecomind-streams",
    "namespace": "monitoring",
    "endpoint": "http",
    "ecomind_component": "streams",
}


@pytest.fixture(scope="module")
def alertmanager(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    workdir = tmp_path_factory.mktemp("am")
    config = yaml.safe_load(CONFIG.read_text())
    for receiver in config["receivers"]:  # same routes and inhibitions; nothing is delivered anywhere
        name = receiver["name"]
        receiver.clear()
        receiver["name"] = name
    server, port = start_alertmanager(workdir, config)
    try:
        yield port
    finally:
        server.stop()


def _post(port: int, alerts: list[dict[str, str]]) -> None:
    body = json.dumps([{"labels": labels} for labels in alerts]).encode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/v2/alerts", data=body, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as resp:
        assert resp.status == 200


def _states(port: int, job: str, by: str = "instance") -> dict[tuple[str, str], str]:
    """The job's alerts' states, by alert name and the label `by`."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v2/alerts", timeout=10) as resp:
        alerts = json.loads(resp.read())
    return {
        (a["labels"]["alertname"], a["labels"][by]): a["status"]["state"]
        for a in alerts
        if a["labels"].get("job") == job
    }


@pytest.mark.parametrize("scrape_labels", [STATIC, SERVICE_MONITOR], ids=["static-config", "service-monitor"])
def test_a_down_replica_silences_its_derived_alerts_only(alertmanager: int, scrape_labels: dict[str, str]) -> None:
    # Addresses of this case only: the Alertmanager is shared, and inhibition matches on instance.
    net = 1 if scrape_labels is STATIC else 2
    down, other = f"10.{net}.0.1:6066", f"10.{net}.0.2:6066"
    _post(
        alertmanager,
        [
            {**scrape_labels, "alertname": "ServiceDown", "severity": "critical", "instance": down},
            {**scrape_labels, "alertname": "EcoMindStreamsNotReady", "severity": "warning", "instance": down},
            {**scrape_labels, "alertname": "TablesStuckRecovering", "severity": "warning", "instance": down},
            {**scrape_labels, "alertname": "EcoMindStreamsNotReady", "severity": "warning", "instance": other},
        ],
    )
    want = {
        ("ServiceDown", down): "active",
        ("EcoMindStreamsNotReady", down): "suppressed",
        ("TablesStuckRecovering", down): "suppressed",
        ("EcoMindStreamsNotReady", other): "active",
    }
    deadline = time.monotonic() + 10
    while (got := _states(alertmanager, scrape_labels["job"])) != want and time.monotonic() < deadline:
        time.sleep(0.2)
    assert got == want


def test_one_release_never_silences_the_other(alertmanager: int) -> None:
    # The same release name in two namespaces: only namespace tells them apart. team-a has lost its exporter
    # and one replica; team-b is behind its lag SLA on the same topic, and its replica has the same address
    # (two clusters' targets, or static configs with equal host names). Only team-a's own alerts go quiet.
    release = {**SERVICE_MONITOR, "job": "two-ecomind-streams", "service": "two-ecomind-streams"}
    a, b = {**release, "namespace": "team-a"}, {**release, "namespace": "team-b"}
    replica = {"instance": "10.9.0.1:6066"}
    topic = {"topic": "events.raw"}
    _post(
        alertmanager,
        [
            {**a, "alertname": "EcoMindStreamsNoExporter", "severity": "critical"},
            {**a, **topic, "alertname": "WorkerLagAboveSLA", "severity": "critical"},
            {**b, **topic, "alertname": "WorkerLagAboveSLA", "severity": "critical"},
            {**b, **topic, "alertname": "WorkerLagAboveSLO", "severity": "warning"},
            {**a, **replica, "alertname": "ServiceDown", "severity": "critical"},
            {**a, **replica, "alertname": "TablesStuckRecovering", "severity": "warning"},
            {**b, **replica, "alertname": "TablesStuckRecovering", "severity": "warning"},
        ],
    )
    want = {
        ("EcoMindStreamsNoExporter", "team-a"): "active",
        ("WorkerLagAboveSLA", "team-a"): "suppressed",  # by its own release's missing exporter
        ("WorkerLagAboveSLA", "team-b"): "active",  # not by team-a's
        ("WorkerLagAboveSLO", "team-b"): "suppressed",  # by its own release's SLA breach
        ("ServiceDown", "team-a"): "active",
        ("TablesStuckRecovering", "team-a"): "suppressed",
        ("TablesStuckRecovering", "team-b"): "active",  # same instance, other release
    }
    deadline = time.monotonic() + 10
    while (got := _states(alertmanager, release["job"], "namespace")) != want and time.monotonic() < deadline:
        time.sleep(0.2)
    assert got == want
