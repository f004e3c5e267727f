"""Listing and describing consumer groups for the lag probe: ListGroups, FindCoordinator (batched, see
batch.py), DescribeGroups for classic groups and ConsumerGroupDescribe for KIP-848 ones (groups.py),
at most `concurrency` requests in flight. A mixin of LagProbe (probe.py), which owns the state."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from aiokafka import TopicPartition
from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment
from aiokafka.errors import KafkaError, for_code
from aiokafka.protocol.admin import DescribeGroupsRequest_v3, DescribeGroupsResponse_v3

from streams.lag.batch import BatchedRequests, chunks, node_versions
from streams.lag.groups import (
    GROUP_ID_NOT_FOUND,
    ConsumerGroupDescribe,
    GroupApis,
    ListedGroup,
    ListGroupsTyped,
    describe_call,
    described_consumer_groups,
    group_apis,
    listed_classic,
    listed_typed,
    measurable,
    recheck_as_consumer,
)
from streams.lag.members import Member, classic_members, consumer_members
from streams.lag.model import select_groups

T = TypeVar("T")

# aiokafka 0.14 pairs DescribeGroups v3 requests with the v2 response schema, which lacks v3's
# authorized_operations, so every answer from Kafka >= 2.3 fails to decode. Pair it with v3's.
if DescribeGroupsRequest_v3.RESPONSE_TYPE is not DescribeGroupsResponse_v3:
    DescribeGroupsRequest_v3.RESPONSE_TYPE = DescribeGroupsResponse_v3
_CLASSIC_ONLY = GroupApis(typed_listing=False, consumer_describe=False)


class ProbeAdmin(Protocol):
    """The slice of AIOKafkaAdminClient the probe uses."""

    async def start(self) -> None: ...
    async def close(self) -> None: ...
    async def list_consumer_groups(self) -> list[tuple[Any, ...]]: ...
    async def find_coordinator(self, group_id: str) -> int: ...
    async def describe_consumer_groups(self, group_ids: list[str], group_coordinator_id: int | None = None) -> Any: ...
    async def list_consumer_group_offsets(
        self, group_id: str, group_coordinator_id: int | None = None, partitions: list[TopicPartition] | None = None
    ) -> dict[TopicPartition, Any]: ...
    async def describe_topics(self, topics: list[str] | None = None) -> list[Any]: ...


@dataclass
class GroupFacts:
    """What one cycle learns about a group, before its lag is computed."""

    state: str = "Dead"
    members: int = 0
    assigned_topics: frozenset[str] = frozenset()
    offsets: dict[TopicPartition, int] | None = None  # committed offsets; None: they could not be read
    owners: tuple[Member, ...] | None = None  # who owns what; None: not known (streams/lag/scope.py)


class GroupDescriber:
    """Fills GroupFacts from the listing and describe calls; the attributes are LagProbe's."""

    _admin: ProbeAdmin
    _limit: asyncio.Semaphore
    _batched: BatchedRequests
    _coordinators: dict[str, int]
    _listed: dict[str, ListedGroup]
    _only_watched: bool
    watched_group: str
    include: re.Pattern[str]
    ignore: re.Pattern[str] | None

    async def _group_names(self) -> list[str]:
        self._listed = {}
        if self._only_watched:
            return [self.watched_group]  # what select_groups would keep of any listing
        listed = measurable(await self._list_groups())
        self._listed = {g.name: g for g in listed}
        return select_groups((g.name for g in listed), self.include, self.ignore, self.watched_group)

    def _kafka(self) -> Any:
        """The admin's aiokafka client, for the calls aiokafka does not have; None for other admins."""
        return getattr(self._admin, "_client", None)

    async def _apis(self, node: int) -> GroupApis:
        client = self._kafka()
        if client is None or not hasattr(client, "_get_conn"):
            return _CLASSIC_ONLY  # not aiokafka 0.14's client: the classic calls, as before
        # aiokafka 0.14 keeps the ApiVersions answer of each connection, refreshed when it reconnects.
        versions = await node_versions(client, node)
        return group_apis(versions) if versions else _CLASSIC_ONLY

    async def _list_groups(self) -> list[ListedGroup]:
        """ListGroups v5 (types and states) when every broker has it, else aiokafka's classic listing."""
        client = self._kafka()
        nodes = sorted(b.nodeId for b in client.cluster.brokers()) if client is not None else []
        apis = [await self._apis(node) for node in nodes]
        if not nodes or not all(a.typed_listing for a in apis):
            return listed_classic(await self._admin.list_consumer_groups())
        found: dict[str, ListedGroup] = {}
        for response in await asyncio.gather(*(client.send(node, ListGroupsTyped()) for node in nodes)):
            if response.error_code:
                raise for_code(response.error_code)("Error listing consumer groups")
            found.update((g.name, g) for g in listed_typed(response))
        return list(found.values())

    async def _bounded(self, work: Callable[[], Awaitable[T]]) -> T:
        async with self._limit:
            return await work()

    async def _coordinate(self, names: Iterable[str], errors: list[str]) -> None:
        missing = [n for n in names if n not in self._coordinators]
        missing = await self._batched.coordinators(missing, self._coordinators, errors)

        async def find(name: str) -> None:
            try:
                self._coordinators[name] = await self._bounded(lambda: self._admin.find_coordinator(name))
            except KafkaError as exc:
                errors.append(f"no coordinator for group {name}: {exc!r}")

        await asyncio.gather(*(find(n) for n in missing))

    async def _describe(self, groups: dict[str, GroupFacts], errors: list[str]) -> None:
        by_node: dict[int, list[str]] = {}
        for name in groups:
            if name in self._coordinators:
                by_node.setdefault(self._coordinators[name], []).append(name)

        async def describe(node: int, names: list[str]) -> None:
            apis = await self._apis(node)
            call = {name: describe_call(self._listed.get(name), apis) for name in names}
            for name in (n for n in names if call[n] == "listing"):
                groups[name].state = self._listed[name].state or "Unknown"  # a type with no describe here
            modern = [n for n in names if call[n] == "consumer"]
            classic = [n for n in names if call[n] == "classic"]
            if classic:
                modern += await self._describe_classic(node, classic, groups, errors, apis)
            if modern:
                await self._describe_consumer(node, modern, groups, errors)

        # Per coordinator, one request per 200 groups: no single answer holds the event loop (and /metrics) long.
        await asyncio.gather(*(describe(node, part) for node, names in by_node.items() for part in chunks(names)))

    async def _describe_classic(
        self, node: int, names: list[str], groups: dict[str, GroupFacts], errors: list[str], apis: GroupApis
    ) -> list[str]:
        """DescribeGroups; returns the groups of unknown type it may not know (see recheck_as_consumer)."""
        recheck: list[str] = []
        try:
            responses = await self._admin.describe_consumer_groups(names, group_coordinator_id=node)
        except KafkaError as exc:
            errors.append(f"DescribeGroups on node {node} failed: {exc!r}")
            return recheck
        for response in responses:
            for error_code, name, state, protocol_type, _protocol, members, *_ in response.groups:
                if recheck_as_consumer(self._listed.get(name), error_code, state, apis):
                    recheck.append(name)  # stays Dead unless ConsumerGroupDescribe knows it
                    continue
                if error_code:
                    self._coordinators.pop(name, None)  # moved, or loading: ask again next cycle
                    errors.append(f"DescribeGroups {name}: error {error_code}")
                    continue
                g = groups[name]
                g.state, g.members = state or "Unknown", len(members)
                g.assigned_topics = _assigned_topics(protocol_type, members)
                g.owners = classic_members(protocol_type, members, g.state)
        return recheck

    async def _describe_consumer(
        self, node: int, names: list[str], groups: dict[str, GroupFacts], errors: list[str]
    ) -> None:
        try:
            response = await self._kafka().send(node, ConsumerGroupDescribe(names))
        except KafkaError as exc:
            errors.append(f"ConsumerGroupDescribe on node {node} failed: {exc!r}")
            return
        owners = consumer_members(response)
        for d in described_consumer_groups(response):
            if d.name not in groups or d.error_code == GROUP_ID_NOT_FOUND:
                continue  # deleted since listed, or no consumer group either: Dead, as the classic call says
            if d.error_code:
                self._coordinators.pop(d.name, None)
                errors.append(f"ConsumerGroupDescribe {d.name}: error {d.error_code}")
                continue
            g = groups[d.name]
            g.state, g.members, g.assigned_topics = d.state, d.members, d.assigned_topics
            g.owners = owners.get(d.name)


def _assigned_topics(protocol_type: str, members: list[Any]) -> frozenset[str]:
    """Topics the group's members are assigned, so a group with members but no commit is measured."""
    if protocol_type != "consumer":
        return frozenset()
    topics: set[str] = set()
    for member in members:
        assignment = member[4]
        if not assignment:
            continue
        try:
            decoded = ConsumerProtocolMemberAssignment.decode(assignment)
        except Exception:  # a client's own assignor may encode differently; its commits still count
            continue
        topics.update(topic for topic, _ in decoded.assignment)
    return frozenset(topics)
