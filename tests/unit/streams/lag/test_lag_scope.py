"""Topic filters, stale offsets and per-client lag: the pure rules (streams/lag/scope.py, members.py) and
the series they give (streams/lag/scope_metrics.py, the stale label in streams/lag/metrics.py)."""

from __future__ import annotations

import re
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka import TopicPartition as TP

from streams.exposition import render
from streams.lag.groups import ConsumerGroupDescribeResponse_v0
from streams.lag.members import Member, capped, classic_members, consumer_members, member_lag
from streams.lag.metrics import LagCollector, LagExport
from streams.lag.model import GroupLag, LagSnapshot, MemberLag, PartitionLag
from streams.lag.probe import LagProbe, probe_from_settings
from streams.lag.scope import LagScope, lag_scope, stale_topics
from streams.local.scrape import Samples, parse, series, value
from streams.settings import Settings, SettingsError
from tables.labels import OTHER
from tests.unit.streams.lag.fakes import FakeAdmin, FakeConsumer, FakeLog
from tests.unit.streams.lag.group_wire import TOPIC_ID, assignment, cgd_response, described, encoded, member

ORDERS = re.compile(r"orders\..*")


@pytest.mark.parametrize(
    ("include", "ignore", "topic", "selected"),
    [
        (None, None, "anything", True),
        (ORDERS, None, "orders.eu", True),
        (ORDERS, None, "payments.orders.eu", False),  # full match: a substring is not enough
        (ORDERS, re.compile(r".*\.test"), "orders.test", False),  # ignore wins over include
        (None, re.compile(r"__.*|_schemas"), "__consumer_offsets", False),
        (None, re.compile(r"__.*|_schemas"), "orders.__x", True),
    ],
)
def test_topic_filters_fully_match(
    include: re.Pattern[str] | None, ignore: re.Pattern[str] | None, topic: str, selected: bool
) -> None:
    assert LagScope(include, ignore).selects(topic) is selected


@pytest.mark.parametrize(
    ("mode", "measured"),
    [("drop", {"orders.eu"}), ("flag", {"orders.eu", "orders.old"}), ("keep", {"orders.eu", "orders.old"})],
)
def test_stale_topics_are_measured_unless_dropped(mode: str, measured: set[str]) -> None:
    scope = LagScope(ORDERS, stale=mode)
    topics = {"orders.eu", "orders.old", "audit"}
    assert scope.measured(topics, frozenset({"orders.old"})) == measured


@pytest.mark.parametrize(
    ("state", "members", "known", "stale"),
    [
        ("Stable", 2, True, {"t2"}),  # resubscribed to t1 only: t2's commits are abandoned
        ("Empty", 0, True, set()),  # no member owns anything: its lag is what the alerts are for
        ("PreparingRebalance", 2, True, set()),  # mid-rebalance, classic members own nothing yet
        ("CompletingRebalance", 2, True, set()),
        ("Reconciling", 2, True, set()),
        ("Stable", 2, False, set()),  # an assignment that could not be decoded: ownership unknown
        ("Stable", 0, True, set()),
    ],
)
def test_staleness_only_when_certain(state: str, members: int, known: bool, stale: set[str]) -> None:
    assert stale_topics(state, members, ["t1", "t2", "t1"], frozenset({"t1", "t3"}), known) == stale


@pytest.mark.parametrize(
    ("protocol", "rows", "expected"),
    [
        (
            "consumer",
            [
                ("m1", "svc-a", "/10.0.0.1", b"", encoded(("t1", [0, 1]))),
                ("m2", "svc-b", "/10.0.0.2", b"", encoded(("t1", [2]), ("t2", [0]))),
                ("m3", "svc-c", "/10.0.0.3", b"", b""),  # joined, owns nothing yet
            ],
            (
                Member("svc-a", "/10.0.0.1", frozenset({TP("t1", 0), TP("t1", 1)})),
                Member("svc-b", "/10.0.0.2", frozenset({TP("t1", 2), TP("t2", 0)})),
                Member("svc-c", "/10.0.0.3", frozenset()),
            ),
        ),
        ("consumer", [("m1", "a", "/h", b"", b"\x00\x07garbage")], None),  # a client's own encoding
        ("connect", [("m1", "worker", "/h", b"", b"\x00\x01")], None),
    ],
)
def test_classic_members_from_describe_groups(
    protocol: str, rows: list[tuple[str, str, str, bytes, bytes]], expected: tuple[Member, ...] | None
) -> None:
    assert classic_members(protocol, rows) == expected


