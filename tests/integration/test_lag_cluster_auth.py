"""A cluster of STREAMS_LAG_CLUSTERS that needs authentication, through one sidecar's /metrics: a real
Apache Kafka taking only SASL_SSL (PLAIN users, TLS with a certificate the sidecar trusts through the
cluster's own CA file), measured with the cluster's own STREAMS_LAG_CLUSTER_<KEY>_* settings, and the same
broker named a second time with a wrong password, which must cost that cluster alone."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from streams.local.brokers import LocalKafka, SaslSsl
from streams.local.proc import free_port
from streams.local.scrape import Samples, value
from streams.local.sidecar_proc import SidecarProc, wait_until
from streams.local.topics import make_topics
from tests.integration.conftest import Names, self_signed, sidecar_env
from tests.integration.kafka_io import Out, commit_group, produce
from tests.integration.test_lag_clusters import cluster_lag

pytestmark = [pytest.mark.integration, pytest.mark.kafka_only]  # Tansu has no SASL listener
TIMEOUT_S = 6.0  # STREAMS_LAG_CLUSTER_TIMEOUT_SECONDS
USER, PASSWORD = "lag-reader", "lag pw/with+odd chars"
CLUSTERS = ("local", "eu-secure", "eu-refused")


@dataclass
class Secured:
    kafka: LocalKafka
    internal: str  # its PLAINTEXT listener, for the test's own topics, records and commits
    ca: Path


@pytest.fixture
def secured(workdir: Path) -> Iterator[Secured]:
    home = workdir / f"sasl-cluster-{free_port()}"
    home.mkdir()
    cert, key = self_signed(home)
    keystore = home / "keystore.pem"
    keystore.write_bytes(key.read_bytes() + cert.read_bytes())
    sasl = SaslSsl(keystore, cert, {"admin": "admin-pw", USER: PASSWORD}, internal_port=free_port())
    kafka = LocalKafka(home / "kafka", sasl_ssl=sasl).start()
    try:
        yield Secured(kafka, sasl.internal_bootstrap, cert)
    finally:
        kafka.stop()


def _cluster_env(key: str, secured: Secured, password_file: Path, groups: str) -> dict[str, str]:
    prefix = f"STREAMS_LAG_CLUSTER_{key}_"
    return {
        f"{prefix}BOOTSTRAP_SERVERS": secured.kafka.bootstrap,  # the SASL_SSL listener
        f"{prefix}SECURITY_PROTOCOL": "SASL_SSL",
        f"{prefix}SASL_MECHANISM": "PLAIN",
        f"{prefix}SASL_USERNAME": USER,
        f"{prefix}SASL_PASSWORD_FILE": str(password_file),
        f"{prefix}SSL_CAFILE": str(secured.ca),
        f"{prefix}GROUPS": groups,
    }


def test_a_sasl_ssl_cluster_is_measured_and_a_refused_one_costs_only_itself(
    broker,  # type: ignore[no-untyped-def]
    secured: Secured,
    redis_server,  # type: ignore[no-untyped-def]
    names: Names,
    workdir: Path,
) -> None:
    uid = names.app_id.removeprefix("it-")
    group, topic = f"billing-{uid}", f"invoices.{uid}"
    make_topics(broker.bootstrap, [names.raw, names.enriched], partitions=2)
    commit_group(broker.bootstrap, group, names.raw, {0: 0, 1: 0})  # the tapped cluster: nothing produced
    make_topics(secured.internal, [topic], partitions=2)
    now = int(time.time() * 1000)
    produce(secured.internal, topic, [Out(b"{}", p, now - 90_000 + i) for p in (0, 1) for i in range(6)])
    commit_group(secured.internal, group, topic, {0: 2, 1: 6})
    right, wrong = workdir / f"right-{uid}", workdir / f"wrong-{uid}"
    right.write_text(PASSWORD + "\n")
    wrong.write_text("not the password\n")
    env = sidecar_env(
        broker,
        redis_server,
        names,
        STREAMS_LAG_GROUPS=group,
        STREAMS_LAG_CLUSTER_NAME="local",
        STREAMS_LAG_CLUSTERS="eu-secure,eu-refused",
        STREAMS_LAG_CLUSTER_TIMEOUT_SECONDS=str(TIMEOUT_S),
        **_cluster_env("EU_SECURE", secured, right, f".*-{uid}"),
        **_cluster_env("EU_REFUSED", secured, wrong, f".*-{uid}"),
    )
    proc = SidecarProc(workdir / names.app_id, env).start()
    try:
        proc.wait_ready()

        def measured() -> Samples | None:
            m = proc.scrape()
            return m if cluster_lag(m, "eu-secure", group) and cluster_lag(m, "local", group) else None

        m = wait_until(measured, 60, what="the SASL_SSL cluster's lag")
        assert cluster_lag(m, "eu-secure", group) == {(topic, "0"): 4.0, (topic, "1"): 0.0}
        age = value(
            m, "ecomind_consumergroup_lag_seconds", kafka_cluster="eu-secure", group=group, topic=topic, partition="0"
        )
        assert age is not None and 89 <= age <= 150, age  # the record at offset 2, stamped 90 s ago
        assert cluster_lag(m, "local", group) == {(names.raw, "0"): 0.0, (names.raw, "1"): 0.0}

        # The refused cluster, through several of its attempts: down all along, no figures, and neither
        # the tapped cluster's cycles nor the authenticated cluster's wait for it.
        stamps: dict[str, set[float]] = {"local": set(), "eu-secure": set()}
        start = time.monotonic()
        while time.monotonic() - start < 2 * TIMEOUT_S:
            m = proc.scrape()
            ups = {
                c: value(m, "ecomind_streams_lag_cluster_up", kafka_cluster=c)
                for c in ("local", "eu-secure", "eu-refused")
            }
            assert ups == {"local": 1.0, "eu-secure": 1.0, "eu-refused": 0.0}, ups
            for c, seen in stamps.items():
                taken = value(m, "ecomind_streams_lag_probe_timestamp_seconds", kafka_cluster=c)
                assert taken is not None
                seen.add(taken)
            time.sleep(0.2)
        for c, seen in stamps.items():
            gaps = [b - a for a, b in itertools.pairwise(sorted(seen))]
            # A 0.5 s pause: a gap near the refused cluster's 6 s deadline would mean it held this one up.
            assert len(seen) >= TIMEOUT_S and max(gaps) < TIMEOUT_S / 2, (c, gaps)
        assert not cluster_lag(m, "eu-refused", group)
        assert (
            value(m, "ecomind_streams_lag_cluster_last_success_timestamp_seconds", kafka_cluster="eu-refused") is None
        )
        logged = proc.log_tail(500_000)
        # Not "nothing answered": the broker took the handshake and refused these credentials.
        assert "lag probe of cluster eu-refused failed" in logged and "SaslAuthenticationFailed" in logged
        assert "lag probe of cluster eu-secure failed" not in logged
    finally:
        proc.stop()
