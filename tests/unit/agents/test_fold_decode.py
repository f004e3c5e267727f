"""The tier-1 decode (core/decode.py, defined once: the fold's loops iterate it) against the slow,
checked path of core/events.py, on the payloads of test_schema_decode (valid events, one field wrong,
junk fields, mangled bytes).

Batches of such records: each record must come out once, accepted with the values the checks give or
refused with the reason they name, in the records' order. One record at a time through the fold: the
Delta it fills is compared with the one the checked decode implies.
"""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agents.fold import FoldContext, fold_enriched, fold_raw
from core.calendar import DayCalendar
from core.decode import enriched_events, raw_events
from core.events import Invalid
from core.iso8601 import KNOWN_TEXTS
from core.schema import MAX_KWH, EnrichedShape
from streams.local.workload import raw_event
from tables.delta import NANO, Delta, Rejection, add, pair
from tests.unit.core.event_strategies import (
    ENRICHED_FIELDS,
    FUTURE_MS,
    LIMITS,
    NOW_MS,
    RAW_FIELDS,
    one_field_wrong,
    outcome,
    payloads,
    reference_enriched,
    reference_raw,
)
from tests.unit.tables.delta_summary import delta_summary

DAYS_KEPT = 3
CALENDAR = DayCalendar(ZoneInfo("Europe/Berlin"))


class Rec:
    def __init__(self, value: bytes | None) -> None:
        self.value, self.offset, self.timestamp = value, 7, NOW_MS


def _ctx(max_bytes: int) -> FoldContext:
    return FoldContext(CALENDAR, NOW_MS, DAYS_KEPT, FUTURE_MS, max_bytes)


def _expected(topic: str, payload: bytes | None, max_bytes: int, enriched: bool) -> str:
    d = Delta()
    try:
        decoded = reference_enriched(payload, max_bytes) if enriched else reference_raw(payload, max_bytes)
    except Invalid as exc:
        d.invalid[pair(topic, exc.reason)] += 1
        d.rejections.append(Rejection(topic, exc.reason, Rec(payload)))
        return delta_summary(d)
    raw: Any = decoded[0] if enriched else decoded
    org, user, provider, model, t_in, t_out, ts_ms = raw
    ctx = _ctx(max_bytes)
    d.processed[topic] += 1
    late = ts_ms < ctx.oldest_kept_ms
    if late:
        d.dropped_late[topic] += 1
    _, _, day = CALENDAR.day_span(ts_ms)
    if enriched:
        if not late:
            amounts: Any = decoded
            kwh, co2 = round(amounts[1] * NANO), round(amounts[2] * NANO)
            add(d.kwh_nano.setdefault(day, {}), org, kwh)
            add(d.co2_nano.setdefault(day, {}), org, co2)
            add(d.model_kwh_nano.setdefault(day, {}), (provider, model), kwh)
        return delta_summary(d)
    add(d.ingested, (org, provider), 1)
    add(d.calls, (org, model), 1)
    if ts_ms < ctx.oldest_window_ms:
        d.dropped_late_windows[topic] += 1
    elif late:
        d.window_only_users[day] = {pair(org, user)}
        d.window_only_orgs[day] = {org}
    else:
        d.users[day] = {pair(org, user)}
        d.orgs[day] = {org}
        add(d.tokens_in.setdefault(day, {}), org, t_in)
        add(d.tokens_out.setdefault(day, {}), org, t_out)
    return delta_summary(d)


def _decoded(batch: list[bytes | None], max_bytes: int, enriched: bool) -> list[tuple[str, str]]:
    """The decode's answer per record, in the form of test_schema_decode's `outcome`."""
    records = [Rec(payload) for payload in batch]
    refused: list[tuple[Rec, str]] = []
    events = (enriched_events if enriched else raw_events)(records, NOW_MS, FUTURE_MS, max_bytes, refused)
    answers: dict[int, tuple[str, str]] = {}
    for rec, e, ts_ms in events:
        raw = (e.org_id, e.user_id, e.provider, e.model, e.tokens_in, e.tokens_out, ts_ms)
        answers[id(rec)] = ("ok", repr((raw, e.kwh, e.co2_kg) if isinstance(e, EnrichedShape) else raw))
    accepted = list(answers)
    for rec, reason in refused:
        answers[id(rec)] = ("invalid", reason)
    # Each record answered once, and the accepted ones and the refused ones each in the records' order.
    assert sorted(answers) == sorted(map(id, records))
    assert accepted == [id(r) for r in records if answers[id(r)][0] == "ok"]
    assert [id(r) for r, _ in refused] == [id(r) for r in records if answers[id(r)][0] == "invalid"]
    return [answers[id(r)] for r in records]


def _checked(batch: list[bytes | None], max_bytes: int, enriched: bool) -> list[tuple[str, str]]:
    return [outcome(reference_enriched if enriched else reference_raw, payload, max_bytes) for payload in batch]


