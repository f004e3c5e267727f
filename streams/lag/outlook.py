"""What the lag means ahead: the retention margin of each group's oldest unread record and the time the
group needs to catch up, computed at the end of each probe cycle (never at scrape time).

Topic configs and partition sizes are read every STREAMS_LAG_RETENTION_REFRESH_SECONDS, not every
cycle, and off the cycle's critical path (streams/lag/retention_reader.py). Topics a group is not
reading (stale, streams/lag/scope.py) get neither a margin nor a time to catch up; a partition whose
commit is below the log start has lost records already: no margin, but the count of offsets lost.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from aiokafka import TopicPartition
from prometheus_client.core import GaugeMetricFamily, Metric

from streams.lag.model import Figures, GroupLag, LagSnapshot, PartitionLag
from streams.lag.rates import RateWindow, Sample, catch_up_seconds
from streams.lag.retention import TopicRetention, size_margin, time_margin
from streams.lag.retention_reader import RetentionReader


@dataclass(frozen=True)
class OutlookSettings:
    rate_window_s: float = 60.0
    retention_refresh_s: float = 300.0
    catch_up_cap_s: float = 7 * 86_400.0


class Outlook:
    def __init__(self, settings: OutlookSettings | None = None) -> None:
        self.settings = settings or OutlookSettings()
        self.rates = RateWindow(self.settings.rate_window_s)
        self.reader = RetentionReader(self.settings.retention_refresh_s)

    @property
    def retention(self) -> dict[str, TopicRetention]:
        return self.reader.retention

    @retention.setter
    def retention(self, value: dict[str, TopicRetention]) -> None:
        self.reader.retention = value

    @property
    def record_bytes(self) -> dict[TopicPartition, float]:
        return self.reader.record_bytes

    @record_bytes.setter
    def record_bytes(self, value: dict[TopicPartition, float]) -> None:
        self.reader.record_bytes = value

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
        self.rates.add(Sample(now, committed, ends))
        topics = {p.topic for g in snapshot.groups.values() for p in g.partitions}
        self.reader.keep_only(topics)
        # Never an error of the cycle, and never more than a short wait: see streams/lag/retention_reader.py.
        await self.reader.refresh(admin, kafka, topics, starts, ends, now)
        snapshot.outlook = self.figures(snapshot.groups.values(), lost_offsets(snapshot, committed, starts))
        return snapshot.outlook

    async def close(self) -> None:
        await self.reader.close()

    def figures(self, groups: Iterable[GroupLag], lost: Mapping[tuple[str, str, int], int] | None = None) -> Figures:
        out = Figures(lost=dict(lost or {}))
        cap = self.settings.catch_up_cap_s
        for g in groups:
            by_topic: dict[str, list[PartitionLag]] = {}
            for p in g.partitions:
                if p.topic in g.stale_topics:
                    continue  # no member will read it: no deadline to meet, nothing to catch up on
                by_topic.setdefault(p.topic, []).append(p)
                retention = self.retention.get(p.topic)
                if retention is None or not p.committed or (g.group, p.topic, p.partition) in out.lost:
                    # Without a commit the "oldest unread" is the log start, always the next record to go,
                    # and whether the group reads it at all depends on its auto.offset.reset. Below the log
                    # start the loss has happened: a margin near 0 would page until the offsets expire.
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


def lost_offsets(
    snapshot: LagSnapshot, committed: Mapping[str, Mapping[TopicPartition, int]], starts: Mapping[TopicPartition, int]
) -> dict[tuple[str, str, int], int]:
    """Measured, non-stale partitions whose commit is below the log start: records deleted unread."""
    lost = {}
    for g in snapshot.groups.values():
        offsets = committed.get(g.group, {})
        for p in g.partitions:
            tp = TopicPartition(p.topic, p.partition)
            if p.topic not in g.stale_topics and tp in offsets and tp in starts and offsets[tp] < starts[tp]:
                lost[(g.group, p.topic, p.partition)] = starts[tp] - offsets[tp]
    return lost


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
    yield _lost_family(figures.lost if figures is not None else {}, per_topic)


def _lost_family(lost: Mapping[tuple[str, str, int], int], per_topic: bool) -> Metric:
    family = GaugeMetricFamily(
        "ecomind_consumergroup_lost_messages",
        "Offsets between the group's commit and the log start: records retention deleted before the group "
        "read them (compaction gaps and transaction markers count too); absent while the commit is in the log.",
        labels=["group", "topic"] if per_topic else ["group", "topic", "partition"],
    )
    if per_topic:
        summed: dict[tuple[str, str], int] = {}
        for (group, topic, _partition), n in lost.items():
            summed[(group, topic)] = summed.get((group, topic), 0) + n
        for (group, topic), n in sorted(summed.items()):
            family.add_metric([group, topic], n)
    else:
        for (group, topic, partition), n in sorted(lost.items()):
            family.add_metric([group, topic, str(partition)], n)
    return family
