"""The scrape of sharded state: every shard read with the one-shard reads (tables/table_reads.py), the
replies merged into one RawTables, decoded as one shard's are. Read-only, like the one-shard read.

Everything a shard holds is a sum over shards: counters, amounts (whole units and remainders apart: the
joined amount is linear in both), distinct counts (each member lives in one shard), per-org users, the
windows' pair counts per (a, b); `last_ts` is the largest. Only the label sets and the values ever seen
are global, in shard 0 (tables/shards.py). docs/design.md, "Sharded state", says why the merged scrape is
exact and monotonic though the shards are read at slightly different instants.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import replace
from typing import Any, cast

import redis.asyncio as aioredis

from tables.checked import readable
from tables.reads import Reads
from tables.reply_merge import merged_replies
from tables.shards import GLOBAL_SHARD, ShardKeys
from tables.snapshot import Snapshot, decode_readable
from tables.table_reads import (
    LABELS,
    RawTables,
    ReadLayout,
    label_members,
    labels_grew,
    read_layout,
    table_reads,
    tables_from,
)

Parts = tuple[str | None, str | None]


async def sharded_tables(
    client: aioredis.Redis, keys: Sequence[ShardKeys], today: str, tries: int = 3
) -> tuple[RawTables, dict[str, int]]:
    """Every shard's tables merged, and how many stored values were left out as not numbers, per table.

    The label sets are read first and their sizes again after every shard: a value admitted meanwhile may
    have parts in a shard's totals that were not read as labelled, so the read is made again (as the
    one-shard read does within its script)."""
    global_keys = keys[GLOBAL_SHARD]
    replies: list[list[Any]] = []
    seen: dict[str, int] = {}
    stale = False
    for _ in range(max(1, tries)):
        members = await label_members(client, global_keys)
        layout = read_layout(today, members)
        reads = [table_reads(k, layout) for k in keys]
        replies = list(await asyncio.gather(*(r.replies(client) for r in reads)))
        sizes = Reads()
        for label in LABELS:
            sizes.scard(global_keys.labels(label))
        for label in LABELS:
            sizes.scard(global_keys.label_values(label))
        found = [int(n) for n in await sizes.execute(client)]
        stale = any(n != len(members[label]) for label, n in zip(LABELS, found, strict=False))
        seen = dict(zip(LABELS, found[len(LABELS) :], strict=True))
        if not stale:
            break
    return merged_tables(reads, replies, layout, seen, stale)


def merged_tables(
    reads: Sequence[Reads], replies: Sequence[list[Any]], layout: ReadLayout, seen: dict[str, int], stale: bool
) -> tuple[RawTables, dict[str, int]]:
    """Every shard's replies (`Reads.replies` of `reads`, in shard order) as one RawTables, and how many
    stored values were left out as not numbers, per table. `seen`: per label, the values ever seen;
    `stale`: the label sets grew while the shards were read."""
    # Only the global shard holds label sets: the others' own check compares empty sets.
    stale = stale or labels_grew(replies[GLOBAL_SHARD], layout.members)
    merged = _merged(reads[0], replies, layout, seen, stale)
    if merged is not None:
        return merged, {}
    cleaned: list[RawTables] = []
    unreadable: dict[str, int] = {}
    for read, reply in zip(reads, replies, strict=True):
        clean, bad = readable(tables_from(read.as_read(reply), layout))
        cleaned.append(clean)
        for table, n in bad.items():
            unreadable[table] = unreadable.get(table, 0) + n
    return merge(cleaned, seen, stale), unreadable


def _merged(
    reads: Reads, replies: Sequence[list[Any]], layout: ReadLayout, seen: dict[str, int], stale: bool
) -> RawTables | None:
    """The shards' replies merged before they are named (tables/reply_merge.py): the scrape's usual way.
    None where a stored value is not a number, which each shard's tables are then checked for apart."""
    try:
        raw = tables_from(merged_replies(reads, replies), layout)
    except (TypeError, ValueError, OverflowError):
        return None
    raw = replace(raw, members_stale=stale, activity_sizes=dict(seen))
    # Only asks: a field name that is not readable (values raise in the merge) is logged once, per shard,
    # by the check that counts it. Such state costs the merge and then that check, every scrape.
    _, bad = readable(raw, warn=False)
    return None if bad else raw


