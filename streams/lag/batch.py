"""Many groups per request: OffsetFetch v8/v9 (KIP-709) and FindCoordinator v4 (KIP-699).

Before these versions Kafka takes one group per OffsetFetch and one key per FindCoordinator, so a
probe of 2,000 groups sent 2,000 of each (aiokafka speaks neither newer version). Here one OffsetFetch
per coordinator carries up to `GROUPS_PER_REQUEST` groups and one FindCoordinator as many keys. The
chunk bounds the size of one answer, hence the time the event loop (which also serves /metrics)
spends decoding it, and lets the chunks of one coordinator travel concurrently (at most the probe's
`concurrency` requests in flight).

Negotiated per broker from the ApiVersions answer aiokafka keeps for each connection: a broker
without OffsetFetch v8 (Kafka < 3.0) or FindCoordinator v4 (Kafka < 3.0) gets the one-group calls,
exactly as before. A batched request that fails on the wire is not lost either: its groups go the
one-group way in the same cycle, and the next cycle tries batching again.

OffsetFetch here always asks for every committed offset of a group (topics null): a broker that cannot
(Tansu, detected by the probe) is asked one group at a time with the partitions named, as before.
The structs are checked byte for byte against Kafka 4.1.1's serializers (tests/unit/streams/lag/test_lag_batch.py).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from aiokafka import TopicPartition
from aiokafka.errors import KafkaError
from aiokafka.protocol.api import Request, RequestStruct, Response
from aiokafka.protocol.types import (
    Boolean,
    CompactArray,
    CompactString,
    Int8,
    Int16,
    Int32,
    Int64,
    Schema,
    TaggedFields,
)

log = logging.getLogger(__name__)

OFFSET_FETCH = 9
FIND_COORDINATOR = 10
# Large enough that 2,000 groups take 10 requests per coordinator; small enough that one answer of
# groups with a few hundred partitions each decodes in a few milliseconds.
GROUPS_PER_REQUEST = 200
# Errors that say the group lives elsewhere or is loading: its coordinator is looked up again.
_COORDINATOR_ERRORS = frozenset({14, 15, 16})  # COORDINATOR_LOAD_IN_PROGRESS, _NOT_AVAILABLE, NOT_COORDINATOR

_STR = CompactString("utf-8")
T = TypeVar("T")


class OffsetFetchResponse_v8(Response):  # type: ignore[misc]  # aiokafka ships no type hints
    API_KEY = OFFSET_FETCH
    API_VERSION = 8
    SCHEMA = Schema(
        ("throttle_time_ms", Int32),
        (
            "groups",
            CompactArray(
                ("group_id", _STR),
                (
                    "topics",
                    CompactArray(
                        ("name", _STR),
                        (
                            "partitions",
                            CompactArray(
                                ("partition_index", Int32),
                                ("committed_offset", Int64),
                                ("committed_leader_epoch", Int32),
                                ("metadata", _STR),
                                ("error_code", Int16),
                                ("tags", TaggedFields),
                            ),
                        ),
                        ("tags", TaggedFields),
                    ),
                ),
                ("error_code", Int16),
                ("tags", TaggedFields),
            ),
        ),
        ("tags", TaggedFields),
    )


class OffsetFetchResponse_v9(Response):  # type: ignore[misc]  # aiokafka ships no type hints
    API_KEY = OFFSET_FETCH
    API_VERSION = 9
    SCHEMA = OffsetFetchResponse_v8.SCHEMA  # v9 changed only the request


_TOPICS = CompactArray(("name", _STR), ("partition_indexes", CompactArray(Int32)), ("tags", TaggedFields))


class OffsetFetchRequest_v8(RequestStruct):  # type: ignore[misc]  # aiokafka ships no type hints
    FLEXIBLE_VERSION = True
    API_KEY = OFFSET_FETCH
    API_VERSION = 8
    RESPONSE_TYPE = OffsetFetchResponse_v8
    SCHEMA = Schema(
        ("groups", CompactArray(("group_id", _STR), ("topics", _TOPICS), ("tags", TaggedFields))),
        ("require_stable", Boolean),
        ("tags", TaggedFields),
    )


class OffsetFetchRequest_v9(RequestStruct):  # type: ignore[misc]  # aiokafka ships no type hints
    FLEXIBLE_VERSION = True
    API_KEY = OFFSET_FETCH
    API_VERSION = 9
    RESPONSE_TYPE = OffsetFetchResponse_v9
    SCHEMA = Schema(
        (
            "groups",
            CompactArray(
                ("group_id", _STR),
                ("member_id", _STR),  # null with epoch -1: an admin's read, not a member's (KIP-848)
                ("member_epoch", Int32),
                ("topics", _TOPICS),
                ("tags", TaggedFields),
            ),
        ),
        ("require_stable", Boolean),
        ("tags", TaggedFields),
    )


class OffsetFetchGroups(Request[OffsetFetchRequest_v8 | OffsetFetchRequest_v9]):  # type: ignore[misc]
    """Every committed offset of each group (topics null). Not require_stable: like the one-group call,
    an offset committed inside an open transaction is not waited for."""

    API_KEY = OFFSET_FETCH

    def __init__(self, group_ids: list[str]) -> None:
        self.group_ids = group_ids

    def build(
        self, request_struct_class: type[OffsetFetchRequest_v8 | OffsetFetchRequest_v9]
    ) -> OffsetFetchRequest_v8 | OffsetFetchRequest_v9:
        if request_struct_class.API_VERSION >= 9:
            return request_struct_class([(g, None, -1, None, {}) for g in self.group_ids], False, {})
        return request_struct_class([(g, None, {}) for g in self.group_ids], False, {})


class FindCoordinatorResponse_v4(Response):  # type: ignore[misc]  # aiokafka ships no type hints
    API_KEY = FIND_COORDINATOR
    API_VERSION = 4
    SCHEMA = Schema(
        ("throttle_time_ms", Int32),
        (
            "coordinators",
            CompactArray(
                ("key", _STR),
                ("node_id", Int32),
                ("host", _STR),
                ("port", Int32),
                ("error_code", Int16),
                ("error_message", _STR),
                ("tags", TaggedFields),
            ),
        ),
        ("tags", TaggedFields),
    )


class FindCoordinatorRequest_v4(RequestStruct):  # type: ignore[misc]  # aiokafka ships no type hints
    FLEXIBLE_VERSION = True
    API_KEY = FIND_COORDINATOR
    API_VERSION = 4
    RESPONSE_TYPE = FindCoordinatorResponse_v4
    SCHEMA = Schema(("key_type", Int8), ("coordinator_keys", CompactArray(_STR)), ("tags", TaggedFields))


class FindGroupCoordinators(Request[FindCoordinatorRequest_v4]):  # type: ignore[misc]
    API_KEY = FIND_COORDINATOR

    def __init__(self, group_ids: list[str]) -> None:
        self.group_ids = group_ids

    def build(self, request_struct_class: type[FindCoordinatorRequest_v4]) -> FindCoordinatorRequest_v4:
        return request_struct_class(0, self.group_ids, {})  # key type 0: consumer groups


async def node_versions(client: Any, node: int) -> Mapping[int, tuple[int, int]] | None:
    """The ApiVersions a broker answered on the client's connection to it (aiokafka 0.14 keeps them per
    connection and asks again when it reconnects); None when there is no connection or no answer kept."""
    conn = await client._get_conn(node)
    return getattr(conn, "_versions", None) if conn is not None else None


def supports(versions: Mapping[int, tuple[int, int]] | None, api_key: int, version: int) -> bool:
    low, high = (versions or {}).get(api_key, (0, -1))
    return low <= version <= high


def chunks(items: list[T], size: int = GROUPS_PER_REQUEST) -> Iterator[list[T]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


@dataclass(frozen=True)
class GroupOffsets:
    """One group's part of an OffsetFetch answer: committed offsets, or the error that replaced them."""

    offsets: dict[TopicPartition, int]
    error: str | None = None
    moved: bool = False  # the error says to look the coordinator up again


