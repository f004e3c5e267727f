"""Lag families, built at scrape time from the probe's last snapshot (the scrape never waits for Kafka).

Exported only by the replica holding the exporter lease, so each value has one owner and `sum()` is
exact. Series are rebuilt from the snapshot on every scrape: a group deleted or emptied, or a topic it
no longer has offsets for, has no series at the next probe cycle.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from streams.exposition import render
from streams.lag.model import LagSnapshot, PartitionLag, by_topic, slo_seconds
from streams.lag.outlook import outlook_families
from streams.lag.scope_metrics import scope_families
from streams.settings import Settings, lag_slo_rules

# The states DescribeGroups reports; every group has a 0/1 series for each, so a change of state
# never leaves a stale series behind.
# Classic groups' states, then those only consumer-protocol (KIP-848) groups have; the broker's spelling.
GROUP_STATES = (
    "Stable",
    "PreparingRebalance",
    "CompletingRebalance",
    "Assigning",
    "Reconciling",
    "Empty",
    "Dead",
    "Unknown",
)


@dataclass(frozen=True)
class LagExport:
    granularity: str = "partition"  # or "topic": one series per (group, topic)
    slo_rules: tuple[tuple[re.Pattern[str], float], ...] = ()
    slo_default_seconds: float = 60.0
    interval_seconds: float = 5.0
    stale: str = "drop"  # STREAMS_LAG_STALE; "flag" adds the stale label
    members: bool = False
    members_per_group: int = 20
    members_total: int = 2_000

    @classmethod
    def from_settings(cls, s: Settings) -> LagExport:
        rules = lag_slo_rules(s.lag_slo_seconds)
        return cls(
            s.lag_granularity,
            rules,
            s.lag_slo_default_seconds,
            s.lag_interval_seconds,
            stale=s.lag_stale,
            members=s.lag_members,
            members_per_group=s.lag_members_per_group,
            members_total=s.lag_members_total,
        )


class LagCollector(Collector):
    def __init__(self, lag: LagSnapshot | None, group: str, export: LagExport | None = None) -> None:
        self.lag = lag
        self.group = group
        self.export = export or LagExport()

    def collect(self) -> Iterator[Metric]:
        yield from self._watched()
        yield from self._groups()
        yield from outlook_families(self.lag, self.export.granularity == "topic")
        e = self.export
        yield from scope_families(self.lag, e.members, e.members_per_group, e.members_total)
        taken = GaugeMetricFamily(
            "ecomind_streams_lag_probe_timestamp_seconds",
            "When the lag figures were measured; older than a few STREAMS_LAG_INTERVAL_SECONDS means stale.",
        )
        duration = GaugeMetricFamily(
            "ecomind_streams_lag_probe_duration_seconds", "How long the last lag probe cycle took."
        )
        if self.lag is not None:
            taken.add_metric([], self.lag.taken_at_s)
            duration.add_metric([], self.lag.duration_s)
        yield taken
        yield duration
        yield GaugeMetricFamily(
            "ecomind_streams_lag_probe_interval_seconds",
            "STREAMS_LAG_INTERVAL_SECONDS: the pause between probe cycles, for the staleness alert.",
            value=self.export.interval_seconds,
        )

    def _watched(self) -> Iterator[Metric]:
        """The design document's series, for the watched group, always per partition."""
        labels = ["topic", "partition"]
        messages = GaugeMetricFamily(
            "ecomind_worker_kafka_lag",
            f"Messages between consumer group {self.group}'s committed offset and the partition's end (LSO).",
            labels=labels,
        )
        seconds = GaugeMetricFamily(
            "ecomind_worker_kafka_lag_seconds",
            "Age of the oldest record the watched group has not consumed; 0 when caught up; "
            "absent while unknown (see ecomind_streams_lag_seconds_unknown).",
            labels=labels,
        )
        unknown = GaugeMetricFamily(
            "ecomind_streams_lag_seconds_unknown",
            "1 when messages wait on the partition for the watched group but their age could not be read.",
            labels=labels,
        )
        committed = GaugeMetricFamily(
            "ecomind_streams_watch_group_committed",
            "1 when the watched group has a committed offset on the partition, 0 when it has none.",
            labels=labels,
        )
        watched = self.lag.watched if self.lag is not None else None
        for p in watched.partitions if watched is not None else ():
            key = [p.topic, str(p.partition)]
            messages.add_metric(key, p.lag_messages)
            if p.lag_seconds is not None:
                seconds.add_metric(key, p.lag_seconds)
            unknown.add_metric(key, 1 if p.seconds_unknown else 0)
            committed.add_metric(key, 1 if p.committed else 0)
        yield from (messages, seconds, unknown, committed)

    def _groups(self) -> Iterator[Metric]:
        per_topic = self.export.granularity == "topic"
        labels = ["group", "topic"] if per_topic else ["group", "topic", "partition"]
        flag = self.export.stale == "flag"
        labels += ["stale"] if flag else []
        messages = GaugeMetricFamily(
            "ecomind_consumergroup_lag", "Messages the group has not consumed, up to the LSO.", labels=labels
        )
        seconds = GaugeMetricFamily(
            "ecomind_consumergroup_lag_seconds",
            "Age of the oldest record the group has not consumed; absent while unknown.",
            labels=labels,
        )
        unknown = GaugeMetricFamily(
            "ecomind_consumergroup_lag_seconds_unknown",
            "1 when messages wait but the age of the oldest could not be read before the probe's deadline.",
            labels=labels,
        )
        members = GaugeMetricFamily("ecomind_consumergroup_members", "Members of the group.", labels=["group"])
        state = GaugeMetricFamily(
            "ecomind_consumergroup_state", "1 for the group's current state.", labels=["group", "state"]
        )
        committed = GaugeMetricFamily(
            "ecomind_consumergroup_committed_partitions",
            "Partitions on which the group has a committed offset: measured ones and those of filtered-out topics "
            "(0: no commit at all).",
            labels=["group"],
        )
        measured = GaugeMetricFamily(
            "ecomind_consumergroup_partitions", "Partitions measured for the group.", labels=["group"]
        )
        slo = GaugeMetricFamily(
            "ecomind_consumergroup_lag_slo_seconds",
            "The group's lag SLO from STREAMS_LAG_SLO_SECONDS, for the alerts.",
            labels=["group"],
        )
        groups = self.lag.groups if self.lag is not None else {}
        for name in sorted(groups):
            g = groups[name]
            rows: Sequence[PartitionLag] = by_topic(g.partitions) if per_topic else g.partitions
            for p in rows:
                key = [name, p.topic] if per_topic else [name, p.topic, str(p.partition)]
                key += [str(p.topic in g.stale_topics).lower()] if flag else []
                messages.add_metric(key, p.lag_messages)
                if p.lag_seconds is not None:
                    seconds.add_metric(key, p.lag_seconds)
                unknown.add_metric(key, 1 if p.seconds_unknown else 0)
            members.add_metric([name], g.members)
            current = g.state if g.state in GROUP_STATES else "Unknown"
            for s in GROUP_STATES:
                state.add_metric([name, s], 1 if s == current else 0)
            committed.add_metric([name], g.committed_partitions)
            measured.add_metric([name], len(g.partitions))
            slo.add_metric([name], slo_seconds(name, self.export.slo_rules, self.export.slo_default_seconds))
        yield from (messages, seconds, unknown, members, state, committed, measured, slo)


def lag_exposition(lag: LagSnapshot | None, settings: Settings) -> bytes:
    """The lag families of one snapshot (or of none yet). The probe loops render them once per cycle, off the
    scrape path (streams/lag/clusters.py); a scrape renders them itself only before the first cycle."""
    return render([LagCollector(lag, settings.watch_group, LagExport.from_settings(settings))])
