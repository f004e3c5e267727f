"""One probe cycle over every selected consumer group, on clients the caller builds and passes in.

Per cycle, whatever the number of groups: one ListGroups per broker (none when no include pattern is
set, as only the watched group can then be measured; v5, which gives each group's type, where every
broker has it), one FindCoordinator v4 per 200 groups not seen before (cached), per coordinator and
200 groups one DescribeGroups for its classic groups and one ConsumerGroupDescribe for its KIP-848
groups (see groups.py), one OffsetFetch v8+ per coordinator and 200 groups (batch.py), at most
`concurrency` in flight on the admin client's one connection per broker, one Metadata request, one
ListOffsets(earliest) per broker, and the fetch rounds of fetch.py. A broker without FindCoordinator
v4 or OffsetFetch v8 (Kafka < 3.0) gets one of each per group instead.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment
from aiokafka.errors import (
    GroupCoordinatorNotAvailableError,
    GroupLoadInProgressError,
    KafkaError,
    NotCoordinatorForGroupError,
    for_code,
)
from aiokafka.protocol.admin import DescribeGroupsRequest_v3, DescribeGroupsResponse_v3

from streams.clients import FETCHER_WAKE_MS
from streams.lag.batch import BatchedRequests, chunks
from streams.lag.fetch import FirstRecordReader, ProbeConsumer
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
from streams.lag.members import Member, classic_members, consumer_members, member_lag
from streams.lag.model import FirstRecord, GroupLag, LagSnapshot, partition_lag, resume_position, select_groups
from streams.lag.outlook import Outlook, OutlookSettings
from streams.lag.scope import LagScope, lag_scope, stale_topics
from streams.settings import Settings

log = logging.getLogger(__name__)
T = TypeVar("T")
# A group coordinator that is not there yet (a cluster or group just created) says nothing about whether
# OffsetFetch without partitions works: ask again next cycle.
_COORDINATOR_NOT_READY = (GroupCoordinatorNotAvailableError, GroupLoadInProgressError, NotCoordinatorForGroupError)

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


def build_clients(
    bootstrap_servers: str, client_kwargs: dict[str, Any]
) -> tuple[AIOKafkaAdminClient, AIOKafkaConsumer]:
    """The real clients: an admin client and a group-less read_committed consumer that fetches small."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, **client_kwargs)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap_servers,
        enable_auto_commit=False,
        isolation_level="read_committed",  # skips aborted records and gives the LSO
        auto_offset_reset="earliest",  # a position below the log start resumes at it, as the group would
        max_partition_fetch_bytes=64 * 1024,  # only the first record matters; larger batches come alone
        fetch_max_bytes=16 * 1024 * 1024,
        fetch_max_wait_ms=50,  # caught-up partitions answer empty quickly
        consumer_timeout_ms=FETCHER_WAKE_MS,  # paused between measurements: nothing to wake for
        **client_kwargs,
    )
    return admin, consumer


@dataclass
class _Group:
    state: str = "Dead"
    members: int = 0
    assigned_topics: frozenset[str] = frozenset()
    offsets: dict[TopicPartition, int] | None = None  # committed offsets; None: they could not be read
    owners: tuple[Member, ...] | None = None  # who owns what; None: not known (streams/lag/scope.py)