def group_offsets(response: Any) -> dict[str, GroupOffsets]:
    """A v8/v9 answer, per group. A partition error fails its whole group, as aiokafka's one-group call
    does: lag on a partial set of partitions would look like a group that committed less."""
    found: dict[str, GroupOffsets] = {}
    for group_id, topics, error_code, _tags in response.groups:
        if error_code:
            found[group_id] = GroupOffsets({}, f"error {error_code}", error_code in _COORDINATOR_ERRORS)
            continue
        offsets: dict[TopicPartition, int] = {}
        failed = None
        for name, partitions, _ in topics or []:
            for index, offset, _epoch, _metadata, code, _ in partitions or []:
                if code:
                    failed = failed or f"error {code} on {name}/{index}"
                elif offset >= 0:  # -1: no commit on a partition, the same as no entry
                    offsets[TopicPartition(name, index)] = offset
        found[group_id] = GroupOffsets({}, failed) if failed else GroupOffsets(offsets)
    return found


def coordinators_found(response: Any) -> dict[str, int | str]:
    """A FindCoordinator v4 answer: node id per group, or the error text."""
    return {
        key: (node if not code else f"error {code}{f' ({message})' if message else ''}")
        for key, node, _host, _port, code, message, _ in response.coordinators
    }


class BatchedRequests:
    """The many-group calls for a LagProbe, on its admin's aiokafka client. Each method takes the groups
    and returns those it could not handle, which the probe then asks about one at a time."""

    def __init__(self, admin: Any, bounded: Callable[[Callable[[], Any]], Any]) -> None:
        self._admin = admin
        self._bounded = bounded
        self.enabled = True  # off: the one-group calls only (the benchmark's baseline)

    def _client(self) -> Any:
        client = getattr(self._admin, "_client", None)
        return client if self.enabled and hasattr(client, "_get_conn") else None

    async def _versions(self, client: Any, node: int) -> Mapping[int, tuple[int, int]] | None:
        return await node_versions(client, node)

    async def coordinators(self, names: list[str], found: dict[str, int], errors: list[str]) -> list[str]:
        client = self._client()
        nodes = [b.nodeId for b in client.cluster.brokers()] if client is not None and names else []
        node = random.choice(nodes) if nodes else None  # any broker answers; aiokafka picks at random too
        if node is None or not supports(await self._versions(client, node), FIND_COORDINATOR, 4):
            return names
        rest: list[str] = []

        async def ask(part: list[str]) -> None:
            try:
                response = await self._bounded(lambda: client.send(node, FindGroupCoordinators(part)))
            except KafkaError as exc:
                log.info("lag probe: batched FindCoordinator failed (%r): one group at a time", exc)
                rest.extend(part)
                return
            answers = coordinators_found(response)
            for name in part:
                answer = answers.get(name, "no answer")
                if isinstance(answer, int):
                    found[name] = answer
                else:
                    errors.append(f"no coordinator for group {name}: {answer}")

        await asyncio.gather(*(ask(part) for part in chunks(names)))
        return rest

    async def offsets(
        self, names: Iterable[str], coordinators: dict[str, int], errors: list[str]
    ) -> tuple[dict[str, dict[TopicPartition, int]], list[str]]:
        """Committed offsets of the groups whose coordinator speaks v8+, and the groups left over."""
        client = self._client()
        if client is None:
            return {}, list(names)
        by_node: dict[int, list[str]] = {}
        rest: list[str] = []
        for name in names:
            node = coordinators.get(name)
            (rest if node is None else by_node.setdefault(node, [])).append(name)
        got: dict[str, dict[TopicPartition, int]] = {}

        async def ask(node: int, part: list[str]) -> None:
            try:
                response = await self._bounded(lambda: client.send(node, OffsetFetchGroups(part)))
            except KafkaError as exc:
                log.info("lag probe: batched OffsetFetch on node %s failed (%r): one group at a time", node, exc)
                rest.extend(part)
                return
            answers = group_offsets(response)
            for name in part:
                answer = answers.get(name, GroupOffsets({}, "no answer"))
                if answer.error is None:
                    got[name] = answer.offsets
                    continue
                if answer.moved:
                    coordinators.pop(name, None)
                errors.append(f"OffsetFetch {name} failed: {answer.error}")

        asks = []
        for node, node_names in by_node.items():
            if supports(await self._versions(client, node), OFFSET_FETCH, 8):
                asks += [ask(node, part) for part in chunks(node_names)]
            else:
                rest += node_names
        await asyncio.gather(*asks)
        return got, rest
