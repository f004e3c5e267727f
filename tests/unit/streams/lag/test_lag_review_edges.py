"""Edge cases of stale topics, topic filters and the retention outlook, on in-memory clients: a broker
that keeps no assignments (Tansu), groups in transient states, commits below the log start, a broker
that does not answer DescribeConfigs or DescribeLogDirs, and memory over long rate windows."""

from __future__ import annotations

import asyncio
import re
import time
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka import TopicPartition as TP
from aiokafka.errors import NodeNotReadyError

from streams.exposition import render
from streams.lag.members import Member, classic_members, member_lag
from streams.lag.metrics import LagCollector, LagExport
from streams.lag.model import GroupLag, LagSnapshot, PartitionLag
from streams.lag.outlook import Outlook, OutlookSettings
from streams.lag.probe import LagProbe
from streams.lag.rates import RateWindow, Sample
from streams.lag.retention import DescribeLogDirsResponse_v1
from streams.lag.scope import LagScope
from streams.local.scrape import parse, series, value
from tests.unit.streams.lag.fakes import FakeAdmin, FakeConsumer, FakeLog
from tests.unit.streams.lag.group_wire import encoded

ORDERS = TP("orders", 0)


class Admin(FakeAdmin):
    """Group "sink" commits orders/0 at 2 (8 of 10 records waiting, a minute old); its one member owns
    `owned`/0 (b"" and no names: as Tansu describes a member). retention.ms is one hour."""

    def __init__(self, state: str, owned: str | None) -> None:
        super().__init__({"w": 4, "sink": 2})
        self.state, self.owned = state, owned
        self.configs_asked = 0

    async def describe_consumer_groups(self, group_ids: list[str], group_coordinator_id: int | None = None) -> Any:
        if self.owned is None:
            members = [("m1", "", "", b"", b"")]
        else:
            members = [("m1", "svc", "/h", b"", encoded((self.owned, [0])))]
        members = members if self.state != "Empty" else []
        rows: list[Any] = [(0, g, self.state, "consumer", "range", members if g == "sink" else []) for g in group_ids]
        return [SimpleNamespace(groups=rows)]

    async def describe_topics(self, topics: list[str] | None = None) -> list[Any]:
        return [
            {"error_code": 0, "topic": t, "is_internal": False, "partitions": [{"partition": 0}]} for t in topics or []
        ]

    async def describe_configs(self, resources: list[Any]) -> list[Any]:
        self.configs_asked += 1
        rows: list[Any] = [(0, None, 2, r.name, [("retention.ms", "3600000", False, 5, False, [])]) for r in resources]
        return [SimpleNamespace(resources=rows)]


def probe(admin: FakeAdmin, scope: LagScope | None = None, consumer: FakeConsumer | None = None) -> LagProbe:
    consumer = consumer or FakeConsumer(FakeLog())
    return LagProbe(admin, consumer, "w", "orders", re.compile(".*"), fetch_timeout_ms=200, scope=scope)


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        ("Stable", None),  # Kafka always encodes a Stable member's assignment: empty bytes say nothing
        ("PreparingRebalance", (Member("", "", frozenset()),)),  # mid-rebalance, owning nothing is true
    ],
)
def test_an_empty_assignment_of_a_stable_member_leaves_ownership_unknown(
    state: str, expected: tuple[Member, ...] | None
) -> None:
    assert classic_members("consumer", [("m1", "", "", b"", b"")], state) == expected


def test_members_without_client_id_or_host_get_no_row() -> None:
    parts = [PartitionLag("t", 0, True, 5, 1.0)]
    rows = member_lag(parts, [Member("", "", frozenset({TP("t", 0)})), Member("a", "/h", frozenset())])
    assert [(r.client_id, r.host) for r in rows] == [("a", "/h")]


@pytest.mark.parametrize("mode", ["drop", "flag"])
async def test_a_live_group_described_without_assignments_keeps_its_lag(mode: str) -> None:
    g = (await probe(Admin("Stable", None), LagScope(stale=mode, members=True)).measure()).groups["sink"]
    assert [(p.topic, p.lag_messages) for p in g.partitions] == [("orders", 8)]
    assert (g.stale_topics, g.stale_partitions, g.member_lag) == (frozenset(), 0, ())