def test_consumer_protocol_members_own_their_current_assignment_not_the_target() -> None:
    raw = cgd_response(
        described(
            0,
            "g",
            "Reconciling",
            member("m1", assignment((TOPIC_ID, "orders", [0, 1])), assignment((TOPIC_ID, "orders", [0]))),
            member("m2", assignment(), assignment((TOPIC_ID, "orders", [1]))),
        )
    )
    got = consumer_members(ConsumerGroupDescribeResponse_v0.decode(raw))
    # The helper writes client id "console-consumer" and host "/127.0.0.1" for every member.
    assert got == {
        "g": (
            Member("console-consumer", "/127.0.0.1", frozenset({TP("orders", 0), TP("orders", 1)})),
            Member("console-consumer", "/127.0.0.1", frozenset()),
        )
    }


PARTS = (
    PartitionLag("t1", 0, True, 5, 10.0),
    PartitionLag("t1", 1, True, 3, 40.0),
    PartitionLag("t1", 2, True, 7, None),  # age not read in time
    PartitionLag("t2", 0, True, 0, 0.0),
)


@pytest.mark.parametrize(
    ("members", "expected"),
    [
        (
            [Member("a", "/h1", frozenset({TP("t1", 0), TP("t1", 1)})), Member("b", "/h2", frozenset({TP("t2", 0)}))],
            (MemberLag("a", "/h1", 2, 8, 40.0), MemberLag("b", "/h2", 1, 0, 0.0)),
        ),
        # Two members of one process with one client id: one row, summed; an unknown age makes it unknown.
        (
            [Member("a", "/h1", frozenset({TP("t1", 0)})), Member("a", "/h1", frozenset({TP("t1", 2)}))],
            (MemberLag("a", "/h1", 2, 12, None),),
        ),
        # An owned partition that is not measured (a filtered-out topic) does not count; owning none is 0.
        (
            [Member("a", "/h1", frozenset({TP("ignored", 0), TP("t1", 1)})), Member("idle", "/h3", frozenset())],
            (MemberLag("a", "/h1", 1, 3, 40.0), MemberLag("idle", "/h3", 0, 0, 0.0)),
        ),
    ],
)
def test_member_lag_sums_what_each_client_owns(members: list[Member], expected: tuple[MemberLag, ...]) -> None:
    assert member_lag(PARTS, members) == expected


ROWS = [
    MemberLag("a", "/h", 1, 5, 1.0),
    MemberLag("b", "/h", 1, 50, 9.0),
    MemberLag("c", "/h", 2, 20, None),
    MemberLag(OTHER, "/h", 1, 1, 2.0),  # spelled like the fold bucket: never a row of its own
]


@pytest.mark.parametrize(
    ("limit", "expected"),
    [
        (10, [("b", 50, 9.0), ("c", 20, None), ("a", 5, 1.0), (OTHER, 1, 2.0)]),
        (2, [("b", 50, 9.0), ("c", 20, None), (OTHER, 6, 2.0)]),
        (1, [("b", 50, 9.0), (OTHER, 26, None)]),  # the fold's age is unknown when one folded row's is
    ],
)
def test_the_most_lagging_clients_keep_their_labels_and_sums_stay_exact(
    limit: int, expected: list[tuple[str, int, float | None]]
) -> None:
    got = capped(ROWS, limit)
    assert [(r.client_id, r.lag_messages, r.lag_seconds) for r in got] == expected
    assert sum(r.lag_messages for r in got) == sum(r.lag_messages for r in ROWS)
    assert sum(r.partitions for r in got) == sum(r.partitions for r in ROWS)


def scoped_snapshot() -> LagSnapshot:
    sink = GroupLag(
        "sink",
        "Stable",
        2,
        (PartitionLag("t1", 0, True, 4, 3.0), PartitionLag("t2", 0, True, 900, 5000.0)),
        frozenset({"t2"}),
        1,
        (MemberLag("a", "/h1", 1, 4, 3.0), MemberLag("b", "/h2", 0, 0, 0.0)),
    )
    return LagSnapshot({"sink": sink}, "worker", 1_800_000_000.0, 0.1)


