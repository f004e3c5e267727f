"""Several clusters' lag families as one exposition, and one cluster's loop never held up by another's."""

import asyncio
import itertools
import time
from collections import Counter
from dataclasses import replace
from typing import Any

import pytest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.parser import text_string_to_metric_families

from streams.cluster_settings import LagCluster, LagClusterSettings
from streams.exposition import render
from streams.kafka_settings import KafkaSecurity
from streams.lag.cluster_label import labelled, merged, with_label
from streams.lag.clusters import LagClusters
from streams.lag.metrics import LagCollector
from streams.lag.model import GroupLag, LagSnapshot, PartitionLag
from streams.local.scrape import parse, series, value
from streams.settings import Settings


@pytest.mark.parametrize(
    ("line", "want"),
    [
        ("up 1.0", 'up{kafka_cluster="eu"} 1.0'),
        ('lag{group="g",topic="t"} 3.0', 'lag{kafka_cluster="eu",group="g",topic="t"} 3.0'),
        ("lag{} 3.0", 'lag{kafka_cluster="eu"} 3.0'),
        # Label values may hold braces, spaces and escaped quotes: only the text after the name moves.
        ('lag{group="a} {b\\"c"} 2.0', 'lag{kafka_cluster="eu",group="a} {b\\"c"} 2.0'),
        ("x_total 5.0 1700000000000", 'x_total{kafka_cluster="eu"} 5.0 1700000000000'),
    ],
)
def test_with_label(line: str, want: str) -> None:
    assert with_label(line, 'kafka_cluster="eu"') == want


def snapshot(group: str, lag: int, watched: str = "worker") -> LagSnapshot:
    g = GroupLag(group, "Stable", 1, (PartitionLag("t", 0, True, lag, 1.5),))
    w = GroupLag(watched, "Stable", 1, (PartitionLag("raw", 0, True, 7, 2.0),))
    return LagSnapshot({group: g, watched: w}, watched, 1_800_000_000.0, 0.1)


def text(lag: LagSnapshot | None) -> str:
    return render([LagCollector(lag, "worker")]).decode()


def test_merged_families_carry_each_cluster_once_per_family() -> None:
    tapped = labelled(text(snapshot("sink", 3)), "local")
    # The same group name on another cluster, no watched group there (as a ClusterProbe measures).
    other = snapshot("sink", 11)
    other = LagSnapshot({"sink": other.groups["sink"]}, "\x00none", 1_800_000_005.0, 0.2)
    body = merged([tapped, labelled(text(other), "eu-west")]).decode()
    list(text_string_to_metric_families(body))  # parses: one block per family
    types = Counter(line.split()[2] for line in body.splitlines() if line.startswith("# TYPE"))
    assert types and set(types.values()) == {1}
    m = parse(body)
    assert value(m, "ecomind_consumergroup_lag", kafka_cluster="local", group="sink", topic="t", partition="0") == 3
    assert value(m, "ecomind_consumergroup_lag", kafka_cluster="eu-west", group="sink", topic="t", partition="0") == 11
    # sum by (kafka_cluster) needs every per-group series labelled, the watched group's too.
    for name in ("ecomind_consumergroup_lag", "ecomind_consumergroup_members", "ecomind_consumergroup_state"):
        assert all(dict(k).get("kafka_cluster") in ("local", "eu-west") for k in series(m, name)), name
    assert value(m, "ecomind_consumergroup_members", kafka_cluster="local", group="worker") == 1
    assert value(m, "ecomind_consumergroup_members", kafka_cluster="eu-west", group="worker") is None
    assert value(m, "ecomind_streams_lag_probe_timestamp_seconds", kafka_cluster="eu-west") == 1_800_000_005.0
    assert value(m, "ecomind_streams_lag_probe_timestamp_seconds", kafka_cluster="local") == 1_800_000_000.0
    # The design document's series keep their exact labels (the tapped cluster's watched group only).
    assert series(m, "ecomind_worker_kafka_lag") == {frozenset({("topic", "raw"), ("partition", "0")}): 7.0}
    assert value(m, "ecomind_streams_watch_group_committed", topic="raw", partition="0") == 1.0


