"""Lag of two real Kafka clusters through one sidecar's /metrics, and the second cluster's faults (frozen,
then killed) costing the first nothing: two single-node KRaft brokers, plus a third cluster whose
bootstrap nothing listens on."""

from __future__ import annotations

import itertools
import os
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from streams.local.brokers import LocalKafka
from streams.local.proc import free_port
from streams.local.scrape import Samples, series, value
from streams.local.sidecar_proc import SidecarProc, wait_until
from streams.local.topics import make_topics
from tests.integration.conftest import Names, promtool_accepts, sidecar_env
from tests.integration.kafka_io import Out, commit_group, produce

pytestmark = [pytest.mark.integration, pytest.mark.kafka_only]
TIMEOUT_S = 6.0  # STREAMS_LAG_CLUSTER_TIMEOUT_SECONDS


@pytest.fixture
def second(workdir: Path) -> Iterator[LocalKafka]:
    server = LocalKafka(workdir / f"kafka-second-{free_port()}").start()
    yield server
    server.stop()


def _records(bootstrap: str, topic: str) -> None:
    """5 records on each of 2 partitions, the first two minutes old."""
    make_topics(bootstrap, [topic], partitions=2)
    now = int(time.time() * 1000)
    produce(bootstrap, topic, [Out(b"{}", p, now - 120_000 + i) for p in (0, 1) for i in range(5)])


@dataclass
class Outage:
    down_after_s: float  # from the fault to the first scrape with the second cluster's up == 0
    tapped_gap_s: float  # longest time between two of the tapped cluster's successive cycles
    scrape_s: float  # slowest scrape
    last: Samples

    def __str__(self) -> str:
        return (
            f"down after {self.down_after_s:.2f} s, tapped gap {self.tapped_gap_s:.2f} s, scrape {self.scrape_s:.3f} s"
        )


def _outage(proc: SidecarProc, seconds: float) -> Outage:
    """Scrapes through a fault of the second cluster: it must be reported down within its deadline,
    while the tapped cluster keeps its pace and no scrape waits."""
    start = time.monotonic()
    stamps: set[float] = set()
    scrape_s: list[float] = []
    down_after: float | None = None
    while time.monotonic() - start < seconds:
        before = time.monotonic()
        m = proc.scrape()
        scrape_s.append(time.monotonic() - before)
        local = value(m, "ecomind_streams_lag_probe_timestamp_seconds", kafka_cluster="local")
        assert local is not None
        stamps.add(local)
        if down_after is None and value(m, "ecomind_streams_lag_cluster_up", kafka_cluster="second") == 0:
            down_after = before - start
        time.sleep(0.2)
    gaps = [b - a for a, b in itertools.pairwise(sorted(stamps))]
    assert down_after is not None and down_after <= TIMEOUT_S + 3, down_after
    # A 0.5 s pause: one gap near the other cluster's 6 s deadline would mean it held the tapped one up.
    assert len(stamps) >= seconds / 2 and max(gaps) < TIMEOUT_S / 2, gaps
    assert max(scrape_s) < 1.0, max(scrape_s)
    assert value(m, "ecomind_streams_lag_cluster_up", kafka_cluster="second") == 0
    return Outage(down_after, max(gaps), max(scrape_s), m)


def cluster_lag(m: Samples, cluster: str, group: str) -> dict[tuple[str, str], float]:
    """One cluster's lag of a group, by (topic, partition), from a scrape."""
    rows = {}
    for labels, v in series(m, "ecomind_consumergroup_lag").items():
        d = dict(labels)
        if d.get("kafka_cluster") == cluster and d["group"] == group:
            rows[(d["topic"], d["partition"])] = v
    return rows