def scrape(export: LagExport) -> Samples:
    return parse(render([LagCollector(scoped_snapshot(), "worker", export)]).decode())


def test_flag_mode_labels_every_group_series_with_stale() -> None:
    m = scrape(LagExport(stale="flag"))
    assert value(m, "ecomind_consumergroup_lag", group="sink", topic="t2", partition="0", stale="true") == 900.0
    assert value(m, "ecomind_consumergroup_lag", group="sink", topic="t1", partition="0", stale="false") == 4.0
    assert value(m, "ecomind_consumergroup_lag_seconds", group="sink", topic="t2", partition="0", stale="true") == 5e3
    m = parse(render([LagCollector(scoped_snapshot(), "worker", LagExport("topic", stale="flag"))]).decode())
    assert value(m, "ecomind_consumergroup_lag_seconds_unknown", group="sink", topic="t2", stale="true") == 0.0


@pytest.mark.parametrize("mode", ["drop", "keep"])
def test_other_modes_keep_the_label_set(mode: str) -> None:
    m = scrape(LagExport(stale=mode))
    assert value(m, "ecomind_consumergroup_lag", group="sink", topic="t1", partition="0") == 4.0
    assert value(m, "ecomind_consumergroup_stale_partitions", group="sink") == 1.0
    assert series(m, "ecomind_consumergroup_member_lag") == {}  # off unless STREAMS_LAG_MEMBERS


def test_member_series_when_asked_for_capped_per_group() -> None:
    m = scrape(LagExport(members=True))
    assert value(m, "ecomind_consumergroup_member_lag", group="sink", client_id="a", host="/h1") == 4.0
    assert value(m, "ecomind_consumergroup_member_lag_seconds", group="sink", client_id="b", host="/h2") == 0.0
    assert value(m, "ecomind_consumergroup_member_partitions", group="sink", client_id="a", host="/h1") == 1.0
    m = scrape(LagExport(members=True, members_per_group=1))
    assert len(series(m, "ecomind_consumergroup_member_lag")) == 2
    assert value(m, "ecomind_consumergroup_member_lag", group="sink", client_id=OTHER, host=OTHER) == 0.0


def test_scope_settings_defaults_and_values() -> None:
    s = Settings.from_env({})
    assert (s.lag_topics, s.lag_topics_ignore, s.lag_stale, s.lag_members, s.lag_members_per_group) == (
        None,
        None,
        "drop",
        False,
        20,
    )
    s = Settings.from_env(
        {
            "STREAMS_LAG_TOPICS": r"orders\..*",
            "STREAMS_LAG_TOPICS_IGNORE": ".*-retry",
            "STREAMS_LAG_STALE": "flag",
            "STREAMS_LAG_MEMBERS": "true",
            "STREAMS_LAG_MEMBERS_PER_GROUP": "5",
        }
    )
    scope = lag_scope(s)
    assert (scope.selects("orders.eu"), scope.selects("orders.eu-retry"), scope.selects("x")) == (True, False, False)
    assert (scope.stale, scope.members) == ("flag", True)
    assert (LagExport.from_settings(s).stale, LagExport.from_settings(s).members_per_group) == ("flag", 5)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"STREAMS_LAG_TOPICS": "orders.("}, "STREAMS_LAG_TOPICS='orders.(': expected a regular expression"),
        ({"STREAMS_LAG_TOPICS_IGNORE": "+x"}, "STREAMS_LAG_TOPICS_IGNORE='+x': expected a regular expression"),
        ({"STREAMS_LAG_STALE": "hide"}, "STREAMS_LAG_STALE='hide': expected one of DROP, FLAG, KEEP"),
        ({"STREAMS_LAG_MEMBERS": "maybe"}, "STREAMS_LAG_MEMBERS='maybe': expected true or false"),
        ({"STREAMS_LAG_MEMBERS_PER_GROUP": "0"}, "STREAMS_LAG_MEMBERS_PER_GROUP='0': expected an integer from 1"),
    ],
)
def test_bad_scope_settings_name_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env(env)
    assert message in str(caught.value)


