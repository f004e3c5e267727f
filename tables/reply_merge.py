"""Every shard's read replies merged into the replies one read would give, before they are named.

Sharded state reads every shard with the same reads (tables/table_reads.py `ReadLayout`), so the replies
line up read by read: a sum is the sum of the shards' (each member of a distinct count lives in one
shard), `last_ts` the largest. Merging here, where each reply is a flat list, costs one pass over the
values; naming each shard's replies, checking them and merging the named parts costs four, and a scrape of
10,000 orgs over three shards spent most of its time there (docs/performance.md, "Sharded state").

A value that does not read as a number raises: the caller then checks each shard's apart, so what is left
out is counted per shard, as the one-shard read counts it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tables.checked import finite
from tables.reads import Reads


def merged_replies(reads: Reads, replies: Sequence[list[Any]]) -> list[Any]:
    """One reply per read of `reads` (HGETALL's as dicts), from every shard's `Reads.replies`, numbers as
    ints (`last_ts`: the largest shard's text). Raises ValueError or TypeError on a value that is not a
    number, or not a finite one for `last_ts`."""
    out: list[Any] = []
    for index, (op, *parts) in enumerate(zip(reads.ops, *replies, strict=True)):
        kind = op[0]
        if kind == "G":
            out.append(_largest(parts) if index in reads.largest else _sums(parts))
        elif kind == "M":
            out.append(_column_sums(parts))
        else:  # S, L: a count
            out.append(sum(int(n) for n in parts))
    return out


def _sums(flats: Sequence[list[str]]) -> dict[str, int]:
    """Field-wise sums of HGETALL replies (flat field, value lists); a field in any shard is present."""
    pairs = iter(flats[0])
    out = dict(zip(pairs, map(int, pairs), strict=True))  # one C loop for the first shard's
    get = out.get
    for flat in flats[1:]:
        pairs = iter(flat)
        for name, value in zip(pairs, map(int, pairs), strict=True):
            out[name] = get(name, 0) + value
    return out


def _largest(flats: Sequence[list[str]]) -> dict[str, str]:
    """Field-wise largest (as a finite number) of HGETALL replies, kept as its text."""
    out: dict[str, str] = {}
    largest: dict[str, float] = {}
    for flat in flats:
        pairs = iter(flat)
        for name, value in zip(pairs, pairs, strict=True):
            found = finite(value)  # as the check of one shard's reads it (tables/checked.py)
            if name not in largest or found > largest[name]:
                out[name], largest[name] = value, found
    return out


def _column_sums(columns: Sequence[list[str | None]]) -> list[int | None]:
    """Element-wise sums of HMGET replies (the same fields in every shard), None where every shard lacks it."""
    out = [None if v is None else int(v) for v in columns[0]]
    for column in columns[1:]:
        out = [a if b is None else (int(b) if a is None else a + int(b)) for a, b in zip(out, column, strict=True)]
    return out
