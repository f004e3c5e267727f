"""One probe cycle over every selected consumer group, on clients the caller builds and passes in.

Per cycle, whatever the number of groups: one ListGroups per broker (none when no include pattern is
set, as only the watched group can then be measured; v5, which gives each group's type, where every
broker has it), one FindCoordinator v4 per 200 groups not seen before (cached), per coordinator and
200 groups one DescribeGroups for its classic groups and one ConsumerGroupDescribe for its KIP-848
groups (see groups.py), one OffsetFetch v8+ per coordinator and 200 groups (batch.py), at most
`concurrency` in flight on the admin client's one connection per broker, one Metadata request, one
ListOffsets(earliest) per broker, and the fetch rounds of fetch.py. A broker without FindCoordinator
v4 or OffsetFetch v8 (Kafka < 3.0) gets one of each per group instead.

Listing and describing groups are in describe.py, committed offsets and partitions in offsets.py
(mixins of LagProbe); the cycle, and what it makes of their answers, is here.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from typing import Any

from aiokafka import TopicPartition

from streams.clients import build_clients
from streams.lag.batch import BatchedRequests
from streams.lag.describe import GroupDescriber, GroupFacts, ProbeAdmin
from streams.lag.fetch import FirstRecordReader, ProbeConsumer
from streams.lag.groups import ListedGroup
from streams.lag.members import member_lag
from streams.lag.model import FirstRecord, GroupLag, LagSnapshot, partition_lag, resume_position
from streams.lag.offsets import OffsetReader
from streams.lag.outlook import Outlook, OutlookSettings
from streams.lag.scope import LagScope, StaleMemory, lag_scope, remembered_stale
from streams.settings import Settings

__all__ = ["LagProbe", "ProbeAdmin", "build_clients", "probe_from_settings"]

log = logging.getLogger(__name__)


class LagProbe(GroupDescriber, OffsetReader):
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
        stale_memory: StaleMemory | None = None,
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
        # Each group's last stale judgement (scope.py): the cluster's, shared with the probes before this one.
        self._stale_of = stale_memory if stale_memory is not None else {}
        self._last: dict[str, GroupLag] = {}  # each group's last figures, kept while it cannot be read

    @property
    def client(self) -> Any:
        """The consumer's connection to the cluster, also used to check that the brokers answer."""
        return getattr(self._consumer, "_client", None)

    async def start(self) -> None:
        await self._admin.start()
        await self._consumer.start()

    async def stop(self) -> None:
        await self.outlook.close()
        await self._consumer.stop()
        await self._admin.close()

    async def measure(self) -> LagSnapshot:
        started = time.monotonic()
        phases: dict[str, float] = {}

        def lap(name: str) -> None:
            phases[name] = time.monotonic() - started - sum(phases.values())

        errors: list[str] = []
        names = await self._group_names()
        groups = {name: GroupFacts() for name in names}
        await self._coordinate(names, errors)
        lap("list_and_coordinators")
        await self._describe(groups, errors)
        lap("describe")
        await self._read_offsets(groups, errors)
        lap("offsets")
        stale_of = {name: self._stale(name, g) for name, g in groups.items()}
        self._stale_of.clear()  # in place: the memory is the cluster's, not this probe's
        self._stale_of.update(stale_of)
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
                # Reported in errors. Its last figures stay, as a down cluster's do: a coordinator that
                # moves or loads for a cycle should not break every graph and reset every alert's `for`.
                if name in self._last:
                    result[name] = self._last[name]
                continue
            before = {(p.topic, p.partition): p for p in self._last[name].partitions} if name in self._last else {}
            parts = []
            for tp in (tp for t in sorted(topics_of[name]) for tp in partitions.get(t, [])):
                if tp not in fetched.ends:
                    errors.append(f"no end for {tp.topic}/{tp.partition}")
                    if (tp.topic, tp.partition) in before:
                        parts.append(before[(tp.topic, tp.partition)])
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
            # Commits on filtered-out topics still count as commits (ConsumerGroupMembersNoCommits).
            n_filtered = sum(
                1 for tp in g.offsets if not self.scope.selects(tp.topic) and tp.topic not in topics_of[name]
            )
            result[name] = GroupLag(name, g.state, g.members, tuple(parts), stale, n_stale, owned, n_filtered)
        self._last = result
        for e in errors:
            log.warning("lag probe: %s", e)
        lap("compute")
        phases["fetch_rounds"] = fetched.rounds
        snapshot = LagSnapshot(result, self.watched_group, now_ms / 1000, time.monotonic() - started, errors, phases)
        offsets = {name: g.offsets for name, g in groups.items() if g.offsets is not None}
        await self.outlook.update(snapshot, self._admin, self._kafka(), offsets, starts, fetched.ends)
        return snapshot

    def _topics(self, name: str, g: GroupFacts, stale: frozenset[str]) -> set[str]:
        topics = {tp.topic for tp in (g.offsets or {})} | set(g.assigned_topics)
        if name == self.watched_group:
            topics.add(self.watched_topic)
            return topics  # measured whole: see streams/lag/scope.py
        return self.scope.measured(topics, stale)

    def _stale(self, name: str, g: GroupFacts) -> frozenset[str]:
        if name == self.watched_group:
            return frozenset()
        if g.offsets is None:
            return self._stale_of.get(name, frozenset())  # not read this cycle: nothing new to judge by
        committed = (tp.topic for tp in g.offsets if self.scope.selects(tp.topic))
        last = self._stale_of.get(name, frozenset())
        return remembered_stale(g.state, g.members, committed, g.assigned_topics, g.owners is not None, last)


def probe_from_settings(
    settings: Settings, probe_class: type[LagProbe] = LagProbe, stale_memory: StaleMemory | None = None
) -> LagProbe:
    """The sidecar's probe: real clients built here, outside the probe, from the validated settings;
    `stale_memory`: the cluster's stale judgements, kept across the probes built for it."""
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
        stale_memory=stale_memory,
    )