class NamingAdmin(FakeAdmin):
    """A broker that cannot list a group's offsets without partitions (Tansu): the probe names them."""

    def __init__(self, committed: dict[str, int]) -> None:
        super().__init__(committed)
        self.asked: dict[str, set[str]] = {}

    async def list_consumer_group_offsets(
        self, group_id: str, group_coordinator_id: int | None = None, partitions: list[TP] | None = None
    ) -> dict[TP, Any]:
        if partitions is None:
            raise ValueError("connection dropped")
        self.asked.setdefault(group_id, set()).update(tp.topic for tp in partitions)
        found = await super().list_consumer_group_offsets(group_id, group_coordinator_id, partitions)
        return {tp: m for tp, m in found.items() if tp in partitions}

    async def describe_topics(self, topics: list[str] | None = None) -> list[Any]:
        names = topics if topics is not None else ["orders", "audit"]
        return [{"error_code": 0, "topic": t, "is_internal": False, "partitions": [{"partition": 0}]} for t in names]


async def test_named_partitions_leave_filtered_topics_out_but_for_the_watched_group() -> None:
    admin = NamingAdmin({"w": 4, "sink": 2})
    scope = LagScope(topics_ignore=re.compile("orders"))
    probe = LagProbe(admin, FakeConsumer(FakeLog()), "w", "orders", re.compile(".*"), fetch_timeout_ms=200, scope=scope)
    snap = await probe.measure()
    assert admin.asked == {"w": {"orders", "audit"}, "sink": {"audit"}}
    assert [(p.topic, p.lag_messages) for p in snap.groups["w"].partitions] == [("orders", 6)]
    assert snap.groups["sink"].partitions == ()


async def test_the_sidecars_probe_gets_the_scope_from_the_settings() -> None:
    s = Settings.from_env(
        {"STREAMS_LAG_TOPICS_IGNORE": "audit", "STREAMS_LAG_STALE": "keep", "STREAMS_LAG_MEMBERS": "1"}
    )
    probe = probe_from_settings(s)
    assert (probe.scope.selects("audit"), probe.scope.selects("orders"), probe.scope.stale, probe.scope.members) == (
        False,
        True,
        "keep",
        True,
    )


class MemberAdmin(FakeAdmin):
    """Group "sink": commits on orders/0; one member, svc on /h, owning audit/0; in the state given."""

    def __init__(self, state: str) -> None:
        super().__init__({"w": 4, "sink": 2})
        self.state = state

    async def describe_consumer_groups(self, group_ids: list[str], group_coordinator_id: int | None = None) -> Any:
        members = [("m1", "svc", "/h", b"", encoded(("audit", [0])))]
        rows = [(0, g, self.state, "consumer", "range", members if g == "sink" else []) for g in group_ids]
        return [SimpleNamespace(groups=rows)]

    async def describe_topics(self, topics: list[str] | None = None) -> list[Any]:
        return [
            {"error_code": 0, "topic": t, "is_internal": False, "partitions": [{"partition": 0}]} for t in topics or []
        ]


@pytest.mark.parametrize(
    ("state", "mode", "measured", "stale", "clients"),
    [
        # orders is no member's: dropped, or measured as the mode says; audit is the member's, 10 waiting.
        ("Stable", "drop", {"audit": 10}, 1, [("svc", 1, 10)]),
        ("Stable", "flag", {"audit": 10, "orders": 8}, 1, [("svc", 1, 10)]),
        ("Stable", "keep", {"audit": 10, "orders": 8}, 1, [("svc", 1, 10)]),
        # Mid-rebalance nothing is stale, and no client rows (a classic member owns nothing yet).
        ("PreparingRebalance", "drop", {"audit": 10, "orders": 8}, 0, []),
    ],
)
async def test_the_probe_measures_what_the_scope_says(
    state: str, mode: str, measured: dict[str, int], stale: int, clients: list[tuple[str, int, int]]
) -> None:
    scope = LagScope(stale=mode, members=True)
    probe = LagProbe(
        MemberAdmin(state), FakeConsumer(FakeLog()), "w", "orders", re.compile(".*"), fetch_timeout_ms=200, scope=scope
    )
    g = (await probe.measure()).groups["sink"]
    assert {p.topic: p.lag_messages for p in g.partitions} == measured
    assert g.stale_partitions == stale
    assert [(r.client_id, r.partitions, r.lag_messages) for r in g.member_lag] == clients
