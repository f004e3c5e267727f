"""Group-listing and describing answers as brokers encode them (ListGroups v5, ConsumerGroupDescribe v0), the
ApiVersions of known brokers, and a recording admin: the builders the lag probe's group tests share."""

from __future__ import annotations

import re
import struct
from types import SimpleNamespace
from typing import Any

from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment

from streams.lag.groups import (
    ConsumerGroupDescribeResponse_v0,
    GroupApis,
    ListGroupsResponse_v5,
)
from streams.lag.probe import LagProbe
from tests.unit.streams.lag.fakes import FakeAdmin, FakeConsumer, FakeLog


# The encoding rules of Kafka's flexible versions, written out here rather than taken from aiokafka.
def uvarint(n: int) -> bytes:
    out = b""
    while n >= 0x80:
        out += bytes([(n & 0x7F) | 0x80])
        n >>= 7
    return out + bytes([n])


def cstr(s: str | None) -> bytes:
    return b"\x00" if s is None else uvarint(len(s.encode()) + 1) + s.encode()


def carr(*items: bytes) -> bytes:
    return uvarint(len(items) + 1) + b"".join(items)


def i16(n: int) -> bytes:
    return struct.pack(">h", n)


def i32(n: int) -> bytes:
    return struct.pack(">i", n)


NO_TAGS = b"\x00"


TOPIC_ID = bytes(range(1, 17))


def assignment(*topics: tuple[bytes, str, list[int]]) -> bytes:
    return carr(*(tid + cstr(name) + carr(*(i32(p) for p in parts)) + NO_TAGS for tid, name, parts in topics)) + NO_TAGS


def member(member_id: str, owned: bytes, target: bytes, instance: str | None = None) -> bytes:
    return (
        cstr(member_id)
        + cstr(instance)
        + cstr(None)  # rack
        + i32(5)  # member epoch
        + cstr("console-consumer")
        + cstr("/127.0.0.1")
        + carr(cstr("orders"))
        + cstr(None)  # subscribed regex
        + owned
        + target
        + NO_TAGS
    )


def described(error: int, name: str, state: str, *members: bytes, message: str | None = None) -> bytes:
    return (
        i16(error)
        + cstr(message)
        + cstr(name)
        + cstr(state)
        + i32(7)  # group epoch
        + i32(7)  # assignment epoch
        + cstr("uniform")
        + carr(*members)
        + i32(-(2**31))  # authorized operations not asked
        + NO_TAGS
    )


def cgd_response(*groups: bytes) -> bytes:
    return i32(0) + carr(*groups) + NO_TAGS


def listed(name: str, protocol: str, state: str, kind: str) -> bytes:
    return cstr(name) + cstr(protocol) + cstr(state) + cstr(kind) + NO_TAGS


# Written by Kafka 4.1.1's own serializers (MessageUtil.toByteBufferAccessor on the generated *Data classes):
# ListGroups v5 with one consumer group, and ConsumerGroupDescribe v0 with one Reconciling member owning
# orders/0-1 (topic id 0102...10) and an empty target assignment.
KAFKA_LIST_V5 = bytes.fromhex("00000000000002026709636f6e73756d657207537461626c6509636f6e73756d65720000")


KAFKA_CGD_V0 = bytes.fromhex(
    "000000000200000002670c5265636f6e63696c696e67000000040000000408756e69666f726d02036d310000000000030263032f"
    "6802076f726465727300020102030405060708090a0b0c0d0e0f10076f72646572730300000000000000010000010000800000"
    "000000"
)


BOTH = GroupApis(True, True)


CLASSIC = GroupApis(False, False)


# The probe's wiring, on a fake aiokafka client that answers with the bytes above.
KAFKA_4 = {15: (0, 6), 16: (0, 5), 69: (0, 1)}


KAFKA_3_6 = {15: (0, 5), 16: (0, 4)}


class FakeKafkaClient:
    def __init__(self, versions: dict[int, tuple[int, int]], listing: bytes, described: bytes) -> None:
        self.versions = versions
        self.answers = {
            16: ListGroupsResponse_v5.decode(listing),
            69: ConsumerGroupDescribeResponse_v0.decode(described),
        }
        self.cluster = SimpleNamespace(brokers=lambda: [SimpleNamespace(nodeId=1)])
        self.sent: list[tuple[int, Any]] = []

    async def _get_conn(self, node_id: int) -> Any:
        return SimpleNamespace(_versions=self.versions)

    async def send(self, node_id: int, request: Any) -> Any:
        built = request.prepare(self.versions)  # raises where the broker lacks the version, as aiokafka would
        self.sent.append((built.API_KEY, getattr(built, "group_ids", None)))
        return self.answers[built.API_KEY]


class RecordingAdmin(FakeAdmin):
    """Classic answers: every group Empty with no members, except those the classic call says are Dead."""

    def __init__(self, committed: dict[str, int], client: FakeKafkaClient, dead: set[str]) -> None:
        super().__init__(committed)
        self._client = client
        self.dead = dead
        self.calls: list[tuple[str, Any]] = []

    async def list_consumer_groups(self) -> list[tuple[Any, ...]]:
        self.calls.append(("ListGroups", None))
        return await super().list_consumer_groups()

    async def describe_consumer_groups(self, group_ids: list[str], group_coordinator_id: int | None = None) -> Any:
        self.calls.append(("DescribeGroups", sorted(group_ids)))
        rows: list[tuple[Any, ...]] = [
            (0, g, "Dead" if g in self.dead else "Empty", "" if g in self.dead else "consumer", "", [])
            for g in group_ids
        ]
        return [SimpleNamespace(groups=rows)]


LISTING = (
    i32(0)
    + i16(0)
    + carr(listed("v2", "consumer", "Stable", "consumer"), listed("v1", "consumer", "Empty", "classic"))
    + NO_TAGS
)


V2_DESCRIBED = cgd_response(
    described(
        0, "v2", "Stable", member("m1", assignment((TOPIC_ID, "orders", [0])), assignment((TOPIC_ID, "orders", [0])))
    )
)


async def measure(admin: RecordingAdmin, include: str | None, watched: str = "v1") -> dict[str, tuple[str, int]]:
    pattern = re.compile(include) if include else None
    snap = await LagProbe(admin, FakeConsumer(FakeLog()), watched, "orders", pattern, fetch_timeout_ms=200).measure()
    assert snap.errors == []
    return {name: (g.state, g.members) for name, g in snap.groups.items()}


def encoded(*topics: tuple[str, list[int]]) -> bytes:
    """A classic member's assignment as the consumer protocol encodes it."""
    data: bytes = ConsumerProtocolMemberAssignment(0, list(topics), b"").encode()
    return data
