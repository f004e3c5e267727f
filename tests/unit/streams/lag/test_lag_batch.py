"""Many groups per request (streams/lag/batch.py): OffsetFetch v8/v9 and FindCoordinator v4 on the wire,
the versions chosen per broker, and the requests a probe of hundreds of groups sends, with the answers'
errors and the fallback to one group per request."""

from __future__ import annotations

import re
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka import TopicPartition
from aiokafka.errors import KafkaConnectionError

from streams.lag.batch import (
    GROUPS_PER_REQUEST,
    FindCoordinatorRequest_v4,
    FindCoordinatorResponse_v4,
    FindGroupCoordinators,
    GroupOffsets,
    OffsetFetchGroups,
    OffsetFetchRequest_v8,
    OffsetFetchRequest_v9,
    OffsetFetchResponse_v8,
    coordinators_found,
    group_offsets,
    supports,
)
from streams.lag.drain import buffered_drain
from streams.lag.probe import LagProbe
from tests.unit.streams.lag.fakes import TP, FakeAdmin, FakeConsumer, FakeLog

# Written by Kafka 4.1.1's own serializers (MessageUtil.toByteBufferAccessor on the generated *Data classes):
# OffsetFetch v8 and v9 asking for every offset of g1 and g2; its v8 answer with g1 at orders/0 = 42
# (orders/1 without a commit, -1) and g2 failing with NOT_COORDINATOR (16); FindCoordinator v4 for g1 and
# g2, answered with node 1 for g1 and COORDINATOR_NOT_AVAILABLE (15, "not yet") for g2.
KAFKA_OF_REQ_V8 = bytes.fromhex("03036731000003673200000000")
KAFKA_OF_REQ_V9 = bytes.fromhex("0303673100ffffffff000003673200ffffffff00000000")
KAFKA_OF_RESP_V8 = bytes.fromhex(
    "000000000303673102076f72646572730300000000000000000000002a000000000100000000000001ffffffffffffffffffff"
    "ffff00000000000000000367320100100000"
)
KAFKA_FC_REQ_V4 = bytes.fromhex("000303673103673200")
KAFKA_FC_RESP_V4 = bytes.fromhex(
    "0000000003036731000000010a3132372e302e302e310000238400000100036732ffffffff01ffffffff000f086e6f74207965740000"
)


@pytest.mark.parametrize(
    ("request_", "versions", "struct", "body"),
    [
        (OffsetFetchGroups(["g1", "g2"]), {9: (1, 9)}, OffsetFetchRequest_v9, KAFKA_OF_REQ_V9),
        (OffsetFetchGroups(["g1", "g2"]), {9: (0, 8)}, OffsetFetchRequest_v8, KAFKA_OF_REQ_V8),
        (FindGroupCoordinators(["g1", "g2"]), {10: (0, 6)}, FindCoordinatorRequest_v4, KAFKA_FC_REQ_V4),
    ],
)
def test_requests_are_kafkas_own_bytes_at_the_version_the_broker_has(
    request_: Any, versions: dict[int, tuple[int, int]], struct: Any, body: bytes
) -> None:
    built = request_.prepare(versions)
    assert type(built) is struct
    assert built.encode() == body
    # Flexible versions: request header v2 (tagged fields after the client id), response header v1.
    assert built.build_request_header(correlation_id=7, client_id="p").encode()[-1:] == b"\x00"
    assert built.parse_response_header(b"\x00\x00\x00\x07\x00").correlation_id == 7


def test_answers_decode_from_kafkas_bytes_and_encode_back() -> None:
    of = OffsetFetchResponse_v8.decode(KAFKA_OF_RESP_V8)
    assert of.encode() == KAFKA_OF_RESP_V8
    assert group_offsets(of) == {
        "g1": GroupOffsets({TopicPartition("orders", 0): 42}),  # -1 on orders/1: no commit, no entry
        "g2": GroupOffsets({}, "error 16", moved=True),
    }
    fc = FindCoordinatorResponse_v4.decode(KAFKA_FC_RESP_V4)
    assert fc.encode() == KAFKA_FC_RESP_V4
    assert coordinators_found(fc) == {"g1": 1, "g2": "error 15 (not yet)"}


