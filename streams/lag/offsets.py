"""Committed offsets and partitions for the lag probe: OffsetFetch (batched per coordinator where the
broker has v8, see batch.py; per group otherwise, naming every partition where the broker cannot list
a group's offsets without them) and Metadata. A mixin of LagProbe (probe.py), which owns the state."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka import TopicPartition
from aiokafka.errors import (
    GroupCoordinatorNotAvailableError,
    GroupLoadInProgressError,
    KafkaError,
    NotCoordinatorForGroupError,
)

from streams.lag.batch import BatchedRequests
from streams.lag.describe import GroupFacts, ProbeAdmin
from streams.lag.scope import LagScope

log = logging.getLogger(__name__)
# A group coordinator that is not there yet (a cluster or group just created) says nothing about whether
# OffsetFetch without partitions works: ask again next cycle.
_COORDINATOR_NOT_READY = (GroupCoordinatorNotAvailableError, GroupLoadInProgressError, NotCoordinatorForGroupError)


class OffsetReader:
    """Fills GroupFacts.offsets; the attributes are LagProbe's."""

    _admin: ProbeAdmin
    _batched: BatchedRequests
    _coordinators: dict[str, int]
    _offsets_for_all: bool | None
    scope: LagScope
    watched_group: str
    _bounded: Callable[[Callable[[], Awaitable[Any]]], Awaitable[Any]]

    async def _read_offsets(self, groups: dict[str, GroupFacts], errors: list[str]) -> None:
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
