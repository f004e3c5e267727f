"""Fold a batch of records into one Delta: the hot path's pure aggregation, no Faust import.

A Delta is what one batch adds to the state; the store applies it in one atomic write together
with the input offsets it covers.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from operator import attrgetter

from core.calendar import DayCalendar
from core.decode import enriched_events, raw_events
from core.events import MIN_TS_MS
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
    now_ms, max_future_ms = ctx.now_ms, ctx.max_future_ms
    oldest_kept_ms, oldest_window_ms = ctx.oldest_kept_ms, ctx.oldest_window_ms
    newest_ts_ms = now_ms + max_future_ms
    delta.today_index = ctx.today_index
    # Per event: its (org, provider, model) appended, counted after the loop by Counter in C (a dict
    # get and set per event here cost more), and per kept day one entry per org holding its tokens. The
    # labelled families, the day's orgs and token totals are derived after the loop from far fewer keys
    # (the profile that showed this: docs/performance.md). The valid count is what the decode did not
    # refuse, counted once per chunk.
    combo_list: list[tuple[str, str, str]] = []
    combo = combo_list.append
    late = late_windows = 0
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
    # The tier-1 decode is core/decode.py's, one generator for both folds and the one-payload forms: it
    # costs no call per record (docs/performance.md, "Regression gate"). Refused records wait in `refused`.
    refused: list[tuple[Record, str]] = []
    for _rec, e, ts_ms in raw_events(records, now_ms, max_future_ms, ctx.max_payload_bytes, refused):
        org = e.org_id
        combo((org, e.provider, e.model))
        if not lo_ms <= ts_ms < hi_ms:
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
            users.add(f"{len(org)}:{org}{e.user_id}")
            tokens = per_org.get(org)
            if tokens is None:
                per_org[org] = [e.tokens_in, e.tokens_out]
            else:
                tokens[0] += e.tokens_in
                tokens[1] += e.tokens_out
        else:
            late += 1
            if not in_windows:  # counted in the labelled families above, in no day
                late_windows += 1
                continue
            users.add(f"{len(org)}:{org}{e.user_id}")
            orgs.add(org)
    ingested, calls = delta.ingested, delta.calls
    ingested_get, calls_get = ingested.get, calls.get
    for (org, provider, model), n in Counter(combo_list).items():
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
    _close(delta, topic, len(records) - len(refused), late, newest, refused, partition)


def fold_enriched(delta: Delta, topic: str, records: Sequence[Record], ctx: FoldContext, partition: int = -1) -> None:
    now_ms, max_future_ms = ctx.now_ms, ctx.max_future_ms
    oldest_kept_ms = ctx.oldest_kept_ms
    newest_ts_ms = now_ms + max_future_ms
    buckets = delta.delay_buckets
    late = delay_sum_ms = 0
    newest = max(delta.last_ts_ms.get(topic, -1), max(map(_RECORD_TS, records), default=-1))
    lo_ms = hi_ms = 0  # the current day's accepted times, as in fold_raw
    kept = False
    # One dict lookup per event: per day, (org, provider, model) -> [kWh, CO2] in units of 1e-9; the
    # per-org and per-model sums are derived after the loop.
    amounts: dict[tuple[str, str, str], list[int]] = {}
    by_day: dict[str, dict[tuple[str, str, str], list[int]]] = {}
    other = (0, 0, kept, amounts)
    refused: list[tuple[Record, str]] = []
    for rec, e, ts_ms in enriched_events(records, now_ms, max_future_ms, ctx.max_payload_bytes, refused):
        delay_ms = rec.timestamp - ts_ms
        if delay_ms < 0:
            delay_ms = 0
        elif delay_ms > MAX_DELAY_MS:
            delay_ms = MAX_DELAY_MS
        buckets[bisect_left(DELAY_BOUNDS_MS, delay_ms)] += 1
        delay_sum_ms += delay_ms
        if not lo_ms <= ts_ms < hi_ms:
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
        key = (e.org_id, e.provider, e.model)
        # Each event's amount is rounded to 1e-9 on its own, so totals do not depend on batching.
        kwh_nano, co2_nano = round(e.kwh * NANO), round(e.co2_kg * NANO)
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
    _close(delta, topic, len(records) - len(refused), late, newest, refused, partition)


def delay_bucket(delay_ms: int) -> int:
    return bisect_left(DELAY_BOUNDS_MS, delay_ms)


def _reject(delta: Delta, topic: str, reason: str, rec: Record, partition: int) -> None:
    # Every rejection is kept with its record: the dead-letter topic gets each one, the log a sample.
    delta.invalid[pair(topic, reason)] += 1
    delta.rejections.append(Rejection(topic, reason, rec, partition))


def _close(
    delta: Delta, topic: str, valid: int, late: int, newest: int, refused: list[tuple[Record, str]], partition: int
) -> None:
    for rec, reason in refused:  # complete now that the decode has run to the end of the chunk
        _reject(delta, topic, reason, rec, partition)
    if valid:
        delta.processed[topic] += valid
    if late:
        delta.dropped_late[topic] += late
    if newest >= 0:
        delta.last_ts_ms[topic] = newest