_RAW_BATCH = st.lists(st.one_of(payloads(RAW_FIELDS), one_field_wrong(RAW_FIELDS), st.none()), max_size=12)
_ENRICHED_BATCH = st.lists(
    st.one_of(payloads(ENRICHED_FIELDS), one_field_wrong(ENRICHED_FIELDS), st.none()), max_size=12
)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_RAW_BATCH, LIMITS)
def test_the_raw_decode_answers_for_each_record_of_a_batch_as_the_checks_do(
    batch: list[bytes | None], max_bytes: int
) -> None:
    assert _decoded(batch, max_bytes, False) == _checked(batch, max_bytes, False)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_ENRICHED_BATCH, LIMITS)
def test_the_enriched_decode_answers_for_each_record_of_a_batch_as_the_checks_do(
    batch: list[bytes | None], max_bytes: int
) -> None:
    assert _decoded(batch, max_bytes, True) == _checked(batch, max_bytes, True)


def test_a_time_read_before_comes_from_the_cache_with_the_answer_it_had_the_first_time() -> None:
    text = "2026-11-27T11:59:58.250+01:00"
    for enriched in (False, True):
        amounts = ',"kwh":0.5,"co2_kg":0.25' if enriched else ""
        event = '{"org_id":"o","user_id":"u","provider":"p","model":"m","tokens_in":1,"tokens_out":2,"ts":"%s"%s}'
        batch: list[bytes | None] = [(event % (t, amounts)).encode() for t in (text, text, "now", "now")]
        KNOWN_TEXTS.clear()  # the first record's text is read in full, the second's from the cache
        answers = _decoded(batch, 65_536, enriched)
        assert dict(KNOWN_TEXTS) == {text: NOW_MS - 3_600_000 - 1_750}
        assert answers == _checked(batch, 65_536, enriched)
        assert answers[0] == answers[1] and answers[0][0] == "ok"
        assert answers[2:] == [("invalid", "bad_timestamp")] * 2


def _folded(topic: str, payload: bytes | None, max_bytes: int, enriched: bool) -> str:
    d = Delta()
    (fold_enriched if enriched else fold_raw)(d, topic, [Rec(payload)], _ctx(max_bytes))
    return delta_summary(d)


@settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(payloads(RAW_FIELDS), one_field_wrong(RAW_FIELDS)), LIMITS)
def test_the_raw_fold_counts_what_the_reference_accepts(payload: bytes, max_bytes: int) -> None:
    assert _folded("raw", payload, max_bytes, False) == _expected("raw", payload, max_bytes, False)


@settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(payloads(ENRICHED_FIELDS), one_field_wrong(ENRICHED_FIELDS)), LIMITS)
def test_the_enriched_fold_counts_what_the_reference_accepts(payload: bytes, max_bytes: int) -> None:
    assert _folded("enriched", payload, max_bytes, True) == _expected("enriched", payload, max_bytes, True)


def test_a_missing_value_and_an_oversized_one_are_rejected_with_their_reason() -> None:
    for enriched in (False, True):
        assert _folded("t", None, 64, enriched) == _expected("t", None, 64, enriched)
        assert "too_large" in _folded("t", b"{" + b" " * 100 + b"}", 64, enriched)


# Each event's amount is rounded to 1e-9 on its own (ties to even), so totals do not depend on batching:
# amounts on or next to a tie in those units, tiny ones, the largest.
_KWH = st.one_of(
    st.floats(min_value=0.0, max_value=MAX_KWH),
    st.integers(0, 2 * 10**12).map(lambda half_units: half_units / 2 / NANO),
    st.integers(0, 2 * 10**12 - 1).map(lambda half_units: (half_units + 0.5) / 2 / NANO),
    st.sampled_from([0.0, -0.0, 5e-324, 0.5 / NANO, 1.5 / NANO, 2.5 / NANO, MAX_KWH]),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(_KWH, _KWH, st.sampled_from(["a", "b"])), min_size=1, max_size=60))
def test_amounts_add_up_to_the_sum_of_each_events_rounded_amount(events: list[tuple[float, float, str]]) -> None:
    records = [Rec(raw_event(org, "u", NOW_MS - 1000, kwh=kwh, co2_kg=co2)) for kwh, co2, org in events]
    d = Delta()
    fold_enriched(d, "enriched", records, _ctx(65536))
    kwh_want: dict[str, int] = {}
    co2_want: dict[str, int] = {}
    for kwh, co2, org in events:
        add(kwh_want, org, round(kwh * NANO))
        add(co2_want, org, round(co2 * NANO))
    (day,) = d.kwh_nano
    assert d.kwh_nano[day] == kwh_want and d.co2_nano[day] == co2_want
    assert all(type(n) is int for n in [*d.kwh_nano[day].values(), *d.co2_nano[day].values()])
    assert d.model_kwh_nano[day] == {("openai", "gpt-4o"): sum(kwh_want.values())}