@pytest.mark.parametrize(
    ("versions", "api_key", "version", "want"),
    [
        ({9: (1, 9)}, 9, 8, True),  # Kafka 4.1
        ({9: (0, 7)}, 9, 8, False),  # Kafka 2.x: one group per OffsetFetch
        ({10: (0, 3)}, 10, 4, False),  # Kafka 2.x: one key per FindCoordinator
        ({}, 9, 8, False),
        (None, 10, 4, False),  # no connection
    ],
)
def test_which_broker_takes_many_groups(
    versions: dict[int, tuple[int, int]] | None, api_key: int, version: int, want: bool
) -> None:
    assert supports(versions, api_key, version) is want


def test_a_group_with_a_partition_error_has_no_offsets_rather_than_some() -> None:
    answer = OffsetFetchResponse_v8(
        0, [("g", [("orders", [(0, 5, 0, "", 0, {}), (1, -1, -1, None, 29, {})], {})], 0, {})], {}
    )
    assert group_offsets(answer) == {"g": GroupOffsets({}, "error 29 on orders/1")}


# Kafka 4.1's OffsetFetch and FindCoordinator ranges, Kafka 2.8's; the typed listing (tested in
# test_lag_groups.py) is left out, so groups are listed and described the classic way.
KAFKA_4 = {9: (1, 9), 10: (0, 6), 15: (0, 6)}
KAFKA_2_8 = {9: (0, 7), 10: (0, 3), 15: (0, 5)}


class BatchClient:
    """A one-broker cluster's client speaking the many-group calls, recording what it is sent."""

    def __init__(self, versions: dict[int, tuple[int, int]], committed: dict[str, int]) -> None:
        self.versions = versions
        self.committed = committed
        self.cluster = SimpleNamespace(brokers=lambda: [SimpleNamespace(nodeId=1)])
        self.sent: list[tuple[int, int, int]] = []  # api key, version, groups
        self.group_errors: dict[str, int] = {}
        self.dropping = False  # a broker that advertises the versions but drops the connection on them

    async def _get_conn(self, node_id: int) -> Any:
        return SimpleNamespace(_versions=self.versions)

    async def send(self, node_id: int, request: Any) -> Any:
        built = request.prepare(self.versions)
        self.sent.append((built.API_KEY, built.API_VERSION, len(request.group_ids)))
        if self.dropping:
            raise KafkaConnectionError("connection dropped")
        if built.API_KEY == 10:
            return FindCoordinatorResponse_v4(0, [(g, 1, "h", 9092, 0, None, {}) for g in request.group_ids], {})
        groups: list[tuple[Any, ...]] = []
        for g in request.group_ids:
            offsets: list[Any] = []
            if g in self.committed:
                offsets = [(TP.topic, [(TP.partition, self.committed[g], 0, "", 0, {})], {})]
            groups.append((g, offsets, self.group_errors.get(g, 0), {}))
        return OffsetFetchResponse_v8(0, groups, {})


class CountingAdmin(FakeAdmin):
    def __init__(self, committed: dict[str, int], client: BatchClient) -> None:
        super().__init__(committed)
        self._client = client
        self.one_group: list[str] = []  # FindCoordinator and OffsetFetch sent for one group
        self.described: list[int] = []  # groups per DescribeGroups

    async def find_coordinator(self, group_id: str) -> int:
        self.one_group.append(f"FindCoordinator {group_id}")
        return 1

    async def describe_consumer_groups(self, group_ids: list[str], group_coordinator_id: int | None = None) -> Any:
        self.described.append(len(group_ids))
        return await super().describe_consumer_groups(group_ids, group_coordinator_id)

    async def list_consumer_group_offsets(
        self, group_id: str, group_coordinator_id: int | None = None, partitions: list[TopicPartition] | None = None
    ) -> dict[TopicPartition, Any]:
        self.one_group.append(f"OffsetFetch {group_id}")
        return await super().list_consumer_group_offsets(group_id, group_coordinator_id, partitions)


GROUPS = 450  # three requests' worth of groups at 200 per request


