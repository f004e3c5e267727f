"""ListGroups v5 and ConsumerGroupDescribe v0 on the wire, their parsing, and which calls the probe picks
for a broker's ApiVersions (streams/lag/groups.py), down to the requests the probe sends."""

from __future__ import annotations

import re
from typing import Any

import pytest
from aiokafka.errors import IncompatibleBrokerVersion

from streams.lag.groups import (
    ConsumerGroupDescribe,
    ConsumerGroupDescribeResponse_v0,
    GroupApis,
    ListedGroup,
    ListGroupsResponse_v5,
    ListGroupsTyped,
    describe_call,
    described_consumer_groups,
    group_apis,
    listed_classic,
    listed_typed,
    measurable,
    recheck_as_consumer,
)
from streams.lag.probe import LagProbe
from tests.unit.streams.lag.fakes import FakeConsumer, FakeLog
from tests.unit.streams.lag.group_wire import (
    BOTH,
    CLASSIC,
    KAFKA_3_6,
    KAFKA_4,
    KAFKA_CGD_V0,
    KAFKA_LIST_V5,
    LISTING,
    NO_TAGS,
    TOPIC_ID,
    V2_DESCRIBED,
    FakeKafkaClient,
    RecordingAdmin,
    assignment,
    carr,
    cgd_response,
    described,
    i16,
    i32,
    listed,
    measure,
    member,
)


def test_kafkas_own_bytes_decode_and_encode_back() -> None:
    lg = ListGroupsResponse_v5.decode(KAFKA_LIST_V5)
    assert listed_typed(lg) == [ListedGroup("g", "consumer", "Stable", "consumer")]
    assert lg.encode() == KAFKA_LIST_V5
    cgd = ConsumerGroupDescribeResponse_v0.decode(KAFKA_CGD_V0)
    (g,) = cgd.groups
    assert (g[2], g[3], g[6]) == ("g", "Reconciling", "uniform")
    (m,) = g[7]
    assert (m[0], m[3], m[4], m[5], m[6]) == ("m1", 3, "c", "/h", ["orders"])
    assert m[8][0] == [(TOPIC_ID, "orders", [0, 1], {})]
    assert cgd.encode() == KAFKA_CGD_V0


@pytest.mark.parametrize(
    ("request_", "versions", "body", "header"),
    [
        # Empty StatesFilter and TypesFilter (compact arrays: length + 1), no tagged fields. Header v2:
        # api key 16, version 5, correlation id, client id as a classic nullable string, tagged fields.
        (ListGroupsTyped(), {16: (0, 5)}, b"\x01\x01\x00", b"\x00\x10\x00\x05\x00\x00\x00\x07\x00\x05probe\x00"),
        # v0 chosen even where v1 exists (v1 only adds MemberType to the answer).
        (
            ConsumerGroupDescribe(["g1", "g2"]),
            {69: (0, 1)},
            b"\x03\x03g1\x03g2\x00\x00",
            b"\x00\x45\x00\x00\x00\x00\x00\x07\x00\x05probe\x00",
        ),
        (
            ConsumerGroupDescribe([]),
            {69: (0, 0)},
            b"\x01\x00\x00",
            b"\x00\x45\x00\x00\x00\x00\x00\x07\x00\x05probe\x00",
        ),
    ],
)
def test_requests_encode_with_the_flexible_header(
    request_: Any, versions: dict[int, tuple[int, int]], body: bytes, header: bytes
) -> None:
    built = request_.prepare(versions)
    assert built.encode() == body
    assert built.build_request_header(correlation_id=7, client_id="probe").encode() == header
    assert built.parse_response_header(b"\x00\x00\x00\x07\x00").correlation_id == 7  # response header v1


@pytest.mark.parametrize(
    "versions",
    [
        {},  # ApiVersions without the key at all
        {16: (0, 4), 69: (0, 0)},  # ListGroups stops at v4
    ],
)
def test_aiokafka_refuses_the_typed_listing_where_the_broker_lacks_it(versions: dict[int, tuple[int, int]]) -> None:
    with pytest.raises((IncompatibleBrokerVersion, NotImplementedError)):
        ListGroupsTyped().prepare(versions)


