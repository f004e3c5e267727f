"""A batch split for sharded state: pure functions from the fold's Deltas (one per partition shard) to what
each shard writes. No Redis, no Faust.

The split is made on Deltas, not on payloads, so that the one-shard payload builder (RedisStore.build_payload)
makes every section of every shard's payload: a partition shard's is a one-shard payload of a Delta without
members; a member shard's is a one-shard payload of a Delta with only its members, plus its watermarks and,
in the global shard, the label admission. docs/design.md, "Sharded state", says why each part is exact.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from operator import itemgetter
from zlib import crc32

from tables.delta import Delta
from tables.keys import ACTIVE_BUCKETS, offset_field
from tables.shards import GLOBAL_SHARD, ShardKeys
from tables.writes import OffsetMove

# The Delta fields that hold distinct members (day -> set): everything else is a sum.
MEMBER_FIELDS = ("orgs", "users", "window_only_users", "window_only_orgs")
LABELS = ("org_id", "provider", "model")
_FIRST, _SECOND = itemgetter(0), itemgetter(1)

Edit = Callable[[dict[str, object]], None]


def counter_part(delta: Delta) -> Delta:
    """The batch's sums without its members: what a partition shard writes with its offsets. Its today is
    cleared too, which leaves the windows (members only) out of its payload."""
    return replace(delta, orgs={}, users={}, window_only_users={}, window_only_orgs={}, today_index=0)


def _shards_of(members: list[str], shards: int) -> list[int]:
    """member_shard of each member, in C loops (tables/windows.py's _buckets does the same per bucket)."""
    try:
        encoded = list(map(str.encode, members))
    except UnicodeEncodeError:  # a lone surrogate: the slow way, as active_bucket_of encodes it
        encoded = [m.encode("utf-8", "surrogatepass") for m in members]
    return [crc32(m) % ACTIVE_BUCKETS % shards for m in encoded]


def member_parts(deltas: Iterable[Delta], shards: int) -> list[Delta]:
    """The members of a batch's Deltas split by member shard: one Delta per shard (every shard, even one
    without members: it still gets the batch's watermarks), holding only members and the fold's today."""
    parts = [Delta() for _ in range(shards)]
    for delta in deltas:
        for part in parts:
            part.today_index = max(part.today_index, delta.today_index)  # only raw folds set it
        for name in MEMBER_FIELDS:
            for day, members in getattr(delta, name).items():
                listed = list(members)
                split: list[list[str]] = [[] for _ in range(shards)]
                for member, shard in zip(listed, _shards_of(listed, shards), strict=True):
                    split[shard].append(member)
                for part, chosen in zip(parts, split, strict=True):
                    if chosen:
                        getattr(part, name).setdefault(day, set()).update(chosen)
    return parts


def batch_label_values(delta: Delta) -> dict[str, set[str]]:
    """The label values a Delta offers to admission, as RedisStore.build_payload's `admit` section names
    them (tests hold the two to the same sets): orgs with events or energy, providers and models with
    events or energy."""
    orgs = set(map(_FIRST, delta.ingested))
    for per_day in (delta.kwh_nano, delta.co2_nano):
        for amounts in per_day.values():
            orgs.update(amounts)
    providers = set(map(_SECOND, delta.ingested))
    models = set(map(_SECOND, delta.calls))
    for per_model_day in (delta.model_kwh_nano, delta.model_co2_nano):
        for by_provider_model in per_model_day.values():
            providers.update(map(_FIRST, by_provider_model))
            models.update(map(_SECOND, by_provider_model))
    return {"org_id": orgs, "provider": providers, "model": models}


def activity_values(delta: Delta) -> dict[str, set[str]]:
    """The label values the one-shard layout's activity hashes get a field for, whose number (HLEN) the
    folded count subtracts the admitted values from: orgs with events or energy, and providers and models
    with events only (energy alone adds no activity: build_payload's rule, held to it by the tests)."""
    return {
        "org_id": batch_label_values(delta)["org_id"],
        "provider": set(map(_SECOND, delta.ingested)),
        "model": set(map(_SECOND, delta.calls)),
    }


def watermarks(moves: Sequence[OffsetMove]) -> list[list[str]]:
    """The `wm` section of every member shard's payload: [partition field, from ('' never written), to,
    topic ID ('' unknown), '1' when the move is to a re-created topic (tables/script.py)]."""
    return [
        [
            offset_field(m.topic, m.partition),
            "" if m.expected is None else str(m.expected),
            str(m.next_offset),
            m.topic_id or "",
            "1" if m.topic_id and m.expected_topic_id and m.topic_id != m.expected_topic_id else "",
        ]
        for m in moves
    ]


def member_edit(
    keys: ShardKeys, moves: Sequence[OffsetMove], deltas: Iterable[Delta], caps: dict[str, int] | None
) -> Edit:
    """What a member shard's payload gets besides its members: the batch's watermarks, and in the global
    shard (`caps` given) the admission of the batch's label values and the sets of every value ever seen."""
    wm = watermarks(moves)
    admit: list[list[object]] = []
    seen: list[list[object]] = []
    if caps is not None:
        assert keys.shard == GLOBAL_SHARD
        offered: dict[str, set[str]] = {label: set() for label in LABELS}
        active: dict[str, set[str]] = {label: set() for label in LABELS}
        for delta in deltas:
            for label, values in batch_label_values(delta).items():
                offered[label] |= values
            for label, values in activity_values(delta).items():
                active[label] |= values
        for label in LABELS:
            if offered[label]:  # admitted in this order, as with one shard
                admit.append([keys.labels(label), str(caps[label]), sorted(offered[label])])
            if active[label]:  # every value, "__other__" too, as the activity hash's fields are
                seen.append([keys.label_values(label), sorted(active[label])])

    def edit(payload: dict[str, object]) -> None:
        payload["wm"] = wm
        if admit:
            payload["admit"] = admit
        if seen:
            sadd = payload["sadd"]
            assert isinstance(sadd, list)
            sadd.extend(seen)

    return edit


def partition_edit(payload: dict[str, object]) -> None:
    """A partition shard admits nothing: admission is the global shard's, in the batch's member writes."""
    payload["admit"] = []


class ShardedDelta(Delta):
    """A batch folded per partition shard: `parts[k]` holds the partitions of shard k. Its own fields hold
    only the rejections of every part (the dead letters are sent once per batch)."""

    def __init__(self, parts: dict[int, Delta]) -> None:
        super().__init__()
        self.parts = parts
        for part in parts.values():
            self.rejections.extend(part.rejections)