def test_nothing_measured_renders_nothing() -> None:
    assert merged([]) == b"" and merged([{}, {}]) == b""


class FakeProbe:
    """measure() answers at once, or never (a cluster whose broker stopped answering)."""

    def __init__(self, name: str, hang: bool = False) -> None:
        self.name, self.hang, self.cycles, self.started, self.stopped = name, hang, 0, 0, 0

    async def start(self) -> None:
        self.started += 1

    async def stop(self) -> None:
        self.stopped += 1

    async def measure(self) -> LagSnapshot:
        if self.hang:
            await asyncio.Event().wait()
        self.cycles += 1
        g = GroupLag("g", "Stable", 1, (PartitionLag("t", 0, True, self.cycles, 1.0),))
        return LagSnapshot({"g": g}, "\x00none", 1_800_000_000.0 + self.cycles)


def settings(timeout_s: float = 0.3) -> Settings:
    extra = tuple(LagCluster(n, f"{n}:9092", KafkaSecurity()) for n in ("up", "stuck"))
    return replace(Settings(), lag_interval_seconds=0.05, lag_clusters=LagClusterSettings("tapped", extra, timeout_s))


async def run_for(clusters: LagClusters, seconds: float) -> None:
    """The extra clusters' loops, each on its thread, for `seconds`; then stopped within 2 s."""
    clusters.start()
    await asyncio.sleep(seconds)
    assert await clusters.stop(2.0) is True


def test_a_stuck_cluster_costs_only_its_own_loop() -> None:
    probes = {"up": FakeProbe("up"), "stuck": FakeProbe("stuck", hang=True)}
    published: list[bytes] = []

    def build(_: Settings, cluster: LagCluster, __: Any) -> Any:
        return probes[cluster.name]

    clusters = LagClusters(settings(), published.append, lambda: True, build)
    asyncio.run(run_for(clusters, 1.0))
    # 1 s at a 0.05 s pause: the healthy cluster kept its pace while the other timed out every 0.3 s.
    assert probes["up"].cycles >= 8, probes["up"].cycles
    assert probes["stuck"].cycles == 0 and probes["stuck"].started >= 2  # rebuilt after each timeout
    assert probes["stuck"].stopped == probes["stuck"].started  # every timed-out probe closed
    m = parse(published[-1].decode())
    assert value(m, "ecomind_streams_lag_cluster_up", kafka_cluster="up") == 1
    assert value(m, "ecomind_streams_lag_cluster_up", kafka_cluster="stuck") == 0
    assert value(m, "ecomind_streams_lag_cluster_up", kafka_cluster="tapped") == 0  # its loop never ran here
    assert value(m, "ecomind_streams_lag_cluster_last_success_timestamp_seconds", kafka_cluster="stuck") is None
    ok = value(m, "ecomind_streams_lag_cluster_last_success_timestamp_seconds", kafka_cluster="up")
    assert ok is not None and ok > 1_700_000_000
    last = value(m, "ecomind_consumergroup_lag", kafka_cluster="up", group="g", topic="t", partition="0")
    assert last is not None and last >= 8
    assert not [k for k in series(m, "ecomind_consumergroup_lag") if dict(k)["kafka_cluster"] == "stuck"]


class BlockingProbe(FakeProbe):
    """Each cycle holds its event loop 0.4 s, as aiokafka decoding an answer for 5,000 partitions does."""

    async def measure(self) -> LagSnapshot:
        time.sleep(0.4)
        return await super().measure()


def test_a_cluster_holding_its_loop_does_not_delay_another_clusters_figures() -> None:
    probes = {"up": FakeProbe("up"), "stuck": BlockingProbe("stuck")}
    fresh: list[tuple[float, float]] = []  # when a new figure of "up" was published, and the figure

    def publish(text: bytes) -> None:
        m = parse(text.decode())
        lag = value(m, "ecomind_consumergroup_lag", kafka_cluster="up", group="g", topic="t", partition="0")
        if lag is not None and (not fresh or lag != fresh[-1][1]):
            fresh.append((time.monotonic(), lag))

    clusters = LagClusters(settings(timeout_s=5.0), publish, lambda: True, lambda _, c, __: probes[c.name])  # type: ignore[arg-type,return-value]
    asyncio.run(run_for(clusters, 1.5))
    assert probes["stuck"].cycles >= 2  # it did hold its loop, 0.4 s a cycle, all along
    gaps = [b[0] - a[0] for a, b in itertools.pairwise(fresh)]
    # A 0.05 s pause: on one shared loop, "up" would wait out every 0.4 s block of the other cluster.
    assert len(fresh) >= 10 and max(gaps) < 0.25, gaps
    assert all(a[1] < b[1] for a, b in itertools.pairwise(fresh))