def setup(versions: dict[int, tuple[int, int]]) -> tuple[LagProbe, BatchClient, CountingAdmin]:
    committed = {f"g{i:03d}": i % 10 for i in range(GROUPS)}
    client = BatchClient(versions, committed)
    admin = CountingAdmin(committed, client)
    p = LagProbe(admin, FakeConsumer(FakeLog()), "g000", "orders", re.compile("g.*"), fetch_timeout_ms=500)
    return p, client, admin


def lags(snap: Any) -> dict[str, int]:
    return {name: sum(p.lag_messages for p in g.partitions) for name, g in snap.groups.items()}


WANT = {f"g{i:03d}": 10 - i % 10 for i in range(GROUPS)}


async def test_hundreds_of_groups_cost_a_few_requests_per_coordinator() -> None:
    p, client, admin = setup(KAFKA_4)
    first = await p.measure()
    assert first.errors == [] and lags(first) == WANT
    assert client.sent == [(10, 4, 200), (10, 4, 200), (10, 4, 50), (9, 9, 200), (9, 9, 200), (9, 9, 50)]
    assert admin.one_group == ["OffsetFetch g000"]  # once ever: does the broker list offsets without partitions?
    assert admin.described == [200, 200, 50]
    client.sent.clear()
    second = await p.measure()
    assert lags(second) == WANT
    assert client.sent == [(9, 9, 200), (9, 9, 200), (9, 9, 50)]  # coordinators are cached


async def test_a_broker_without_the_batched_versions_gets_one_group_per_request_with_the_same_figures() -> None:
    p, client, admin = setup(KAFKA_2_8)
    snap = await p.measure()
    assert snap.errors == [] and lags(snap) == WANT
    assert client.sent == []
    assert sorted(admin.one_group) == sorted(
        ["OffsetFetch g000"] + [f"{call} {g}" for g in WANT for call in ("FindCoordinator", "OffsetFetch")]
    )


async def test_a_batched_request_dropped_on_the_wire_falls_back_to_one_group_at_a_time_in_the_same_cycle() -> None:
    p, client, admin = setup(KAFKA_4)
    client.dropping = True
    snap = await p.measure()
    assert snap.errors == [] and lags(snap) == WANT
    assert [k for k, _, _ in client.sent] == [10, 10, 10, 9, 9, 9]  # tried, then every group one by one
    assert len(admin.one_group) == 1 + 2 * GROUPS


async def test_a_group_whose_coordinator_moved_is_reported_keeps_its_last_figures_and_is_looked_up_again() -> None:
    p, client, _admin = setup(KAFKA_4)
    first = await p.measure()
    client.group_errors["g007"] = 16  # NOT_COORDINATOR
    client.sent.clear()
    snap = await p.measure()
    assert snap.errors == ["OffsetFetch g007 failed: error 16"]
    # Its last figures stay (no gap in its series, no alert's `for` reset), the others are measured anew.
    assert snap.groups["g007"] is first.groups["g007"] and lags(snap) == WANT
    assert snap.groups["g008"] is not first.groups["g008"]
    del client.group_errors["g007"]
    client.sent.clear()
    again = await p.measure()
    assert again.errors == [] and lags(again) == WANT
    assert client.sent[0] == (10, 4, 1)  # only g007's coordinator was asked again


async def test_the_benchmarks_baseline_switch_sends_the_one_group_calls() -> None:
    p, client, admin = setup(KAFKA_4)
    p._batched.enabled = False
    snap = await p.measure()
    assert lags(snap) == WANT and client.sent == []
    assert len(admin.one_group) == 1 + 2 * GROUPS


def test_chunk_size_is_what_the_docs_say() -> None:
    assert GROUPS_PER_REQUEST == 200


def test_a_consumer_without_aiokafkas_fetch_buffer_is_read_with_getmany() -> None:
    assert buffered_drain(FakeConsumer(FakeLog())) is None


async def test_a_group_never_read_has_no_figures_rather_than_a_guess() -> None:
    p, client, _admin = setup(KAFKA_4)
    client.group_errors["g007"] = 15  # COORDINATOR_NOT_AVAILABLE from the first cycle on
    snap = await p.measure()
    assert snap.errors == ["OffsetFetch g007 failed: error 15"]
    assert "g007" not in snap.groups and len(snap.groups) == GROUPS - 1
