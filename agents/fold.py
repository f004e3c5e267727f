"""Fold a batch of records into one Delta: the hot path's pure aggregation, no Faust import.

A Delta is what one batch adds to the state; the store applies it in one atomic write together
with the input offsets it covers.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass
from operator import attrgetter

from core.calendar import DayCalendar
from core.events import (
    EPOCH_MS_THRESHOLD,
    MIN_TS_MS,
    Invalid,
    enriched_beyond_schema,
    parse_ts_ms,
    raw_beyond_schema,
)
from core.iso8601 import KNOWN_TEXTS
from core.schema import ENRICHED_DECODER, RAW_DECODER
from tables.delta import DELAY_BOUNDS_MS, MAX_DELAY_MS, NANO, Delta, Record, Rejection, pair
from tables.keys import WINDOW_DAYS

_RECORD_TS = attrgetter("timestamp")


@dataclass
class FoldContext:
    calendar: DayCalendar
    now_ms: int
    days_kept: int
    max_future_ms: int
    max_payload_bytes: int
    oldest_kept_ms: int = 0
    # The rolling windows reach WINDOW_DAYS local days back whatever the days kept.
    oldest_window_ms: int = 0
    today_index: int = 0

    def __post_init__(self) -> None:
        self.oldest_kept_ms = self.calendar.oldest_kept_start_ms(self.now_ms, self.days_kept)
        self.oldest_window_ms = self.calendar.oldest_kept_start_ms(self.now_ms, WINDOW_DAYS)
        self.today_index = self.calendar.today_index(self.now_ms)


def fold_raw(delta: Delta, topic: str, records: Sequence[Record], ctx: FoldContext, partition: int = -1) -> None:
    now_ms, max_future_ms, max_bytes = ctx.now_ms, ctx.max_future_ms, ctx.max_payload_bytes
    oldest_kept_ms, oldest_window_ms = ctx.oldest_kept_ms, ctx.oldest_window_ms
    decode, newest_ts_ms, known_text_ms = RAW_DECODER.decode, now_ms + max_future_ms, KNOWN_TEXTS.get
    delta.today_index = ctx.today_index
    # One dict lookup per event: a count per (org, provider, model), and per kept day one entry per org
    # holding its tokens. The labelled families, the day's orgs and token totals are derived after the
    # loop from far fewer keys (the profile that showed this: docs/performance.md).
    combos: dict[tuple[str, str, str], int] = {}
    valid = late = late_windows = 0
    newest = max(delta.last_ts_ms.get(topic, -1), max(map(_RECORD_TS, records), default=-1))
    # The current local day, as the times in it the fold accepts at all ([lo_ms, hi_ms): its bounds
    # clipped to MIN_TS_MS and newest_ts_ms), and what holds for all its events: kept by the daily
    # tables, within the rolling windows. An event in it needs two comparisons, not six.
    lo_ms = hi_ms = 0
    kept = in_windows = False
    per_org: dict[str, list[int]] = {}  # kept day: org -> [tokens in, tokens out]
    kept_days: dict[str, dict[str, list[int]]] = {}
    orgs, users = set[str](), set[str]()
    # Late events interleave two days, so the fold keeps the day it left as well as the one it is in:
    # a switch back is a swap, not a calendar lookup (those were 10 % of the fold on such traffic).
    other = (0, 0, users, kept, in_windows, per_org, orgs)
    for rec in records:
        # core.events.raw_tuple, inlined: its call and its tuple were 8 % of the fold's instructions
        # (docs/performance.md); tests/unit/agents/test_fold_decode.py holds the two to the same answers.
        payload = rec.value
        try:
            if payload is None or len(payload) > max_bytes:
                raise ValueError
            e = decode(payload)
        except Exception:
            try:
                org, user, provider, model, t_in, t_out, ts_ms = raw_beyond_schema(
                    payload, now_ms, max_future_ms, max_bytes
                )
            except Invalid as exc:
                _reject(delta, topic, exc.reason, rec, partition)
                continue
            same_day = False
        else:
            ts = e.ts
            # The common forms inline (a call per event showed in the profile): epoch-ms integers,
            # ISO-8601 text read before, epoch-second floats; anything else, or out of bounds, is
            # parse_ts_ms's to read or reject.
            if type(ts) is str:
                ts_ms = known_text_ms(ts, 0)
            elif type(ts) is int:
                ts_ms = ts
            elif type(ts) is float and 0.0 < ts < EPOCH_MS_THRESHOLD:
                ts_ms = round(ts * 1000)
            else:
                ts_ms = 0
            if lo_ms <= ts_ms < hi_ms:
                same_day = True
            else:
                same_day = False
                if not MIN_TS_MS <= ts_ms <= newest_ts_ms:
                    try:
                        ts_ms = parse_ts_ms(ts, now_ms, max_future_ms)
                    except Invalid as exc:
                        _reject(delta, topic, exc.reason, rec, partition)
                        continue
            org, user, provider, model = e.org_id, e.user_id, e.provider, e.model
            t_in, t_out = e.tokens_in, e.tokens_out
        valid += 1
        key = (org, provider, model)
        combos[key] = combos.get(key, 0) + 1
        if not same_day and not lo_ms <= ts_ms < hi_ms:
            span = (lo_ms, hi_ms, users, kept, in_windows, per_org, orgs)
            if other[0] <= ts_ms < other[1]:  # back to the day before the last switch
                lo_ms, hi_ms, users, kept, in_windows, per_org, orgs = other
            else:
                start_ms, end_ms, day = ctx.calendar.day_span(ts_ms)
                lo_ms, hi_ms = max(start_ms, MIN_TS_MS), min(end_ms, newest_ts_ms + 1)
                kept, in_windows = start_ms >= oldest_kept_ms, start_ms >= oldest_window_ms
                if kept:
                    users = delta.users.setdefault(day, set())
                    per_org = kept_days.setdefault(day, {})
                elif in_windows:  # a day the daily tables no longer keep still counts in the rolling windows
                    users = delta.window_only_users.setdefault(day, set())
                    orgs = delta.window_only_orgs.setdefault(day, set())
            other = span
        # pair(org, user), inlined, straight into the day's set: one string per event costs less than
        # a tuple per event and a string per distinct user after the loop (docs/performance.md).
        if kept:
            if not in_windows:
                late_windows += 1
            users.add(f"{len(org)}:{org}{user}")
            tokens = per_org.get(org)
            if tokens is None:
                per_org[org] = [t_in, t_out]
            else:
                tokens[0] += t_in
                tokens[1] += t_out
        else:
            late += 1
            if not in_windows:  # counted in the labelled families above, in no day
                late_windows += 1
                continue
            users.add(f"{len(org)}:{org}{user}")
            orgs.add(org)
    ingested, calls = delta.ingested, delta.calls
    ingested_get, calls_get = ingested.get, calls.get
    for (org, provider, model), n in combos.items():
        by_provider, by_model = (org, provider), (org, model)
        ingested[by_provider] = ingested_get(by_provider, 0) + n
        calls[by_model] = calls_get(by_model, 0) + n
    for day, found in kept_days.items():
        delta.orgs.setdefault(day, set()).update(found)
        tokens_in = delta.tokens_in.setdefault(day, {})
        tokens_out = delta.tokens_out.setdefault(day, {})
        in_get, out_get = tokens_in.get, tokens_out.get
        for org, (t_in, t_out) in found.items():
            tokens_in[org] = in_get(org, 0) + t_in
            tokens_out[org] = out_get(org, 0) + t_out
    if late_windows:
        delta.dropped_late_windows[topic] += late_windows
    _close(delta, topic, valid, late, newest)


def fold_enriched(delta: Delta, topic: str, records: Sequence[Record], ctx: FoldContext, partition: int = -1) -> None:
    now_ms, max_future_ms, max_bytes = ctx.now_ms, ctx.max_future_ms, ctx.max_payload_bytes
    oldest_kept_ms = ctx.oldest_kept_ms
    decode, newest_ts_ms, known_text_ms = ENRICHED_DECODER.decode, now_ms + max_future_ms, KNOWN_TEXTS.get
    buckets = delta.delay_buckets
    valid = late = delay_sum_ms = 0
    newest = max(delta.last_ts_ms.get(topic, -1), max(map(_RECORD_TS, records), default=-1))
    lo_ms = hi_ms = 0  # the current day's accepted times, as in fold_raw
    kept = False
    # One dict lookup per event: per day, (org, provider, model) -> [kWh, CO2] in units of 1e-9; the
    # per-org and per-model sums are derived after the loop.
    amounts: dict[tuple[str, str, str], list[int]] = {}
    by_day: dict[str, dict[tuple[str, str, str], list[int]]] = {}
    other = (0, 0, kept, amounts)
    for rec in records:
        payload = rec.value  # core.events.enriched_tuple, inlined as in fold_raw
        try:
            if payload is None or len(payload) > max_bytes:
                raise ValueError
            e = decode(payload)
        except Exception:
            try:
                raw, kwh_amount, co2_amount = enriched_beyond_schema(payload, now_ms, max_future_ms, max_bytes)
            except Invalid as exc:
                _reject(delta, topic, exc.reason, rec, partition)
                continue
            org, provider, model, ts_ms = raw[0], raw[2], raw[3], raw[6]
            same_day = False
        else:
            ts = e.ts
            # The common forms inline (a call per event showed in the profile): epoch-ms integers,
            # ISO-8601 text read before, epoch-second floats; anything else, or out of bounds, is
            # parse_ts_ms's to read or reject.
            if type(ts) is str:
                ts_ms = known_text_ms(ts, 0)
            elif type(ts) is int:
                ts_ms = ts
            elif type(ts) is float and 0.0 < ts < EPOCH_MS_THRESHOLD:
                ts_ms = round(ts * 1000)
            else:
                ts_ms = 0
            if lo_ms <= ts_ms < hi_ms:
                same_day = True
            else:
                same_day = False
                if not MIN_TS_MS <= ts_ms <= newest_ts_ms:
                    try:
                        ts_ms = parse_ts_ms(ts, now_ms, max_future_ms)
                    except Invalid as exc:
                        _reject(delta, topic, exc.reason, rec, partition)
                        continue
            org, provider, model, kwh_amount, co2_amount = e.org_id, e.provider, e.model, e.kwh, e.co2_kg
        valid += 1
        delay_ms = rec.timestamp - ts_ms
        if delay_ms < 0:
            delay_ms = 0
        elif delay_ms > MAX_DELAY_MS:
            delay_ms = MAX_DELAY_MS
        buckets[bisect_left(DELAY_BOUNDS_MS, delay_ms)] += 1
        delay_sum_ms += delay_ms
        if not same_day and not lo_ms <= ts_ms < hi_ms:
            span = (lo_ms, hi_ms, kept, amounts)
            if other[0] <= ts_ms < other[1]:  # as in fold_raw: a switch back is a swap
                lo_ms, hi_ms, kept, amounts = other
            else:
                start_ms, end_ms, day = ctx.calendar.day_span(ts_ms)
                lo_ms, hi_ms = max(start_ms, MIN_TS_MS), min(end_ms, newest_ts_ms + 1)
                kept = start_ms >= oldest_kept_ms
                if kept:
                    amounts = by_day.setdefault(day, {})
            other = span
        if not kept:
            late += 1
            continue
        key = (org, provider, model)
        # Each event's amount is rounded to 1e-9 on its own, so totals do not depend on batching.
        kwh_nano, co2_nano = round(kwh_amount * NANO), round(co2_amount * NANO)
        found = amounts.get(key)
        if found is None:
            amounts[key] = [kwh_nano, co2_nano]
        else:
            found[0] += kwh_nano
            found[1] += co2_nano
    for day, sums in by_day.items():
        kwh = delta.kwh_nano.setdefault(day, {})
        co2 = delta.co2_nano.setdefault(day, {})
        model_kwh = delta.model_kwh_nano.setdefault(day, {})
        model_co2 = delta.model_co2_nano.setdefault(day, {})
        kwh_get, co2_get, model_kwh_get, model_co2_get = kwh.get, co2.get, model_kwh.get, model_co2.get
        for (org, provider, model), (kwh_nano, co2_nano) in sums.items():
            kwh[org] = kwh_get(org, 0) + kwh_nano
            co2[org] = co2_get(org, 0) + co2_nano
            by_model = (provider, model)
            model_kwh[by_model] = model_kwh_get(by_model, 0) + kwh_nano
            model_co2[by_model] = model_co2_get(by_model, 0) + co2_nano
    delta.delay_sum_ms += delay_sum_ms
    _close(delta, topic, valid, late, newest)


def delay_bucket(delay_ms: int) -> int:
    return bisect_left(DELAY_BOUNDS_MS, delay_ms)


def _reject(delta: Delta, topic: str, reason: str, rec: Record, partition: int) -> None:
    # Every rejection is kept with its record: the dead-letter topic gets each one, the log a sample.
    delta.invalid[pair(topic, reason)] += 1
    delta.rejections.append(Rejection(topic, reason, rec, partition))


def _close(delta: Delta, topic: str, valid: int, late: int, newest: int) -> None:
    if valid:
        delta.processed[topic] += valid
    if late:
        delta.dropped_late[topic] += late
    if newest >= 0:
        delta.last_ts_ms[topic] = newest