@pytest.mark.parametrize(
    ("raw", "want"),
    [
        (i32(0) + i16(0) + carr() + NO_TAGS, []),
        (
            i32(0)
            + i16(0)
            + carr(
                listed("orders-v2", "consumer", "Reconciling", "consumer"),
                listed("legacy", "consumer", "PreparingRebalance", "classic"),
                listed("connect-sink", "", "Empty", "classic"),  # a group that only commits offsets
                listed("queue", "share", "Stable", "share"),
                listed("topo", "streams", "NotReady", "streams"),
            )
            + NO_TAGS,
            [
                ListedGroup("orders-v2", "consumer", "Reconciling", "consumer"),
                ListedGroup("legacy", "consumer", "PreparingRebalance", "classic"),
                ListedGroup("connect-sink", "", "Empty", "classic"),
                ListedGroup("queue", "share", "Stable", "share"),
                ListedGroup("topo", "streams", "NotReady", "streams"),
            ],
        ),
    ],
)
def test_list_groups_v5_decodes_names_states_and_types(raw: bytes, want: list[ListedGroup]) -> None:
    response = ListGroupsResponse_v5.decode(raw)
    assert response.error_code == 0
    assert listed_typed(response) == want
    assert response.encode() == raw


def test_a_list_groups_error_is_kept() -> None:
    assert ListGroupsResponse_v5.decode(i32(0) + i16(15) + carr() + NO_TAGS).error_code == 15


def test_share_groups_are_not_measured_whichever_listing_found_them() -> None:
    groups = [
        ListedGroup("orders-v2", "consumer", "Stable", "consumer"),
        ListedGroup("queue", "share", "Stable", "share"),
        *listed_classic([("legacy", "consumer"), ("queue-seen-by-v4", "share"), ("offsets-only", "")]),
    ]
    assert [g.name for g in measurable(groups)] == ["orders-v2", "legacy", "offsets-only"]


@pytest.mark.parametrize(
    ("raw", "want"),
    [
        pytest.param(
            cgd_response(
                described(
                    0,
                    "orders-v2",
                    "Stable",
                    member("m1", assignment((TOPIC_ID, "orders", [0, 1])), assignment((TOPIC_ID, "orders", [0, 1]))),
                    member("m2", assignment((b"\x02" * 16, "payments", [0])), assignment(), instance="pod-2"),
                )
            ),
            [("orders-v2", 0, "Stable", 2, {"orders", "payments"})],
            id="stable-two-members",
        ),
        pytest.param(
            # A partition on its way: in m2's target, in nobody's assignment yet. Its topic stays measured.
            cgd_response(
                described(
                    0,
                    "moving",
                    "Reconciling",
                    member("m1", assignment((TOPIC_ID, "orders", [0])), assignment((TOPIC_ID, "orders", [0]))),
                    member("m2", assignment(), assignment((b"\x03" * 16, "refunds", [0]))),
                )
            ),
            [("moving", 0, "Reconciling", 2, {"orders", "refunds"})],
            id="reconciling-target-counts",
        ),
        pytest.param(
            cgd_response(described(0, "fresh", "Assigning", member("m1", assignment(), assignment()))),
            [("fresh", 0, "Assigning", 1, set())],
            id="assigning-nothing-owned",
        ),
        pytest.param(
            # A topic deleted under the group: the broker can no longer name it.
            cgd_response(described(0, "orphan", "Stable", member("m1", assignment((TOPIC_ID, "", [0])), assignment()))),
            [("orphan", 0, "Stable", 1, set())],
            id="unnamed-topic-skipped",
        ),
        pytest.param(
            cgd_response(
                described(0, "idle", "Empty"),
                described(69, "legacy", "", message="Group legacy is not a consumer group."),
                described(16, "elsewhere", ""),
            ),
            [
                ("idle", 0, "Empty", 0, set()),
                ("legacy", 69, "Unknown", 0, set()),
                ("elsewhere", 16, "Unknown", 0, set()),
            ],
            id="empty-and-errors",
        ),
    ],
)
def test_consumer_group_describe_gives_states_members_and_topics(
    raw: bytes, want: list[tuple[str, int, str, int, set[str]]]
) -> None:
    response = ConsumerGroupDescribeResponse_v0.decode(raw)
    got = [
        (d.name, d.error_code, d.state, d.members, set(d.assigned_topics)) for d in described_consumer_groups(response)
    ]
    assert got == want
    assert response.encode() == raw


@pytest.mark.parametrize(
    ("versions", "want"),
    [
        ({16: (0, 5), 69: (0, 1)}, GroupApis(True, True)),  # Apache Kafka 4.1.1, as measured
        ({16: (0, 5), 69: (0, 0)}, GroupApis(True, True)),  # Tansu 0.6.0, as measured (it lists groups as classic)
        ({16: (0, 4)}, GroupApis(False, False)),  # Kafka 2.6 - 3.6: states, no types, no KIP-848
        ({16: (0, 3), 15: (0, 5)}, GroupApis(False, False)),
        ({16: (0, 4), 69: (0, 0)}, GroupApis(False, True)),
        ({}, GroupApis(False, False)),  # no ApiVersions known: the classic calls only
        ({16: (6, 9), 69: (1, 2)}, GroupApis(False, False)),  # a broker that dropped the versions spoken here
    ],
)
def test_the_calls_a_broker_can_answer(versions: dict[int, tuple[int, int]], want: GroupApis) -> None:
    assert group_apis(versions) == want