class LagProbe:
    def __init__(
        self,
        admin: ProbeAdmin,
        consumer: ProbeConsumer,
        watched_group: str,
        watched_topic: str,
        include: re.Pattern[str] | None = None,
        ignore: re.Pattern[str] | None = None,
        fetch_timeout_ms: int = 2000,
        concurrency: int = 32,
        outlook: Outlook | None = None,
        scope: LagScope | None = None,
    ) -> None:
        self._admin = admin
        self._consumer = consumer
        self.watched_group = watched_group
        self.watched_topic = watched_topic
        # Without an include pattern only the watched group is measured: no ListGroups round is needed.
        self._only_watched = include is None
        self.include = include or re.compile(re.escape(watched_group))
        self.ignore = ignore
        self.fetch_timeout_ms = fetch_timeout_ms
        self.scope = scope or LagScope()
        self._limit = asyncio.Semaphore(concurrency)
        self._batched = BatchedRequests(admin, self._bounded)  # many groups per request where brokers allow
        self._coordinators: dict[str, int] = {}
        self._listed: dict[str, ListedGroup] = {}  # this cycle's listing: each group's type, when known
        self._offsets_for_all: bool | None = None  # can OffsetFetch list a group's offsets without partitions?
        # (partition, position) -> first record at or after it: a slow fetch does not lose a known age.
        self._first_cache: dict[tuple[TopicPartition, int], FirstRecord] = {}
        self.outlook = outlook or Outlook()

    @property
    def client(self) -> Any:
        """The consumer's connection to the cluster, also used to check that the brokers answer."""
        return getattr(self._consumer, "_client", None)

    async def start(self) -> None:
        await self._admin.start()
        await self._consumer.start()

    async def stop(self) -> None:
        await self._consumer.stop()
        await self._admin.close()

    async def measure(self) -> LagSnapshot:
        started = time.monotonic()
        phases: dict[str, float] = {}

        def lap(name: str) -> None:
            phases[name] = time.monotonic() - started - sum(phases.values())

        errors: list[str] = []
        names = await self._group_names()
        groups = {name: _Group() for name in names}
        await self._coordinate(names, errors)
        lap("list_and_coordinators")
        await self._describe(groups, errors)
        lap("describe")
        await self._read_offsets(groups, errors)
        lap("offsets")
        stale_of = {name: self._stale(name, g) for name, g in groups.items()}
        topics_of = {name: self._topics(name, g, stale_of[name]) for name, g in groups.items()}
        partitions = await self._partitions(set().union(*topics_of.values()))
        tps = sorted({tp for ts in topics_of.values() for t in ts for tp in partitions.get(t, [])})
        # Assigned first: the consumer then asks metadata for every topic in one request, where
        # ListOffsets on unknown topics would learn them one retry (100 ms) at a time.
        self._consumer.assign(tps)
        starts = await self._consumer.beginning_offsets(tps) if tps else {}
        lap("metadata_and_log_starts")
        positions: dict[TopicPartition, set[int]] = {}
        for name, g in groups.items():
            for tp in (tp for t in topics_of[name] for tp in partitions.get(t, [])):
                positions.setdefault(tp, set()).add(resume_position((g.offsets or {}).get(tp), starts[tp]))
        known = {k: f for k, f in self._first_cache.items() if k[0] in positions and k[1] in positions[k[0]]}
        deadline = time.monotonic() + self.fetch_timeout_ms / 1000
        fetched = await FirstRecordReader(self._consumer).read(positions, known, deadline)
        lap("fetch")
        now_ms = int(time.time() * 1000)
        self._first_cache = {
            k: f
            for k, f in fetched.first.items()
            if isinstance(f, FirstRecord) and k[0] in fetched.ends and f.offset < fetched.ends[k[0]]
        }
        result: dict[str, GroupLag] = {}
        for name, g in groups.items():
            if g.offsets is None:
                continue  # reported in errors; a guess would be worse than a gap
            parts = []
            for tp in (tp for t in sorted(topics_of[name]) for tp in partitions.get(t, [])):
                if tp not in fetched.ends:
                    errors.append(f"no end for {tp.topic}/{tp.partition}")
                    continue
                committed = g.offsets.get(tp)
                pos = resume_position(committed, starts[tp])
                first = fetched.first[(tp, pos)]
                parts.append(
                    partition_lag(tp.topic, tp.partition, committed, starts[tp], fetched.ends[tp], first, now_ms)
                )
            stale = stale_of[name]
            # A rebalancing classic group's members own nothing yet: no rows beat rows of 0.
            clients = self.scope.members and g.owners and g.state == "Stable"
            owned = member_lag(parts, g.owners or ()) if clients else ()
            n_stale = sum(1 for tp in g.offsets if tp.topic in stale)
            result[name] = GroupLag(name, g.state, g.members, tuple(parts), stale, n_stale, owned)
        for e in errors:
            log.warning("lag probe: %s", e)
        lap("compute")
        phases["fetch_rounds"] = fetched.rounds
        snapshot = LagSnapshot(result, self.watched_group, now_ms / 1000, time.monotonic() - started, errors, phases)
        offsets = {name: g.offsets for name, g in groups.items() if g.offsets is not None}
        await self.outlook.update(snapshot, self._admin, self._kafka(), offsets, starts, fetched.ends)
        return snapshot

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
        conn = await client._get_conn(node)
        versions = getattr(conn, "_versions", None)
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

    def _topics(self, name: str, g: _Group, stale: frozenset[str]) -> set[str]:
        topics = {tp.topic for tp in (g.offsets or {})} | set(g.assigned_topics)
        if name == self.watched_group:
            topics.add(self.watched_topic)
            return topics  # measured whole: see streams/lag/scope.py
        return self.scope.measured(topics, stale)

    def _stale(self, name: str, g: _Group) -> frozenset[str]:
        if name == self.watched_group or not g.offsets:
            return frozenset()
        committed = (tp.topic for tp in g.offsets if self.scope.selects(tp.topic))
        return stale_topics(g.state, g.members, committed, g.assigned_topics, g.owners is not None)

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

    async def _describe(self, groups: dict[str, _Group], errors: list[str]) -> None:
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
        self, node: int, names: list[str], groups: dict[str, _Group], errors: list[str], apis: GroupApis
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
                g.owners = classic_members(protocol_type, members)
        return recheck

    async def _describe_consumer(
        self, node: int, names: list[str], groups: dict[str, _Group], errors: list[str]
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

    async def _read_offsets(self, groups: dict[str, _Group], errors: list[str]) -> None:
        explicit: list[TopicPartition] | None = None
        if self._offsets_for_all is None:
            self._offsets_for_all = await self._answers_offsets_for_all([g for g in groups if g in self._coordinators])
        if not self._offsets_for_all:
            # The broker cannot list a group's offsets without partitions: name every partition there is.
            explicit = [tp for tps in (await self._partitions(None)).values() for tp in tps]
        selected = [tp for tp in explicit or () if self.scope.selects(tp.topic)]

        async def read(name: str) -> None:
            node = self._coordinators.get(name)
            try:
                raw = await self._bounded(
                    lambda: self._admin.list_consumer_group_offsets(
                        name,
                        group_coordinator_id=node,
                        # Filtered-out topics are not asked about, but for the watched group (measured whole).
                        partitions=explicit if explicit is None or name == self.watched_group else selected,
                    )
                )
            except KafkaError as exc:
                self._coordinators.pop(name, None)
                errors.append(f"OffsetFetch {name} failed: {exc!r}")
                return
            # -1 (no commit) comes back only for partitions named explicitly; no commit is no entry.
            groups[name].offsets = {tp: m.offset for tp, m in raw.items() if m is not None and m.offset >= 0}

        rest = list(groups)
        if explicit is None:
            got, rest = await self._batched.offsets(rest, self._coordinators, errors)
            for name, offsets in got.items():
                groups[name].offsets = offsets
        await asyncio.gather(*(read(name) for name in rest))

    async def _answers_offsets_for_all(self, coordinated: list[str]) -> bool | None:
        """Whether OffsetFetch without partitions works (Kafka >= 0.10.2); Tansu drops the connection.

        None (not known yet) while no group has a coordinator ready: a refusal cached from a cluster
        still starting would make every later cycle describe every topic of the cluster."""
        if not coordinated:
            return None
        group = coordinated[0]
        try:
            await self._admin.list_consumer_group_offsets(group, group_coordinator_id=self._coordinators[group])
            return True
        except _COORDINATOR_NOT_READY:
            return None
        except (KafkaError, ValueError) as exc:
            log.info("lag probe: OffsetFetch for all partitions refused (%r): naming partitions instead", exc)
            return False

    async def _partitions(self, topics: set[str] | None) -> dict[str, list[TopicPartition]]:
        """Partitions of `topics` (None: of every topic but the internal ones), from one Metadata request."""
        if topics is not None and not topics:
            return {}
        found: dict[str, list[TopicPartition]] = {}
        for t in await self._admin.describe_topics(sorted(topics) if topics is not None else None):
            if t["error_code"] == 0 and not t["is_internal"]:
                found[t["topic"]] = sorted(TopicPartition(t["topic"], p["partition"]) for p in t["partitions"])
        return found


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


def probe_from_settings(settings: Settings, probe_class: type[LagProbe] = LagProbe) -> LagProbe:
    """The sidecar's probe: real clients built here, outside the probe, from the validated settings."""
    s = settings
    admin, consumer = build_clients(s.bootstrap_servers, s.kafka.client_kwargs())
    return probe_class(
        admin,
        consumer,
        s.watch_group,
        s.raw_topic,
        include=re.compile(s.lag_groups) if s.lag_groups else None,
        ignore=re.compile(s.lag_groups_ignore) if s.lag_groups_ignore else None,
        fetch_timeout_ms=s.lag_fetch_timeout_ms,
        outlook=Outlook(
            OutlookSettings(s.lag_rate_window_seconds, s.lag_retention_refresh_seconds, s.lag_catch_up_cap_seconds)
        ),
        scope=lag_scope(s),
    )
