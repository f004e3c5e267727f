"""Topic configs and partition sizes for the retention margin, read off the probe cycle's critical path.

One DescribeConfigs for all topics due (never described, or described STREAMS_LAG_RETENTION_REFRESH_SECONDS
ago) and, for topics with retention.bytes, one DescribeLogDirs per broker. The cycle waits for them at
most `wait_s`; a slower answer lands in the caches for the next cycle, and a read never lasts longer
than `timeout_s`. A topic counts as asked when the request is sent, answered or not, so a failing or
slow broker costs one attempt per refresh interval, not one per cycle; after consecutive failures the
interval doubles (up to 16 intervals): Tansu, which advertises DescribeConfigs but answers it with bytes
no client decodes (closing the admin connection), is then asked a few times an hour at most. A broker
that advertises no DescribeConfigs, or no DescribeLogDirs v1, is not asked for them at all.

A partial DescribeLogDirs answer (a broker down) updates the sizes it has and keeps the others:
replacing them with nothing would remove every size-based margin for a whole interval.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Iterable, Mapping
from typing import Any

from aiokafka import TopicPartition

from streams.lag.batch import node_versions
from streams.lag.retention import (
    DESCRIBE_CONFIGS,
    DESCRIBE_LOG_DIRS,
    DescribeLogDirs,
    TopicRetention,
    config_resources,
    parse_configs,
    partition_sizes,
    record_bytes,
    refused_topics,
)

log = logging.getLogger(__name__)
_MAX_BACKOFF = 16  # refresh intervals


class RetentionReader:
    def __init__(self, refresh_s: float, wait_s: float = 0.5, timeout_s: float = 10.0) -> None:
        self.refresh_s = refresh_s
        self.wait_s = wait_s
        self.timeout_s = timeout_s
        self.retention: dict[str, TopicRetention] = {}
        self.record_bytes: dict[TopicPartition, float] = {}
        self._asked_at: dict[str, float] = {}
        self._failures = 0
        self._task: asyncio.Task[None] | None = None
        self._refusal_logged = False

    def keep_only(self, topics: set[str]) -> None:
        """Forgets topics no longer measured (deleted, filtered out, or no group commits there)."""
        for cache in (self._asked_at, self.retention):
            for t in [t for t in cache if t not in topics]:
                del cache[t]
        for tp in [tp for tp in self.record_bytes if tp.topic not in topics]:
            del self.record_bytes[tp]

    def due(self, topics: Iterable[str], now: float) -> set[str]:
        every = self._backoff()
        return {t for t in topics if now - self._asked_at.get(t, -math.inf) >= every}

    async def refresh(
        self,
        admin: Any,
        kafka: Any,
        topics: set[str],
        starts: Mapping[TopicPartition, int],
        ends: Mapping[TopicPartition, int],
        now: float,
    ) -> None:
        """Starts a read of what is due (unless one still runs) and waits for it at most `wait_s`."""
        if self._task is None or self._task.done():
            due = self.due(topics, now)
            if not due or getattr(admin, "describe_configs", None) is None:
                return
            for t in due:
                self._asked_at[t] = now
            self._task = asyncio.create_task(self._bounded(admin, kafka, due, dict(starts), dict(ends)))
        # asyncio.wait does not cancel on timeout: a slow read goes on and serves the next cycle.
        await asyncio.wait({self._task}, timeout=self.wait_s)

    async def close(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _bounded(
        self,
        admin: Any,
        kafka: Any,
        due: set[str],
        starts: Mapping[TopicPartition, int],
        ends: Mapping[TopicPartition, int],
    ) -> None:
        try:
            await asyncio.wait_for(self._read(admin, kafka, due, starts, ends), self.timeout_s)
            self._failures = 0
        except Exception as exc:  # a background task: whatever failed, the lag figures are unaffected
            self._failures += 1
            # Logged once per run of failures; margins of topics not described yet are only missing.
            level = logging.WARNING if self._failures == 1 else logging.DEBUG
            log.log(level, "lag probe: retention not read (asked again in %.0f s): %r", self._backoff(), exc)

    def _backoff(self) -> float:
        return self.refresh_s * min(_MAX_BACKOFF, 1 << max(0, self._failures - 1))

    async def _read(
        self,
        admin: Any,
        kafka: Any,
        due: set[str],
        starts: Mapping[TopicPartition, int],
        ends: Mapping[TopicPartition, int],
    ) -> None:
        # aiokafka's admin speaks DescribeConfigs v0-v2; Kafka 4 answers v1 and up (KIP-896 removed v0).
        if kafka is not None and not await _advertises(kafka, DESCRIBE_CONFIGS, 0, 2):
            return  # asked again at the next refresh, in case a broker upgraded meanwhile
        answers = await admin.describe_configs(config_resources(due))
        found = parse_configs(answers)
        refused = refused_topics(answers)
        if refused and not self._refusal_logged:
            self._refusal_logged = True
            log.warning(
                "lag probe: DescribeConfigs refused for %d topic(s), e.g. %s: no retention margin for them "
                "(the probe's principal needs DescribeConfigs on those topics; docs/lag.md)",
                len(refused),
                sorted(refused)[0],
            )
        for t in due:
            self.retention.pop(t, None)
        self.retention.update(found)
        sized = [tp for tp in ends if tp.topic in found and found[tp.topic].retention_bytes is not None]
        unsized = due - {tp.topic for tp in sized}
        for tp in [tp for tp in self.record_bytes if tp.topic in unsized]:
            del self.record_bytes[tp]
        if not sized or kafka is None or not await _advertises(kafka, DESCRIBE_LOG_DIRS, 1, 1):
            return
        nodes = sorted(b.nodeId for b in kafka.cluster.brokers())
        answered = await asyncio.gather(*(kafka.send(n, DescribeLogDirs(sized)) for n in nodes), return_exceptions=True)
        sizes = partition_sizes(a for a in answered if not isinstance(a, BaseException))
        complete = not any(isinstance(a, BaseException) for a in answered)
        for tp in sized:
            average = record_bytes(sizes.get(tp), starts.get(tp, 0), ends[tp])
            if average is not None:
                self.record_bytes[tp] = average
            elif complete:
                self.record_bytes.pop(tp, None)
        if not complete:
            failed = [a for a in answered if isinstance(a, BaseException)]
            log.info("lag probe: DescribeLogDirs failed on %d broker(s), sizes kept: %r", len(failed), failed[0])


async def _advertises(kafka: Any, api_key: int, lowest: int, highest: int) -> bool:
    """Whether the brokers advertise a version of the API between `lowest` and `highest`, the versions this
    side speaks (aiokafka 0.14 keeps each connection's
    ApiVersions; the first connected broker speaks for the cluster); a client without them (tests'
    fakes) is assumed to."""
    if not hasattr(kafka, "_get_conn"):
        return True
    for b in kafka.cluster.brokers():
        versions = await node_versions(kafka, b.nodeId)
        if versions is not None:
            low, high = versions.get(api_key, (0, -1))
            return bool(low <= highest and lowest <= high)
    return True