def test_two_clusters_one_killed(broker, second: LocalKafka, redis_server, names: Names, workdir: Path) -> None:  # type: ignore[no-untyped-def]
    uid = names.app_id.removeprefix("it-")
    shared, only_second, t2 = f"shared-{uid}", f"second-{uid}", f"t2.{uid}"
    make_topics(broker.bootstrap, [names.raw, names.enriched], partitions=2)
    _records(broker.bootstrap, names.raw)
    _records(second.bootstrap, t2)
    # The same group name on both clusters, with different figures: the label keeps them apart.
    commit_group(broker.bootstrap, shared, names.raw, {0: 2, 1: 5})
    commit_group(second.bootstrap, shared, t2, {0: 1, 1: 5})
    commit_group(second.bootstrap, only_second, t2, {0: 5, 1: 3})
    env = sidecar_env(
        broker,
        redis_server,
        names,
        STREAMS_LAG_GROUPS=shared,
        STREAMS_LAG_CLUSTER_NAME="local",
        STREAMS_LAG_CLUSTERS="second,gone",
        STREAMS_LAG_CLUSTER_SECOND_BOOTSTRAP_SERVERS=second.bootstrap,
        STREAMS_LAG_CLUSTER_SECOND_GROUPS=f".*-{uid}",
        STREAMS_LAG_CLUSTER_GONE_BOOTSTRAP_SERVERS=f"127.0.0.1:{free_port()}",  # nothing listens there
        STREAMS_LAG_CLUSTER_TIMEOUT_SECONDS=str(TIMEOUT_S),
    )
    proc = SidecarProc(workdir / names.app_id, env).start()
    try:
        proc.wait_ready()

        def both() -> Samples | None:
            m = proc.scrape()
            return m if cluster_lag(m, "local", shared) and cluster_lag(m, "second", only_second) else None

        m = wait_until(both, 60, what="both clusters' lag")
        assert cluster_lag(m, "local", shared) == {(names.raw, "0"): 3.0, (names.raw, "1"): 0.0}
        assert cluster_lag(m, "second", shared) == {(t2, "0"): 4.0, (t2, "1"): 0.0}
        assert cluster_lag(m, "second", only_second) == {(t2, "0"): 0.0, (t2, "1"): 2.0}
        age = value(
            m, "ecomind_consumergroup_lag_seconds", kafka_cluster="second", group=shared, topic=t2, partition="0"
        )
        assert age is not None and 119 <= age <= 180, age
        # Only the tapped cluster has the watched group, and the design document's series keep their labels.
        assert value(m, "ecomind_consumergroup_members", kafka_cluster="local", group=names.watch_group) == 0
        assert value(m, "ecomind_consumergroup_members", kafka_cluster="second", group=names.watch_group) is None
        assert value(m, "ecomind_worker_kafka_lag", topic=names.raw, partition="0") == 5.0
        ups = {c: value(m, "ecomind_streams_lag_cluster_up", kafka_cluster=c) for c in ("local", "second", "gone")}
        assert ups == {"local": 1.0, "second": 1.0, "gone": 0.0}
        assert value(m, "ecomind_streams_lag_cluster_last_success_timestamp_seconds", kafka_cluster="gone") is None
        assert not [k for k in series(m, "ecomind_consumergroup_lag") if dict(k).get("kafka_cluster") == "gone"]
        promtool_accepts(proc.get("/metrics")[1])

        # Frozen (SIGSTOP): connections open but nothing answers, so only the deadline ends its cycles.
        pid = second.server.proc.pid  # type: ignore[union-attr]
        os.kill(pid, signal.SIGSTOP)
        try:
            frozen = _outage(proc, 2.5 * TIMEOUT_S)
        finally:
            os.kill(pid, signal.SIGCONT)
        # Its clients were closed and built anew after each deadline: it comes back on its own.
        thawed = time.time()

        def back() -> Samples | None:
            m = proc.scrape()
            ok = value(m, "ecomind_streams_lag_cluster_last_success_timestamp_seconds", kafka_cluster="second")
            return m if ok is not None and ok > thawed else None

        m = wait_until(back, 60, 0.2, what="second cluster measured again")
        assert value(m, "ecomind_streams_lag_cluster_up", kafka_cluster="second") == 1.0
        assert cluster_lag(m, "second", shared) == {(t2, "0"): 4.0, (t2, "1"): 0.0}
        back_after = time.time() - thawed

        second.server.kill()  # type: ignore[union-attr]
        killed = _outage(proc, 2.5 * TIMEOUT_S)
        m = killed.last
        assert cluster_lag(m, "local", shared) == {(names.raw, "0"): 3.0, (names.raw, "1"): 0.0}
        # The dead cluster's last figures stay, their age plain from its frozen timestamp and up == 0.
        assert cluster_lag(m, "second", shared) == {(t2, "0"): 4.0, (t2, "1"): 0.0}
        last = value(m, "ecomind_streams_lag_cluster_last_success_timestamp_seconds", kafka_cluster="second")
        assert last is not None and time.time() - last >= 2 * TIMEOUT_S
        assert value(m, "ecomind_streams_lag_cluster_up", kafka_cluster="local") == 1.0
        logged = proc.log_tail(500_000)
        assert "lag probe of cluster second failed" in logged and "lag probe of cluster gone failed" in logged
        # The figures, for docs/lag.md (pytest -s shows them).
        print(f"frozen: {frozen}; back after {back_after:.1f} s; killed: {killed}")
    finally:
        proc.stop()
