"""Consumer groups of both protocols, as the lag probe lists and describes them: wire structs and parsing.

Since KIP-848 (Apache Kafka 4.0 GA) a group is one of several types. The classic DescribeGroups call only
knows classic groups: asked about a `group.protocol=consumer` group it answers `Dead` with no members,
while the group has both. So the probe
- lists groups with ListGroups v5, whose answer carries each group's type and state;
- describes `consumer` groups with ConsumerGroupDescribe (API key 69) and the others as before;
- when it does not know a group's type (no include pattern, so no listing; or a broker without
  ListGroups v5), asks ConsumerGroupDescribe about the groups the classic call said were `Dead`;
- keeps the broker's own state names: classic `Stable`, `Empty`, `PreparingRebalance`,
  `CompletingRebalance`, `Dead`; consumer `Stable`, `Empty`, `Assigning`, `Reconciling`, `Dead`.
Share groups (KIP-932) are ignored on purpose, whichever listing shows them: they commit no consumer
offsets (their progress is share-partition state, read with other calls), so the consumer lag measured
here does not apply to them. Groups of a type with no describe call spoken here (`streams`, KIP-1071)
keep the listed state, 0 members and their committed offsets.

Fallback: a broker whose ApiVersions lacks ListGroups v5 or API 69 (Kafka 3.6.2 here: ListGroups up to
v4, no 69) gets exactly the classic calls. aiokafka 0.14 keeps each connection's ApiVersions answer;
`group_apis` reads it. Tansu 0.6.0 advertises both but lists every group as `classic`, so its groups get
the classic call too; its ConsumerGroupDescribe answers a classic group with no error and no members,
which is why a group listed as classic is never asked with API 69. aiokafka has neither a Uuid type nor
these two calls: the structs are defined here, checked byte for byte against Kafka 4.1.1's serializers.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from aiokafka.protocol.api import Request, RequestStruct, Response
from aiokafka.protocol.types import (
    Boolean,
    CompactArray,
    CompactString,
    Int16,
    Int32,
    Schema,
    TaggedFields,
)

from core.kafka_wire import Uuid

LIST_GROUPS = 16
CONSUMER_GROUP_DESCRIBE = 69
GROUP_ID_NOT_FOUND = 69  # the error code ConsumerGroupDescribe gives for a group that is not a consumer group
SHARE = "share"  # KIP-932 share groups: type and protocol type alike


_STR = CompactString("utf-8")


class ListGroupsResponse_v5(Response):  # type: ignore[misc]  # aiokafka ships no type hints
    API_KEY = LIST_GROUPS
    API_VERSION = 5
    SCHEMA = Schema(
        ("throttle_time_ms", Int32),
        ("error_code", Int16),
        (
            "groups",
            CompactArray(
                ("group_id", _STR),
                ("protocol_type", _STR),
                ("group_state", _STR),
                ("group_type", _STR),
                ("tags", TaggedFields),
            ),
        ),
        ("tags", TaggedFields),
    )


class ListGroupsRequest_v5(RequestStruct):  # type: ignore[misc]  # aiokafka ships no type hints
    FLEXIBLE_VERSION = True  # v3+: request header v2 and response header v1, both with tagged fields
    API_KEY = LIST_GROUPS
    API_VERSION = 5
    RESPONSE_TYPE = ListGroupsResponse_v5
    SCHEMA = Schema(
        ("states_filter", CompactArray(_STR)),
        ("types_filter", CompactArray(_STR)),
        ("tags", TaggedFields),
    )


_ASSIGNMENT = Schema(
    (
        "topic_partitions",
        CompactArray(
            ("topic_id", Uuid),
            ("topic_name", _STR),
            ("partitions", CompactArray(Int32)),
            ("tags", TaggedFields),
        ),
    ),
    ("tags", TaggedFields),
)


class ConsumerGroupDescribeResponse_v0(Response):  # type: ignore[misc]  # aiokafka ships no type hints
    API_KEY = CONSUMER_GROUP_DESCRIBE
    API_VERSION = 0
    SCHEMA = Schema(
        ("throttle_time_ms", Int32),
        (
            "groups",
            CompactArray(
                ("error_code", Int16),
                ("error_message", _STR),
                ("group_id", _STR),
                ("group_state", _STR),
                ("group_epoch", Int32),
                ("assignment_epoch", Int32),
                ("assignor_name", _STR),
                (
                    "members",
                    CompactArray(
                        ("member_id", _STR),
                        ("instance_id", _STR),
                        ("rack_id", _STR),
                        ("member_epoch", Int32),
                        ("client_id", _STR),
                        ("client_host", _STR),
                        ("subscribed_topic_names", CompactArray(_STR)),
                        ("subscribed_topic_regex", _STR),
                        ("assignment", _ASSIGNMENT),
                        ("target_assignment", _ASSIGNMENT),
                        ("tags", TaggedFields),
                    ),
                ),
                ("authorized_operations", Int32),
                ("tags", TaggedFields),
            ),
        ),
        ("tags", TaggedFields),
    )


class ConsumerGroupDescribeRequest_v0(RequestStruct):  # type: ignore[misc]  # aiokafka ships no type hints
    FLEXIBLE_VERSION = True  # flexible from v0
    API_KEY = CONSUMER_GROUP_DESCRIBE
    API_VERSION = 0
    RESPONSE_TYPE = ConsumerGroupDescribeResponse_v0
    SCHEMA = Schema(
        ("group_ids", CompactArray(_STR)),
        ("include_authorized_operations", Boolean),
        ("tags", TaggedFields),
    )


class ListGroupsTyped(Request[ListGroupsRequest_v5]):  # type: ignore[misc]  # aiokafka ships no type hints
    """ListGroups asking for every state and type (empty filters), so each group comes with both."""

    API_KEY = LIST_GROUPS

    def build(self, request_struct_class: type[ListGroupsRequest_v5]) -> ListGroupsRequest_v5:
        return request_struct_class([], [], {})


class ConsumerGroupDescribe(Request[ConsumerGroupDescribeRequest_v0]):  # type: ignore[misc]  # aiokafka ships no type hints
    API_KEY = CONSUMER_GROUP_DESCRIBE

    def __init__(self, group_ids: list[str]) -> None:
        self.group_ids = group_ids

    def build(self, request_struct_class: type[ConsumerGroupDescribeRequest_v0]) -> ConsumerGroupDescribeRequest_v0:
        return request_struct_class(self.group_ids, False, {})


@dataclass(frozen=True)
class GroupApis:
    """What one broker can answer, from its ApiVersions."""

    typed_listing: bool  # ListGroups v5: every group's type and state
    consumer_describe: bool  # ConsumerGroupDescribe v0


def group_apis(versions: Mapping[int, tuple[int, int]]) -> GroupApis:
    def supports(api_key: int, version: int) -> bool:
        low, high = versions.get(api_key, (0, -1))
        return low <= version <= high

    return GroupApis(supports(LIST_GROUPS, 5), supports(CONSUMER_GROUP_DESCRIBE, 0))


@dataclass(frozen=True)
class ListedGroup:
    name: str
    protocol_type: str
    state: str | None = None  # None: listed by a version without states
    type: str | None = None  # "classic", "consumer", "share", "streams"; None: listed without types


def listed_typed(response: Any) -> list[ListedGroup]:
    """The groups of a ListGroups v5 answer."""
    return [ListedGroup(g[0], g[1] or "", g[2] or None, g[3] or None) for g in response.groups]


def listed_classic(rows: Iterable[tuple[Any, ...]]) -> list[ListedGroup]:
    """The (group, protocol type) rows of aiokafka's list_consumer_groups: no state, no type."""
    return [ListedGroup(str(r[0]), str(r[1] or "")) for r in rows]