@pytest.mark.parametrize("mode", ["flag", "keep"])
async def test_stale_topics_get_no_margin_and_no_time_to_catch_up(mode: str) -> None:
    p = probe(Admin("Stable", "audit"), LagScope(stale=mode))
    await p.measure()
    snap = await p.measure()  # two samples: a rate is known
    assert snap.groups["sink"].stale_topics == frozenset({"orders"})
    assert snap.outlook is not None
    assert [k for k in snap.outlook.margins if k[0] == "sink"] == []
    assert [k for k in snap.outlook.catch_up if k[0] == "sink"] == []
    # A live topic of the same cycle still has both (the watched group reads orders).
    assert ("w", "orders", 0, "time") in snap.outlook.margins and ("w", "orders") in snap.outlook.catch_up


class Trimmed(FakeConsumer):
    async def beginning_offsets(self, partitions: list[TP]) -> dict[TP, int]:
        return dict.fromkeys(partitions, 5)  # retention deleted offsets 0..4


async def test_a_commit_below_the_log_start_has_no_margin_but_a_count_of_records_lost() -> None:
    admin = Admin("Stable", "orders")
    admin.committed["w"] = 7
    snap = await probe(admin, consumer=Trimmed(FakeLog())).measure()
    assert snap.outlook is not None
    # sink committed 2, the log starts at 5: offsets 2..4 were deleted unread. w, at 7, is in the log.
    assert set(snap.outlook.margins) == {("w", "orders", 0, "time")}
    m = parse(render([LagCollector(snap, "w")]).decode())
    assert value(m, "ecomind_consumergroup_lost_messages", group="sink", topic="orders", partition="0") == 3.0
    assert len(series(m, "ecomind_consumergroup_lost_messages")) == 1
    topic = parse(render([LagCollector(snap, "w", LagExport("topic"))]).decode())
    assert value(topic, "ecomind_consumergroup_lost_messages", group="sink", topic="orders") == 3.0


async def test_a_group_whose_topics_are_all_filtered_out_still_counts_its_commits() -> None:
    admin = Admin("Stable", "orders")
    snap = await probe(admin, LagScope(topics_ignore=re.compile("orders"))).measure()
    g = snap.groups["sink"]
    assert (g.partitions, g.members, g.committed_partitions) == ((), 1, 1)
    m = parse(render([LagCollector(snap, "w")]).decode())
    assert value(m, "ecomind_consumergroup_committed_partitions", group="sink") == 1.0
    assert value(m, "ecomind_consumergroup_partitions", group="sink") == 0.0


async def test_stale_status_holds_through_rebalances_and_empty_spells() -> None:
    admin = Admin("Stable", "audit")
    p = probe(admin, LagScope(stale="flag"))
    seen = []
    for state in ("Stable", "PreparingRebalance", "CompletingRebalance", "Empty", "Stable"):
        admin.state = state
        snap = await p.measure()
        m = parse(render([LagCollector(snap, "w", LagExport(stale="flag"))]).decode())
        rows = series(m, "ecomind_consumergroup_lag")
        labels = {dict(k)["stale"] for k in rows if ("group", "sink") in k and ("topic", "orders") in k}
        seen.append((state, snap.groups["sink"].stale_partitions, labels))
    assert seen == [
        ("Stable", 1, {"true"}),
        ("PreparingRebalance", 1, {"true"}),
        ("CompletingRebalance", 1, {"true"}),
        ("Empty", 1, {"true"}),
        ("Stable", 1, {"true"}),
    ]
    admin.owned = "orders"  # the group reads orders again: judged afresh once Stable
    assert (await p.measure()).groups["sink"].stale_topics == frozenset()


class SlowConfigs(Admin):
    async def describe_configs(self, resources: list[Any]) -> list[Any]:
        self.configs_asked += 1
        await asyncio.sleep(60)
        return []


