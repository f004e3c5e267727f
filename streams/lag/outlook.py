"""What the lag means ahead: the retention margin of each group's oldest unread record and the time the
group needs to catch up, computed at the end of each probe cycle (never at scrape time).

Topic configs (cleanup.policy, retention.ms, retention.bytes: one DescribeConfigs for all topics due)
and, for topics with retention.bytes, partition sizes (one DescribeLogDirs per broker) are refreshed
every STREAMS_LAG_RETENTION_REFRESH_SECONDS, not every cycle: they change rarely, and the average
record size they give changes slowly.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiokafka import TopicPartition
from aiokafka.errors import KafkaError
from prometheus_client.core import GaugeMetricFamily, Metric

from streams.lag.model import GroupLag, LagSnapshot, PartitionLag
from streams.lag.rates import RateWindow, Sample, catch_up_seconds
from streams.lag.retention import (
    DescribeLogDirs,
    TopicRetention,
    config_resources,
    parse_configs,
    partition_sizes,
    record_bytes,
    size_margin,
    time_margin,
)

log = logging.getLogger(__name__)
_REFRESH_TIMEOUT_S = 10.0


@dataclass
class Figures:
    margins: dict[tuple[str, str, int, str], float] = field(default_factory=dict)  # (group, topic, partition, basis)
    catch_up: dict[tuple[str, str], float] = field(default_factory=dict)  # (group, topic)


@dataclass(frozen=True)
class OutlookSettings:
    rate_window_s: float = 60.0
    retention_refresh_s: float = 300.0
    catch_up_cap_s: float = 7 * 86_400.0


class Outlook:
    def __init__(self, settings: OutlookSettings | None = None) -> None:
        self.settings = settings or OutlookSettings()
        self.rates = RateWindow(self.settings.rate_window_s)
        self.retention: dict[str, TopicRetention] = {}
        self.record_bytes: dict[TopicPartition, float] = {}
        self._asked_at: dict[str, float] = {}
        self._failing = False

    async def update(
        self,
        snapshot: LagSnapshot,
        admin: Any,
        kafka: Any,
        committed: Mapping[str, Mapping[TopicPartition, int]],
        starts: Mapping[TopicPartition, int],
        ends: Mapping[TopicPartition, int],
    ) -> Figures:
        now = time.monotonic()
        self.rates.add(Sample(now, dict(committed), dict(ends)))
        topics = {p.topic for g in snapshot.groups.values() for p in g.partitions}
        try:
            # Bounded: a broker slow to describe configs must not hold back the lag figures themselves.
            await asyncio.wait_for(self._refresh(admin, kafka, topics, starts, ends, now), _REFRESH_TIMEOUT_S)
            self._failing = False
        except (KafkaError, ValueError, OSError) as exc:  # OSError: TimeoutError too
            # Not a probe error: lag stays exact; only margins of topics not described yet are missing.
            # Asked again next cycle, logged once per run of failures.
            log.log(logging.DEBUG if self._failing else logging.WARNING, "lag probe: retention not read: %r", exc)
            self._failing = True
        snapshot.outlook = self.figures(snapshot.groups.values())
        return snapshot.outlook

    async def _refresh(
        self,
        admin: Any,
        kafka: Any,
        topics: set[str],
        starts: Mapping[TopicPartition, int],
        ends: Mapping[TopicPartition, int],
        now: float,
    ) -> None:
        due = {t for t in topics if now - self._asked_at.get(t, -math.inf) >= self.settings.retention_refresh_s}
        describe = getattr(admin, "describe_configs", None)
        if not due or describe is None:
            return
        found = parse_configs(await describe(config_resources(due)))
        for t in due:
            self._asked_at[t] = now
            self.retention.pop(t, None)
        self.retention.update(found)
        sized = [tp for tp in ends if tp.topic in found and found[tp.topic].retention_bytes is not None]
        for tp in [tp for tp in self.record_bytes if tp.topic in due]:
            del self.record_bytes[tp]
        if sized and kafka is not None:
            nodes = sorted(b.nodeId for b in kafka.cluster.brokers())
            sizes = partition_sizes(await asyncio.gather(*(kafka.send(node, DescribeLogDirs(sized)) for node in nodes)))
            for tp in sized:
                average = record_bytes(sizes.get(tp), starts.get(tp, 0), ends[tp])
                if average is not None:
                    self.record_bytes[tp] = average

    def figures(self, groups: Iterable[GroupLag]) -> Figures:
        out = Figures()
        cap = self.settings.catch_up_cap_s
        for g in groups:
            by_topic: dict[str, list[PartitionLag]] = {}
            for p in g.partitions:
                by_topic.setdefault(p.topic, []).append(p)
                retention = self.retention.get(p.topic)
                if retention is None or not p.committed:
                    # Without a commit the "oldest unread" is the log start, always the next record to go,
                    # and whether the group reads it at all depends on its auto.offset.reset.
                    continue
                tp = TopicPartition(p.topic, p.partition)
                margins = {
                    "time": time_margin(retention, p.lag_messages, p.lag_seconds),
                    "size": size_margin(
                        retention, p.lag_messages, self.record_bytes.get(tp), self.rates.produced_per_s(tp)
                    ),
                }
                for basis, margin in margins.items():
                    if margin is not None:
                        out.margins[(g.group, p.topic, p.partition, basis)] = margin
            for topic, parts in by_topic.items():
                tps = [TopicPartition(topic, p.partition) for p in parts]
                lag = sum(p.lag_messages for p in parts)
                value = catch_up_seconds(lag, self.rates.consumed_per_s(g.group, tps), cap)
                if value is not None:
                    out.catch_up[(g.group, topic)] = value
        return out


def outlook_families(lag: LagSnapshot | None, per_topic: bool) -> Iterator[Metric]:
    labels = ["group", "topic", "basis"] if per_topic else ["group", "topic", "partition", "basis"]
    margin = GaugeMetricFamily(
        "ecomind_consumergroup_retention_margin_seconds",
        "Time until the group's oldest unread record may be deleted by retention (basis: time = retention.ms, "
        "size = retention.bytes, estimated); a lower bound; absent when nothing is unread or nothing expires.",
        labels=labels,
    )
    catch_up = GaugeMetricFamily(
        "ecomind_consumergroup_catch_up_seconds",
        "Lag in messages over the group's consumption rate (STREAMS_LAG_RATE_WINDOW_SECONDS); 0 when caught up, "
        "+Inf when messages wait and the group does not consume, capped at STREAMS_LAG_CATCH_UP_CAP_SECONDS.",
        labels=["group", "topic"],
    )
    figures = lag.outlook if lag is not None else None
    if figures is not None:
        if per_topic:
            lowest: dict[tuple[str, str, str], float] = {}
            for (group, topic, _partition, basis), value in figures.margins.items():
                key = (group, topic, basis)
                lowest[key] = min(value, lowest.get(key, value))
            for key, value in sorted(lowest.items()):
                margin.add_metric(list(key), value)
        else:
            for (group, topic, partition, basis), value in sorted(figures.margins.items()):
                margin.add_metric([group, topic, str(partition), basis], value)
        for (group, topic), value in sorted(figures.catch_up.items()):
            catch_up.add_metric([group, topic], value)
    yield margin
    yield catch_up