def measurable(listed: Iterable[ListedGroup]) -> list[ListedGroup]:
    """Drops share groups: no committed offsets, so no consumer lag (a classic listing shows them by
    protocol type only)."""
    return [g for g in listed if g.type != SHARE and g.protocol_type != SHARE]


def describe_call(group: ListedGroup | None, apis: GroupApis) -> str:
    """Which call describes a group: "consumer" (API 69), "classic" (DescribeGroups) or "listing"
    (nothing to ask: keep what ListGroups said)."""
    kind = group.type if group is not None else None
    if kind == "consumer" and apis.consumer_describe:
        return "consumer"
    if kind in (None, "classic", "consumer"):
        return "classic"
    return "listing"


def recheck_as_consumer(group: ListedGroup | None, error_code: int, state: str | None, apis: GroupApis) -> bool:
    """Whether a classic DescribeGroups answer may hide a consumer-protocol group: Kafka 4 answers
    `Dead` (or GROUP_ID_NOT_FOUND from DescribeGroups v6) for them. Only asked when the type is unknown."""
    if not apis.consumer_describe or (group is not None and group.type is not None):
        return False
    return error_code == GROUP_ID_NOT_FOUND or (error_code == 0 and state == "Dead")


@dataclass(frozen=True)
class DescribedGroup:
    name: str
    error_code: int
    state: str
    members: int
    assigned_topics: frozenset[str]


def described_consumer_groups(response: Any) -> list[DescribedGroup]:
    """The groups of a ConsumerGroupDescribe answer, with the topics their members own or are about to.

    The target assignment counts too: while a group is Assigning or Reconciling a partition leaves one
    member's assignment before it is in the next one's, and its topic must stay measured meanwhile."""
    found = []
    for g in response.groups:
        error_code, _message, name, state, _epoch, _assignment_epoch, _assignor, members = g[:8]
        topics = {
            topic
            for m in members or []
            for assignment in (m[8], m[9])
            for _id, topic, *_ in assignment[0] or []
            if topic
        }
        found.append(DescribedGroup(name, error_code, state or "Unknown", len(members or []), frozenset(topics)))
    return found