async def test_a_broker_slow_to_describe_configs_never_holds_the_cycle() -> None:
    admin = SlowConfigs("Stable", "orders")
    p = probe(admin)
    try:
        for _ in range(3):
            started = time.monotonic()
            snap = await p.measure()
            assert time.monotonic() - started < 2.0 and snap.errors == []
            assert [(x.topic, x.lag_messages) for x in snap.groups["sink"].partitions] == [("orders", 8)]
        assert admin.configs_asked == 1  # one read in flight at a time, and the topic counts as asked
    finally:
        await p.stop()


class Kafka:
    """DescribeLogDirs on two brokers, t/0's 1 MB on broker 2; the brokers in `down` do not answer."""

    def __init__(self) -> None:
        self.down: set[int] = set()
        self.cluster = SimpleNamespace(brokers=lambda: [SimpleNamespace(nodeId=1), SimpleNamespace(nodeId=2)])

    async def send(self, node: int, request: Any) -> Any:
        if node in self.down:
            raise NodeNotReadyError(node)
        hosted = [("t", [(0, 1_000_000, 0, False)])] if node == 2 else []
        return DescribeLogDirsResponse_v1(0, [(0, "/d", hosted)])


async def test_one_broker_down_at_a_refresh_keeps_the_sizes_known(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [0.0]
    monkeypatch.setattr("streams.lag.outlook.time.monotonic", lambda: clock[0])

    async def configs(resources: list[Any]) -> list[Any]:
        rows: list[Any] = [
            (0, None, 2, r.name, [("retention.bytes", "2000000", False, 5, False, [])]) for r in resources
        ]
        return [SimpleNamespace(resources=rows)]

    o, kafka, tp = Outlook(OutlookSettings(rate_window_s=10, retention_refresh_s=300)), Kafka(), TP("t", 0)
    g = GroupLag("g", "Stable", 1, (PartitionLag("t", 0, True, 100, 5.0),))
    margins = []
    for dt, end, down in ((0, 1000, set()), (5, 1050, set()), (300, 4000, {2}), (5, 4050, {2})):
        clock[0] += dt
        kafka.down = down
        admin = SimpleNamespace(describe_configs=configs)
        f = await o.update(LagSnapshot({"g": g}, "g", 0.0), admin, kafka, {"g": {tp: 900}}, {tp: 0}, {tp: end})
        margins.append((f.margins.get(("g", "t", 0, "size")), o.record_bytes.get(tp)))
    # 1,000 records a partition of 1 MB holds at first: 1,000 B each; 2,000 fit, 100 unread, 10/s.
    assert margins[1] == (190.0, 1000.0)
    # Broker 2 down at the refresh: the size read before is kept, not wiped (no rate yet just after
    # the 300 s gap in cycles, hence no margin in that one cycle).
    assert margins[2:] == [(None, 1000.0), (190.0, 1000.0)]


def test_the_rate_window_keeps_sums_and_few_samples_whatever_its_length() -> None:
    w = RateWindow(1800.0)
    for c in range(400):  # 5 s cycles over more than a window, 50 groups on 50 partitions of one topic each
        committed = {f"g{g}": {TP(f"t{g}", p): c * 10 + p for p in range(50)} for g in range(50)}
        w.add(Sample(c * 5.0, committed, {TP("t0", 0): c * 100}))
    kept = w._samples
    assert len(kept) <= 23 and all(len(s.consumed) == 50 for s in kept)
    rate = w.consumed_per_s("g7", [TP("t7", p) for p in range(50)])
    assert rate is not None and abs(rate - 100.0) < 1e-9  # 50 partitions x 10 offsets per 5 s


def test_a_window_shorter_than_a_cycle_is_no_gap() -> None:
    w, tp = RateWindow(0.2), TP("t", 0)
    for i, at in enumerate((0.0, 0.7, 1.9, 2.5)):
        w.add(Sample(at, {"g": {tp: 100 * i}}, {tp: 0}))
        assert (w.consumed_per_s("g", [tp]) is not None) == (i > 0)  # each cycle's rate from the one before
    assert w.consumed_per_s("g", [tp]) == pytest.approx(100 / 0.6)


def test_a_baseline_from_before_a_probing_gap_is_dropped() -> None:
    w, tp = RateWindow(60.0), TP("t", 0)
    w.add(Sample(0.0, {"g": {tp: 0}}, {tp: 0}))
    w.add(Sample(5.0, {"g": {tp: 500}}, {tp: 500}))  # a cycle every 5 s
    w.add(Sample(3600.0, {"g": {tp: 360_000}}, {tp: 360_000}))  # an hour without a cycle
    assert w.consumed_per_s("g", [tp]) is None
    w.add(Sample(3605.0, {"g": {tp: 360_000}}, {tp: 360_000}))
    assert w.consumed_per_s("g", [tp]) == 0.0  # stopped: +Inf to catch up, not an hour's average


async def test_per_topic_caches_keep_only_measured_topics() -> None:
    async def configs(resources: list[Any]) -> list[Any]:
        rows: list[Any] = [(0, None, 2, r.name, [("retention.bytes", "2000", False, 5, False, [])]) for r in resources]
        return [SimpleNamespace(resources=rows)]

    o = Outlook()
    admin = SimpleNamespace(describe_configs=configs)
    for i in range(50):
        g = GroupLag("g", "Stable", 1, (PartitionLag(f"tmp-{i}", 0, True, 1, 1.0),))
        tp = TP(f"tmp-{i}", 0)
        await o.update(LagSnapshot({"g": g}, "g", 0.0), admin, Kafka(), {"g": {tp: 0}}, {tp: 0}, {tp: 10})
    assert (set(o.reader._asked_at), set(o.retention)) == ({"tmp-49"}, {"tmp-49"})
    assert set(o.record_bytes) <= {TP("tmp-49", 0)}


async def test_a_refused_describe_configs_is_logged_once(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    clock = [0.0]
    monkeypatch.setattr("streams.lag.outlook.time.monotonic", lambda: clock[0])

    async def refused(resources: list[Any]) -> list[Any]:
        rows: list[Any] = [(29, "Topic authorization failed.", 2, r.name, []) for r in resources]
        return [SimpleNamespace(resources=rows)]

    o = Outlook(OutlookSettings(retention_refresh_s=300))
    g = GroupLag("g", "Stable", 1, (PartitionLag("secret", 0, True, 5, 1.0),))
    for _ in range(3):
        clock[0] += 300
        f = await o.update(LagSnapshot({"g": g}, "g", 0.0), SimpleNamespace(describe_configs=refused), None, {}, {}, {})
        assert f.margins == {}
    refusals = [r for r in caplog.records if "DescribeConfigs refused" in r.getMessage()]
    assert len(refusals) == 1 and "secret" in refusals[0].getMessage()


class VersionedKafka(Kafka):
    """A client whose brokers advertise the given ApiVersions (as aiokafka 0.14 keeps them per connection)."""

    def __init__(self, versions: dict[int, tuple[int, int]]) -> None:
        super().__init__()
        self.versions = versions

    async def _get_conn(self, node: int) -> Any:
        return SimpleNamespace(_versions=self.versions)


@pytest.mark.parametrize(
    ("versions", "asked_once"),
    [
        ({3: (0, 12), 35: (1, 4)}, False),  # no DescribeConfigs at all
        ({3: (0, 12), 32: (1, 4), 35: (1, 4)}, True),  # Kafka 4: v0 removed (KIP-896), v1-v2 still spoken
        ({3: (0, 12), 32: (0, 4), 35: (1, 4)}, True),  # Kafka 3
        ({3: (0, 12), 32: (3, 4), 35: (1, 4)}, False),  # only versions aiokafka cannot speak
    ],
)
async def test_describe_configs_is_asked_when_a_version_both_sides_speak_exists(
    versions: dict[int, tuple[int, int]], asked_once: bool
) -> None:
    asked = []

    async def configs(resources: list[Any]) -> list[Any]:
        asked.append(resources)
        return []

    o = Outlook()
    g = GroupLag("g", "Stable", 1, (PartitionLag("t", 0, True, 5, 1.0),))
    await o.update(
        LagSnapshot({"g": g}, "g", 0.0), SimpleNamespace(describe_configs=configs), VersionedKafka(versions), {}, {}, {}
    )
    assert len(asked) == (1 if asked_once else 0)