def test_a_cluster_keeps_its_last_figures_while_down_and_says_so() -> None:
    probe = FakeProbe("up")
    published: list[bytes] = []
    clusters = LagClusters(settings(), published.append, lambda: True)

    async def run() -> None:
        await clusters.measure("up", probe)  # type: ignore[arg-type]
        probe.hang = True
        with pytest.raises(TimeoutError):
            await clusters.measure("up", probe)  # type: ignore[arg-type]

    asyncio.run(run())
    m = parse(published[-1].decode())
    assert value(m, "ecomind_streams_lag_cluster_up", kafka_cluster="up") == 0
    assert value(m, "ecomind_consumergroup_lag", kafka_cluster="up", group="g", topic="t", partition="0") == 1
    assert value(m, "ecomind_streams_lag_probe_timestamp_seconds", kafka_cluster="up") == 1_800_000_001.0
    assert clusters.health["up"].error is not None and "TimeoutError" in clusters.health["up"].error


def test_no_probing_while_not_the_exporter() -> None:
    probes = {"up": FakeProbe("up"), "stuck": FakeProbe("stuck")}
    clusters = LagClusters(settings(), lambda _: None, lambda: False, lambda _, c, __: probes[c.name])  # type: ignore[arg-type,return-value]
    asyncio.run(run_for(clusters, 0.3))
    assert [p.started for p in probes.values()] == [0, 0]


@pytest.mark.parametrize(
    ("interval_s", "failures", "pause_s"),
    [(5, 0, 5), (5, 1, 10), (5, 2, 20), (5, 3, 30), (5, 40, 30), (0.5, 4, 8), (60, 3, 60), (120, 0, 120)],
)
def test_a_failing_cluster_is_tried_again_less_often(interval_s: float, failures: int, pause_s: float) -> None:
    from streams.lag.clusters import ClusterHealth

    assert ClusterHealth("eu", failures=failures).pause_s(interval_s) == pause_s


def test_counters_histograms_and_odd_label_values_are_labelled_too() -> None:
    from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily

    class Odd:
        def collect(self) -> Any:
            c = CounterMetricFamily("x_failures", "Failures.", labels=["group"])
            c.add_metric(["a"], 2)
            yield c
            h = HistogramMetricFamily("x_cycle_seconds", "Cycles.", buckets=[("1.0", 3), ("+Inf", 4)], sum_value=2.5)
            yield h
            g = GaugeMetricFamily("x_odd", "A label value holding the pair's own text.", labels=["note"])
            g.add_metric(['kafka_cluster="eu"'], 1)
            g.add_metric(["plain"], 2)
            yield g

    body = merged([labelled(render([Odd()]).decode(), "eu")]).decode()
    m = parse(body)
    want = {
        ("x_failures_total", frozenset({("kafka_cluster", "eu"), ("group", "a")})): 2.0,
        ("x_cycle_seconds_bucket", frozenset({("kafka_cluster", "eu"), ("le", "1.0")})): 3.0,
        ("x_cycle_seconds_bucket", frozenset({("kafka_cluster", "eu"), ("le", "+Inf")})): 4.0,
        ("x_cycle_seconds_count", frozenset({("kafka_cluster", "eu")})): 4.0,
        ("x_cycle_seconds_sum", frozenset({("kafka_cluster", "eu")})): 2.5,
        ("x_odd", frozenset({("kafka_cluster", "eu"), ("note", 'kafka_cluster="eu"')})): 1.0,
        ("x_odd", frozenset({("kafka_cluster", "eu"), ("note", "plain")})): 2.0,
    }
    assert m == want
