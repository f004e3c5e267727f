"""End to end: real Kafka, two sidecar replicas, the traffic generator, a real Prometheus with the
shipped rules, a real Alertmanager with the shipped routes and inhibitions, and a webhook receiver.
Every dashboard panel returns data, the business values equal what the generator sent, and faults
raise the right alerts. Every `for:` is shortened to 2 s and scrapes run each second; the test measures
detection time (fault injected -> alert at the receiver) for each fault."""

from __future__ import annotations

import json
import sys
import threading
import time
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import orjson
import pytest
import yaml

from streams.local.alertmanager_server import start_alertmanager
from streams.local.proc import Server
from streams.local.prometheus_server import LocalPrometheus
from streams.local.sidecar_proc import SidecarProc, wait_until
from streams.local.topics import make_topics
from tests.integration.conftest import SITUATIONAL, Names, panel_queries, prom_equals, sidecar_env

pytestmark = pytest.mark.integration
OPS = Path(__file__).resolve().parents[2] / "ops"
TRAFFIC = str(Path(sys.executable).parent / "ecomind-streams-traffic")


class Webhook:
    """Collects what Alertmanager sends: (monotonic time, receiver, alertname, labels)."""

    def __init__(self) -> None:
        self.received: list[tuple[float, str, str, dict[str, str]]] = []
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                for alert in body["alerts"]:
                    if alert["status"] == "firing":
                        labels = alert["labels"]
                        hook.received.append((time.monotonic(), self.path.strip("/"), labels["alertname"], labels))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def first(self, alertname: str, since: float, **labels: str) -> tuple[float, str] | None:
        for at, receiver, name, got in self.received:
            if name == alertname and at >= since and all(got.get(k) == v for k, v in labels.items()):
                return at, receiver
        return None


def _detected(webhook: Webhook, alertname: str, since: float, receiver: str, **labels: str) -> float:
    """Seconds from `since` (the fault) until the alert reaches the receiver its route names."""
    at, got = wait_until(partial(webhook.first, alertname, since, **labels), 90, 0.2, what=f"{alertname} delivered")
    assert got == receiver, f"{alertname} went to {got}, not {receiver}"
    return at - since


def _alertmanager(workdir: Path, webhook: Webhook) -> tuple[Server, int]:
    config = yaml.safe_load((OPS / "alertmanager" / "alertmanager.yml").read_text())
    for receiver in config["receivers"]:  # same routes and inhibitions; deliveries go to the test
        name = receiver["name"]
        receiver.clear()
        receiver.update({"name": name, "webhook_configs": [{"url": f"http://127.0.0.1:{webhook.port}/{name}"}]})
    route = config["route"]
    for r in [route, *route["routes"]]:
        r.update({"group_wait": "1s", "group_interval": "1s"})
    return start_alertmanager(workdir, config)


def _short_rules(workdir: Path) -> list[Path]:
    """The shipped rules with every `for:` shortened to 2 s, so faults are detected in seconds."""
    out = [OPS / "prometheus" / "rules" / "recording.yml"]
    alerts = yaml.safe_load((OPS / "prometheus" / "rules" / "alerts.yml").read_text())
    for group in alerts["groups"]:
        for rule in group["rules"]:
            rule["for"] = "2s"
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "alerts-short.yml"
    path.write_text(yaml.safe_dump(alerts))
    return [*out, path]


def _traffic(bootstrap: str, names: Names, workdir: Path, tag: str, *extra: str) -> Server:
    argv = [
        TRAFFIC,
        "--bootstrap",
        bootstrap,
        "--raw-topic",
        names.raw,
        "--enriched-topic",
        names.enriched,
        "--group",
        names.watch_group,
        "--commit-delay",
        "0.5",
        "--invalid-ratio",
        "0",
        *extra,
    ]
    return Server(f"traffic-{tag}", argv, workdir / f"traffic-{tag}.log").start()