@pytest.mark.parametrize(
    ("group", "apis", "call"),
    [
        (ListedGroup("a", "consumer", "Stable", "consumer"), BOTH, "consumer"),
        (ListedGroup("a", "consumer", "Stable", "consumer"), CLASSIC, "classic"),
        (ListedGroup("a", "consumer", "Stable", "classic"), BOTH, "classic"),
        (ListedGroup("a", "consumer"), BOTH, "classic"),  # listed without types
        (None, BOTH, "classic"),  # not listed: the watched group alone
        (ListedGroup("a", "streams", "NotReady", "streams"), BOTH, "listing"),
    ],
)
def test_which_call_describes_a_group(group: ListedGroup | None, apis: GroupApis, call: str) -> None:
    assert describe_call(group, apis) == call


@pytest.mark.parametrize(
    ("group", "error", "state", "apis", "ask"),
    [
        (None, 0, "Dead", BOTH, True),  # Kafka 4's classic answer about a consumer-protocol group
        (None, 69, "", BOTH, True),  # DescribeGroups v6's answer about one
        (None, 0, "Dead", CLASSIC, False),  # the broker has no API 69
        (None, 0, "Empty", BOTH, False),  # Tansu's answer about a group it does not know
        (None, 0, "Stable", BOTH, False),
        (None, 16, "", BOTH, False),  # not the coordinator: an error, as before
        (ListedGroup("a", "consumer", "Dead", "classic"), 0, "Dead", BOTH, False),  # typed: a classic group died
        (ListedGroup("a", "consumer"), 0, "Dead", BOTH, True),  # listed without types
    ],
)
def test_which_classic_answers_are_asked_again_as_consumer_groups(
    group: ListedGroup | None, error: int, state: str, apis: GroupApis, ask: bool
) -> None:
    assert recheck_as_consumer(group, error, state, apis) is ask


async def test_on_kafka_4_consumer_groups_are_listed_typed_and_described_with_api_69() -> None:
    client = FakeKafkaClient(KAFKA_4, LISTING, V2_DESCRIBED)
    admin = RecordingAdmin({"v1": 3, "v2": 4}, client, dead={"v2"})
    assert await measure(admin, ".*") == {"v1": ("Empty", 0), "v2": ("Stable", 1)}
    assert client.sent == [(16, None), (69, ["v2"])]
    assert admin.calls == [("DescribeGroups", ["v1"])]  # aiokafka's classic ListGroups is not sent


async def test_on_kafka_3_6_only_the_classic_calls_are_sent_and_their_answer_stands() -> None:
    client = FakeKafkaClient(KAFKA_3_6, LISTING, V2_DESCRIBED)
    admin = RecordingAdmin({"v1": 3, "v2": 4}, client, dead={"v2"})
    assert await measure(admin, ".*") == {"v1": ("Empty", 0), "v2": ("Dead", 0)}
    assert client.sent == []
    assert admin.calls == [("ListGroups", None), ("DescribeGroups", ["v1", "v2"])]


async def test_a_watched_group_of_unknown_type_that_classic_calls_dead_is_asked_with_api_69() -> None:
    client = FakeKafkaClient(KAFKA_4, LISTING, V2_DESCRIBED)
    admin = RecordingAdmin({"v2": 4}, client, dead={"v2"})
    assert await measure(admin, None, watched="v2") == {"v2": ("Stable", 1)}
    assert client.sent == [(69, ["v2"])]  # no include pattern: no listing at all
    assert admin.calls == [("DescribeGroups", ["v2"])]


async def test_a_group_neither_call_knows_stays_dead_without_an_error() -> None:
    client = FakeKafkaClient(KAFKA_4, LISTING, cgd_response(described(69, "gone", "", message="Group gone not found.")))
    admin = RecordingAdmin({}, client, dead={"gone"})
    assert await measure(admin, None, watched="gone") == {"gone": ("Dead", 0)}
    assert client.sent == [(69, ["gone"])]


async def test_a_consumer_group_without_a_commit_is_measured_on_its_members_assignment() -> None:
    client = FakeKafkaClient(KAFKA_4, LISTING, V2_DESCRIBED)
    admin = RecordingAdmin({"v1": 3}, client, dead={"v2"})  # v2 has members and never committed
    snap = await LagProbe(
        admin, FakeConsumer(FakeLog()), "v1", "orders", re.compile(".*"), fetch_timeout_ms=200
    ).measure()
    (p,) = snap.groups["v2"].partitions
    assert (p.topic, p.partition, p.committed, p.lag_messages) == ("orders", 0, False, 10)
