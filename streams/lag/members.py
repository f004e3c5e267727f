"""Which client owns which partition of a group, and the lag it owns (STREAMS_LAG_MEMBERS; docs/lag.md).

Both describe calls name every member with its client id, host and assignment: DescribeGroups as the
bytes of the consumer protocol's assignment, ConsumerGroupDescribe (KIP-848) as topic names and
partitions. Series are keyed by (client id, host), never by member id: a member id is new at every
join, so it would leave one dead series per restart; two members of one process with one client id add
up in one series. Beyond the caps (per group, and over all groups of a cluster), the most lagging clients
keep their labels and the others fold into their group's `__other__` row, so a sum over a group stays
exact. Who is labelled is decided afresh every cycle, by lag: these are gauges (a client leaving the
labelled set breaks no counter), and the question they answer is who holds the lag now.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import TopicPartition
from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment

from streams.lag.model import MemberLag, PartitionLag, topic_lag
from tables.labels import OTHER


@dataclass(frozen=True)
class Member:
    client_id: str
    host: str
    partitions: frozenset[TopicPartition]  # owned now: the lag a member is answerable for


def classic_members(protocol_type: str, members: Iterable[Any], state: str = "") -> tuple[Member, ...] | None:
    """DescribeGroups members (member_id, client_id, client_host, metadata, assignment); None when any
    assignment is not the consumer protocol's (Connect, or a client's own encoding): then who owns what,
    and so which topics no one owns, is not known.

    In a Stable group Kafka always sends each member's encoded assignment, even one owning nothing
    (version and an empty list are bytes too); empty bytes there mean a broker that does not keep
    assignments (Tansu), not a member that owns nothing. Mid-rebalance they are normal."""
    if protocol_type != "consumer":
        return None
    found = []
    for _member_id, client_id, host, _metadata, assignment, *_ in members:
        owned: set[TopicPartition] = set()
        if not assignment and state == "Stable":
            return None
        if assignment:
            try:
                decoded = ConsumerProtocolMemberAssignment.decode(assignment)
            except Exception:
                return None
            owned = {TopicPartition(t, p) for t, parts in decoded.assignment for p in parts}
        found.append(Member(client_id or "", host or "", frozenset(owned)))
    return tuple(found)


def consumer_members(response: Any) -> dict[str, tuple[Member, ...]]:
    """Each group's members in a ConsumerGroupDescribe v0 answer, with their current assignment."""
    out: dict[str, tuple[Member, ...]] = {}
    for g in response.groups:
        out[g[2]] = tuple(
            Member(
                m[4] or "",
                m[5] or "",
                frozenset(TopicPartition(name, p) for _id, name, parts, *_ in m[8][0] or [] if name for p in parts),
            )
            for m in g[7] or []
        )
    return out


def member_lag(parts: Iterable[PartitionLag], members: Iterable[Member]) -> tuple[MemberLag, ...]:
    """Lag per (client id, host) over the measured partitions its members own (a filtered-out topic is
    not measured, so not counted); members that own nothing measured have a row at 0."""
    by_tp = {(p.topic, p.partition): p for p in parts}
    owned: dict[tuple[str, str], list[PartitionLag]] = {}
    for m in members:
        if not m.client_id and not m.host:
            continue  # a broker that names no one (Tansu): a row labelled "" would be nobody's
        rows = owned.setdefault((m.client_id, m.host), [])
        rows.extend(by_tp[(tp.topic, tp.partition)] for tp in m.partitions if (tp.topic, tp.partition) in by_tp)
    return tuple(_row(client, host, owned[(client, host)]) for client, host in sorted(owned))


def capped(rows: Sequence[MemberLag], limit: int) -> list[MemberLag]:
    """At most `limit` labelled rows, the most lagging first, plus one `__other__` row for the rest.

    A client spelled like the fold bucket never has a row of its own (tables/labels.py does the same)."""
    named = _ranked(rows)
    rest = named[limit:] + [r for r in rows if OTHER in (r.client_id, r.host)]
    kept = named[:limit]
    if rest:
        kept.append(_merged(rest))
    return kept


def capped_groups(groups: Mapping[str, Sequence[MemberLag]], per_group: int, total: int) -> dict[str, list[MemberLag]]:
    """Each group's rows as `capped` leaves them, with at most `total` labelled rows over all groups: the
    most lagging of those `per_group` allows keep their labels, the others fold into their group's
    `__other__`. So at most `total` + one `__other__` per group, whatever the number of clients."""
    # Ranked as within a group, the group's name breaking ties: each group keeps a prefix of its ranking.
    ranked = sorted(
        ((r, group) for group, rows in groups.items() for r in _ranked(rows)[:per_group]),
        key=lambda rg: (-rg[0].lag_messages, rg[1], rg[0].client_id, rg[0].host),
    )
    allowed = dict.fromkeys(groups, 0)
    for _, group in ranked[:total]:
        allowed[group] += 1
    return {group: capped(rows, allowed[group]) for group, rows in groups.items()}


def _ranked(rows: Sequence[MemberLag]) -> list[MemberLag]:
    return sorted(
        (r for r in rows if OTHER not in (r.client_id, r.host)),
        key=lambda r: (-r.lag_messages, r.client_id, r.host),
    )


def _row(client_id: str, host: str, parts: list[PartitionLag]) -> MemberLag:
    total = topic_lag("", parts)  # summed messages, oldest age, unknown when any age is
    return MemberLag(client_id, host, len(parts), total.lag_messages, total.lag_seconds)


def _merged(rows: list[MemberLag]) -> MemberLag:
    unknown = any(r.lag_seconds is None for r in rows)
    return MemberLag(
        OTHER,
        OTHER,
        sum(r.partitions for r in rows),
        sum(r.lag_messages for r in rows),
        None if unknown else max(r.lag_seconds or 0.0 for r in rows),
    )