def test_faults_raise_the_right_alerts_and_detection_times(  # type: ignore[no-untyped-def]
    broker, redis_server, names: Names, workdir: Path
) -> None:
    make_topics(broker.bootstrap, [names.raw, names.enriched], partitions=2)
    home = workdir / f"alerting-{names.app_id}"
    webhook = Webhook()
    env = sidecar_env(broker, redis_server, names)
    a = SidecarProc(home, env, name="a").start()
    b = SidecarProc(home, env, name="b").start()
    truth_file = home / "truth.json"
    # The worker and the gateway run apart, so that each fault stops exactly one of them.
    worker = _traffic(broker.bootstrap, names, home, "worker", "--rate", "0")
    gateway = _traffic(
        broker.bootstrap,
        names,
        home,
        "truth",
        "--rate",
        "50",
        "--no-worker",
        "--invalid-ratio",
        "0.005",
        "--truth-file",
        str(truth_file),
    )
    alertmanager, alertmanager_port = _alertmanager(home / "am", webhook)
    prom = LocalPrometheus(
        home / "prom",
        [f"127.0.0.1:{a.port}", f"127.0.0.1:{b.port}"],
        _short_rules(home),
        alertmanager_port=alertmanager_port,
    ).start()
    detection: dict[str, float] = {}
    try:
        a.wait_ready()
        b.wait_ready()
        wait_until(
            lambda: prom.query("sum(rate(ecomind_streams_events_processed_total[1m])) > 0"),
            60,
            0.5,
            what="traffic flowing",
        )
        for title, expr in panel_queries():
            if any(s in expr for s in SITUATIONAL):
                continue
            wait_until(partial(prom.query, expr), 90, 0.5, what=f"data for panel {title!r}: {expr}")
        gateway.stop()  # SIGTERM: the generator writes what it sent, then exits
        truth = orjson.loads(truth_file.read_bytes())
        for expr, want in (
            ("sum(ecomind_events_ingested_total)", truth["valid"]),
            ('sum(ecomind_streams_events_invalid_total{reason="not_json"})', truth["invalid"]),
            ("sum(ecomind_daily_active_orgs)", truth["orgs"]),
            ("sum(ecomind_daily_active_users)", truth["users"]),
        ):
            wait_until(partial(prom_equals, prom, expr, float(want)), 60, 0.5, what=f"{expr} == {want} (generator)")
        for key, want in truth["by_org_provider"].items():
            org, provider = key.split("/")
            expr = f'sum(ecomind_events_ingested_total{{org_id="{org}",provider="{provider}"}})'
            assert prom_equals(prom, expr, float(want)), expr
        gateway = _traffic(broker.bootstrap, names, home, "gateway", "--rate", "50", "--no-worker")
        # A quiet baseline. The worker's first group join can leave it behind for a while (on Tansu every
        # join waits half the session timeout), so wait until it is caught up and no lag alert is active.
        wait_until(lambda: prom.query("max(ecomind_worker_kafka_lag_seconds) < 5"), 60, 0.5, what="worker caught up")
        wait_until(lambda: not prom.query('ALERTS{alertname="WorkerLagAboveSLO"}'), 60, 0.5, what="no lag alert")
        assert webhook.first("ServiceDown", 0) is None

        killed_at = time.monotonic()
        b.kill()
        detection["replica killed -> ServiceDown"] = _detected(
            webhook, "ServiceDown", killed_at, "pagerduty-critical", instance=f"127.0.0.1:{b.port}"
        )

        # Aggregated alerts reach the receiver with the release's job: what routes them to its owners.
        release = {"job": "ecomind-streams"}
        worker.stop()
        detection["worker stopped -> WorkerLagAboveSLO"] = _detected(
            webhook, "WorkerLagAboveSLO", time.monotonic(), "slack-warnings", **release
        )

        gateway.stop()
        gateway = _traffic(
            broker.bootstrap, names, home, "invalid", "--rate", "200", "--no-worker", "--invalid-ratio", "1.0"
        )
        detection["only invalid events -> InvalidEventsSpike"] = _detected(
            webhook, "InvalidEventsSpike", time.monotonic(), "slack-warnings", **release
        )
    finally:
        print("\ndetection times (for: 2 s, 1 s scrapes):", {k: round(v, 1) for k, v in detection.items()})
        for part in (gateway, worker, alertmanager):
            part.stop()
        prom.stop()
        a.stop()
        b.stop()
    # Bounds for these shortened intervals: the 2 s `for:`, 1 s scrapes and evaluations, 1 s group_wait,
    # and for the lag alert the 10 s the oldest unconsumed record needs to age past the SLO.
    assert detection["replica killed -> ServiceDown"] < 15
    assert detection["worker stopped -> WorkerLagAboveSLO"] < 30
    assert detection["only invalid events -> InvalidEventsSpike"] < 20
