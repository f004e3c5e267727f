"""The families of streams/lag/scope.py and streams/lag/members.py, rendered with the other lag families
once per probe cycle (streams/lag/metrics.py)."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily, Metric

from streams.lag.members import capped_groups
from streams.lag.model import LagSnapshot

MEMBER_LABELS = ["group", "client_id", "host"]


def scope_families(lag: LagSnapshot | None, members: bool, per_group: int, total: int) -> Iterator[Metric]:
    groups = lag.groups if lag is not None else {}
    stale = GaugeMetricFamily(
        "ecomind_consumergroup_stale_partitions",
        "Partitions the group has commits on in topics none of its members owns (STREAMS_LAG_STALE).",
        labels=["group"],
    )
    for name in sorted(groups):
        stale.add_metric([name], groups[name].stale_partitions)
    yield stale
    if not members:
        return
    messages = GaugeMetricFamily(
        "ecomind_consumergroup_member_lag",
        "Messages waiting on the partitions a client (client id, host) owns in the group.",
        labels=MEMBER_LABELS,
    )
    seconds = GaugeMetricFamily(
        "ecomind_consumergroup_member_lag_seconds",
        "Age of the oldest record waiting on the partitions the client owns; absent while unknown.",
        labels=MEMBER_LABELS,
    )
    owned = GaugeMetricFamily(
        "ecomind_consumergroup_member_partitions",
        "Measured partitions the client owns in the group.",
        labels=MEMBER_LABELS,
    )
    rows = capped_groups({name: g.member_lag for name, g in groups.items()}, per_group, total)
    for name in sorted(groups):
        for row in rows[name]:
            key = [name, row.client_id, row.host]
            messages.add_metric(key, row.lag_messages)
            if row.lag_seconds is not None:
                seconds.add_metric(key, row.lag_seconds)
            owned.add_metric(key, row.partitions)
    yield from (messages, seconds, owned)
