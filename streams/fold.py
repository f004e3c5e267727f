"""Fold a batch of records into one Delta: the hot path's pure aggregation, no Faust import.

A Delta is what one batch adds to the state; the store applies it in one atomic write together
with the input offsets it covers.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from streams.calendar import DayCalendar
from streams.events import Invalid, enriched_tuple, raw_tuple
from tables.delta import DELAY_BOUNDS_MS, MAX_DELAY_MS, NANO, Delta, Record, Rejection, pair


@dataclass
class FoldContext:
    calendar: DayCalendar
    now_ms: int
    days_kept: int
    max_future_ms: int
    max_payload_bytes: int
    oldest_kept_ms: int = 0

    def __post_init__(self) -> None:
        self.oldest_kept_ms = self.calendar.oldest_kept_start_ms(self.now_ms, self.days_kept)


def fold_raw(delta: Delta, topic: str, records: Iterable[Record], ctx: FoldContext) -> None:
    now_ms, max_future_ms, max_bytes = ctx.now_ms, ctx.max_future_ms, ctx.max_payload_bytes
    oldest_kept_ms = ctx.oldest_kept_ms
    # One count per (org, provider, model) in the loop; the two labelled families are derived after it
    # from far fewer keys (the profile that showed this: docs/performance.md).
    combos: dict[tuple[str, str, str], int] = {}
    valid = late = 0
    newest = delta.last_ts_ms.get(topic, -1)
    day_start_ms = day_end_ms = 0
    orgs, users = set[str](), set[str]()
    for rec in records:
        if rec.timestamp > newest:
            newest = rec.timestamp
        try:
            org, user, provider, model, _, _, ts_ms = raw_tuple(rec.value, now_ms, max_future_ms, max_bytes)
        except Invalid as exc:
            _reject(delta, topic, exc.reason, rec)
            continue
        valid += 1
        key = (org, provider, model)
        combos[key] = combos.get(key, 0) + 1
        if ts_ms < oldest_kept_ms:
            late += 1
            continue
        if not day_start_ms <= ts_ms < day_end_ms:
            day_start_ms, day_end_ms, day = ctx.calendar.day_span(ts_ms)
            orgs = delta.orgs.setdefault(day, set())
            users = delta.users.setdefault(day, set())
        orgs.add(org)
        users.add(f"{len(org)}:{org}{user}")  # pair(org, user), inlined
    ingested, calls = delta.ingested, delta.calls
    for (org, provider, model), n in combos.items():
        org_key = f"{len(org)}:{org}"  # pair(org, x) == org_key + x
        ingested[org_key + provider] += n
        calls[org_key + model] += n
    _close(delta, topic, valid, late, newest)


def fold_enriched(delta: Delta, topic: str, records: Iterable[Record], ctx: FoldContext) -> None:
    now_ms, max_future_ms, max_bytes = ctx.now_ms, ctx.max_future_ms, ctx.max_payload_bytes
    oldest_kept_ms = ctx.oldest_kept_ms
    buckets = delta.delay_buckets
    valid = late = delay_sum_ms = 0
    newest = delta.last_ts_ms.get(topic, -1)
    day_start_ms = day_end_ms = 0
    kwh, co2 = Counter[str](), Counter[str]()
    for rec in records:
        if rec.timestamp > newest:
            newest = rec.timestamp
        try:
            raw, kwh_amount, co2_amount = enriched_tuple(rec.value, now_ms, max_future_ms, max_bytes)
        except Invalid as exc:
            _reject(delta, topic, exc.reason, rec)
            continue
        valid += 1
        org, ts_ms = raw[0], raw[6]
        delay_ms = rec.timestamp - ts_ms
        if delay_ms < 0:
            delay_ms = 0
        elif delay_ms > MAX_DELAY_MS:
            delay_ms = MAX_DELAY_MS
        buckets[bisect_left(DELAY_BOUNDS_MS, delay_ms)] += 1
        delay_sum_ms += delay_ms
        if ts_ms < oldest_kept_ms:
            late += 1
            continue
        if not day_start_ms <= ts_ms < day_end_ms:
            day_start_ms, day_end_ms, day = ctx.calendar.day_span(ts_ms)
            kwh = delta.kwh_nano.setdefault(day, Counter())
            co2 = delta.co2_nano.setdefault(day, Counter())
        kwh[org] += round(kwh_amount * NANO)
        co2[org] += round(co2_amount * NANO)
    delta.delay_sum_ms += delay_sum_ms
    _close(delta, topic, valid, late, newest)


def delay_bucket(delay_ms: int) -> int:
    return bisect_left(DELAY_BOUNDS_MS, delay_ms)


def _reject(delta: Delta, topic: str, reason: str, rec: Record) -> None:
    # Every rejection is kept with its record: the dead-letter topic gets each one, the log a sample.
    delta.invalid[pair(topic, reason)] += 1
    delta.rejections.append(Rejection(topic, reason, rec))


def _close(delta: Delta, topic: str, valid: int, late: int, newest: int) -> None:
    if valid:
        delta.processed[topic] += valid
    if late:
        delta.dropped_late[topic] += late
    if newest >= 0:
        delta.last_ts_ms[topic] = newest