async def sharded_snapshot(client: aioredis.Redis, keys: Sequence[ShardKeys], today: str, raw_topic: str) -> Snapshot:
    """What a scrape of sharded state exports: the merged tables decoded, with every shard's unreadable
    values counted (they were left out per shard, before the merge)."""
    raw, unreadable = await sharded_tables(client, keys, today)
    snap = decode_readable(raw, raw_topic)  # every shard's values were checked before the merge
    snap.unreadable = unreadable
    return snap


def merge(raws: Sequence[RawTables], values_seen: dict[str, int], stale: bool = False) -> RawTables:
    """One RawTables from every shard's, each read with the same label members and already `readable`.
    `values_seen`: per label, the values ever seen (the global shard's sets), which the folded count
    subtracts the admitted ones from, as the one-shard read does with the activity hash's length."""
    first = raws[0]
    return replace(
        first,
        # Only the global shard holds label sets: the others' own check compares empty sets.
        members_stale=stale or raws[GLOBAL_SHARD].members_stale,
        processed=_flat([r.processed for r in raws]),
        invalid=_flat([r.invalid for r in raws]),
        dropped_late=_flat([r.dropped_late for r in raws]),
        last_ts=_latest([r.last_ts for r in raws]),
        delay=_flat([r.delay for r in raws]),
        delay_remainder=_flat([r.delay_remainder for r in raws]),
        active_orgs=sum(r.active_orgs for r in raws),
        active_users=sum(r.active_users for r in raws),
        org_fields={org: _flat([r.org_fields.get(org, {}) for r in raws]) for org in first.org_fields},
        kwh=_parts([r.kwh for r in raws]),
        co2=_parts([r.co2 for r in raws]),
        totals=_flat([r.totals for r in raws]),
        totals_remainder=_flat([r.totals_remainder for r in raws]),
        by_provider=_optional([r.by_provider for r in raws]),
        by_model=_optional([r.by_model for r in raws]),
        activity_sizes=dict(values_seen),
        window_pairs={
            subject: {day: _flat([r.window_pairs[subject][day] for r in raws]) for day in by_day}
            for subject, by_day in first.window_pairs.items()
        },
        dropped_late_windows=_flat([r.dropped_late_windows for r in raws]),
        org_users=_optional([r.org_users for r in raws]),
        tokens=_parts([r.tokens for r in raws]),
        provider_energy={
            p: (
                _flat([r.provider_energy[p][0] for r in raws]),
                _flat([r.provider_energy[p][1] for r in raws]),
            )
            for p in first.provider_energy
        },
        model_energy=_parts([r.model_energy for r in raws]),
    )


def _flat(hashes: Sequence[dict[str, str]]) -> dict[str, str]:
    """Field-wise sums of integer hashes; a field present in any shard is present. The sums stay integers:
    `decode` reads every merged value with int(), as it reads a reply's text (a scrape merges thousands)."""
    out: dict[str, int] = {}
    for found in hashes:
        for name, value in found.items():
            out[name] = out.get(name, 0) + int(value)
    return cast("dict[str, str]", out)


def _latest(hashes: Sequence[dict[str, str]]) -> dict[str, str]:
    out: dict[str, str] = {}
    for found in hashes:
        for name, value in found.items():
            if name not in out or float(value) > float(out[name]):
                out[name] = value
    return out


def _optional(values: Sequence[dict[str, str | None]]) -> dict[str, str | None]:
    """Sums of values that may be absent (HMGET): absent where every shard lacks it."""
    out: dict[str, int | None] = {}
    for found in values:
        for name, value in found.items():
            if value is not None:
                before = out.get(name)
                out[name] = int(value) if before is None else before + int(value)
            elif name not in out:
                out[name] = None
    return cast("dict[str, str | None]", out)  # integers, as _flat's


def _parts(values: Sequence[dict[str, Parts]]) -> dict[str, Parts]:
    """Amounts as (whole units, remainder) pairs, each part summed apart (absent where every shard lacks
    it): join_amount is linear in both, so the joined sum is the sum of the shards' amounts."""
    wholes = _optional([{name: parts[0] for name, parts in found.items()} for found in values])
    rests = _optional([{name: parts[1] for name, parts in found.items()} for found in values])
    return {name: (wholes[name], rests[name]) for name in wholes}
