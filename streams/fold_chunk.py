"""The fold of a clean chunk, in passes that run in C (map, Counter, set) instead of a Python iteration
per event with its branches.

A chunk is clean when every record decodes by the schema (streams/schema.py) and every event time is
an epoch-milliseconds integer within one local day that the daily tables and the windows both keep:
nearly every chunk of a healthy stream. Anything else (a rejection, a late or future event, text
times, a chunk across midnight) goes to the per-event fold in streams/fold.py. Both build the same
partial sums, which streams/fold.py turns into the Delta; tests/unit/test_fold_chunk.py compares them
on random chunks. No Faust import.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from itertools import repeat
from operator import attrgetter, mul, sub
from typing import TYPE_CHECKING, Any

from streams.events import MIN_TS_MS
from tables.delta import DELAY_BOUNDS_MS, MAX_DELAY_MS, NANO, Record

if TYPE_CHECKING:
    from streams.fold import FoldContext

_VALUE = attrgetter("value")
_TIMESTAMP = attrgetter("timestamp")
_TS = attrgetter("ts")
_COMBO = attrgetter("org_id", "provider", "model")
_PAIR = attrgetter("org_id", "user_id")
_TOKENS = attrgetter("org_id", "tokens_in", "tokens_out")
_KWH = attrgetter("kwh")
_CO2 = attrgetter("co2_kg")
_BUCKET = partial(bisect_left, DELAY_BOUNDS_MS)


@dataclass
class Clean:
    structs: list[Any]
    times_ms: list[int]
    day: str
    newest_ms: int  # the newest record (broker) timestamp of the chunk


def clean(records: Sequence[Record], decode: Callable[[bytes], Any], ctx: FoldContext) -> Clean | None:
    """The chunk's decoded events and their one day, or None when the per-event fold must decide."""
    if not records:
        return None
    values = list(map(_VALUE, records))
    try:
        # Bounded before decoding; a None value fails len() and goes to the fold that names it.
        if max(map(len, values)) > ctx.max_payload_bytes:
            return None
        structs = list(map(decode, values))
    except Exception:
        return None
    times_ms = list(map(_TS, structs))
    if set(map(type, times_ms)) != {int}:
        return None
    lo, hi = min(times_ms), max(times_ms)
    if lo < MIN_TS_MS or hi > ctx.now_ms + ctx.max_future_ms:
        return None
    start_ms, _, day = ctx.calendar.day_span(hi)
    if lo < start_ms or start_ms < ctx.oldest_kept_ms or start_ms < ctx.oldest_window_ms:
        return None
    return Clean(structs, times_ms, day, max(map(_TIMESTAMP, records)))


def raw_sums(chunk: Clean) -> tuple[Counter[tuple[str, str, str]], dict[str, list[int]], set[tuple[str, str]]]:
    """Events per (org, provider, model), [tokens in, tokens out] per org, the (org, user) pairs."""
    per_org: dict[str, list[int]] = {}
    for org, t_in, t_out in map(_TOKENS, chunk.structs):
        tokens = per_org.get(org)
        if tokens is None:
            per_org[org] = [t_in, t_out]
        else:
            tokens[0] += t_in
            tokens[1] += t_out
    return Counter(map(_COMBO, chunk.structs)), per_org, set(map(_PAIR, chunk.structs))


def enriched_sums(chunk: Clean, records: Sequence[Record], buckets: list[int]) -> tuple[dict[Any, list[int]], int]:
    """[kWh, CO2] in units of 1e-9 per (org, provider, model), with the delay histogram added to
    `buckets`; returns the sums and the delays' sum in milliseconds."""
    delays_ms = list(map(sub, map(_TIMESTAMP, records), chunk.times_ms))
    if min(delays_ms) < 0 or max(delays_ms) > MAX_DELAY_MS:
        delays_ms = [0 if d < 0 else MAX_DELAY_MS if d > MAX_DELAY_MS else d for d in delays_ms]
    for bucket, n in Counter(map(_BUCKET, delays_ms)).items():
        buckets[bucket] += n
    amounts: dict[Any, list[int]] = {}
    # Each event's amount is rounded to 1e-9 on its own, as in the per-event fold.
    kwh_nanos = map(round, map(mul, map(_KWH, chunk.structs), repeat(NANO)))
    co2_nanos = map(round, map(mul, map(_CO2, chunk.structs), repeat(NANO)))
    for key, kwh_nano, co2_nano in zip(map(_COMBO, chunk.structs), kwh_nanos, co2_nanos, strict=True):
        found = amounts.get(key)
        if found is None:
            amounts[key] = [kwh_nano, co2_nano]
        else:
            found[0] += kwh_nano
            found[1] += co2_nano
    return amounts, sum(delays_ms)
